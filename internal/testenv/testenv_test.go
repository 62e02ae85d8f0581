package testenv

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestSSHDDirect checks the helpers without a gateway: a private sshd that
// trusts a plain key, and a client that logs in directly.
func TestSSHDDirect(t *testing.T) {
	dir := t.TempDir()
	key, pub := KeyPair(t, dir, "id_alice", "ecdsa")
	tg := StartSSHD(t, TargetOpts{AuthorizedKeys: []string{pub}})
	c := NewClient(t, dir, ClientOpts{
		Key:        key,
		KnownHosts: []string{tg.KnownHostsLine()},
		Hosts:      []HostEntry{{Name: "direct", HostName: "127.0.0.1", Port: tg.Port, User: "root"}},
	})

	r := c.SSH(t, "direct", "echo hello-direct; exit 3")
	if r.Code != 3 || !strings.Contains(r.Stdout, "hello-direct") {
		t.Fatalf("direct ssh: want exit 3 and output:\n%s\nsshd log:\n%s", r, tg.Log())
	}
	if !tg.WaitLog(t, "Accepted publickey for root", 5*time.Second) {
		t.Errorf("sshd log lacks the accepted login:\n%s", tg.Log())
	}
	if n := tg.AcceptedLogins(); n != 1 {
		t.Errorf("AcceptedLogins = %d, want 1", n)
	}
	if ids := tg.AcceptedCertIDs(); len(ids) != 0 {
		t.Errorf("AcceptedCertIDs = %q, want none for a plain key", ids)
	}
}

func TestAcceptedCertIDs(t *testing.T) {
	dir := t.TempDir()
	tg := &Target{LogPath: dir + "/log"}
	// A real OpenSSH 9.2 log of one certificate login, plus a plain-key
	// login and a refused one.
	writeFile(t, tg.LogPath, `Connection from 127.0.0.1 port 40372 on 127.0.0.1 port 42222 rdomain ""
Failed publickey for root from 127.0.0.1 port 40372 ssh2: ECDSA SHA256:nJ9Xx8vTNwXr3kfDKG+5JVdgN7Uy9PIiGqhqJ2ydgmc
Accepted certificate ID "tandem person=alice session=abc" (serial 3) signed by ECDSA CA SHA256:7OlUNxdmcmsCY3tFAmqeO/y9kdT0TSD/PANMMpQybek via /tmp/ca.pub
Postponed publickey for root from 127.0.0.1 port 40372 ssh2 [preauth]
Accepted certificate ID "tandem person=alice session=abc" (serial 3) signed by ECDSA CA SHA256:7OlUNxdmcmsCY3tFAmqeO/y9kdT0TSD/PANMMpQybek via /tmp/ca.pub
Accepted publickey for root from 127.0.0.1 port 40372 ssh2: ECDSA-CERT SHA256:nJ9Xx8vTNwXr3kfDKG+5JVdgN7Uy9PIiGqhqJ2ydgmc ID tandem person=alice session=abc (serial 3) CA ECDSA SHA256:7OlUNxdmcmsCY3tFAmqeO/y9kdT0TSD/PANMMpQybek
Starting session: command for root from 127.0.0.1 port 40372 id 0
Accepted publickey for deploy from 127.0.0.1 port 40380 ssh2: ECDSA SHA256:nJ9Xx8vTNwXr3kfDKG+5JVdgN7Uy9PIiGqhqJ2ydgmc
Accepted certificate ID "x (serial 9) CA y" (serial 4) signed by ECDSA CA SHA256:7Ol via /tmp/ca.pub
Accepted publickey for postgres from 127.0.0.1 port 40390 ssh2: ECDSA-CERT SHA256:nJ9 ID x (serial 9) CA y (serial 4) CA ECDSA SHA256:7Ol
`)
	got := tg.AcceptedCertLogins()
	want := []CertLogin{{"root", "tandem person=alice session=abc"}, {"postgres", "x (serial 9) CA y"}}
	if len(got) != len(want) {
		t.Fatalf("AcceptedCertLogins = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("login %d = %q, want %q", i, got[i], want[i])
		}
	}
	if ids := tg.AcceptedCertIDs(); len(ids) != 2 || ids[0] != want[0].ID {
		t.Errorf("AcceptedCertIDs = %q", ids)
	}
	if n := tg.AcceptedLogins(); n != 3 {
		t.Errorf("AcceptedLogins = %d, want 3", n)
	}
}

func TestClip(t *testing.T) {
	if got := clip("abc", 10); got != "abc" {
		t.Errorf("clip short = %q", got)
	}
	long := strings.Repeat("a", 50) + strings.Repeat("b", 50)
	if got := clip(long, 20); !strings.HasPrefix(got, "aaaaaaaaaa") || !strings.HasSuffix(got, "bbbbbbbbbb") {
		t.Errorf("clip long = %q", got)
	}
}

// writeFile writes a test file with mode 0600.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
