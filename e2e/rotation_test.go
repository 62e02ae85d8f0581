package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// CA rotation with a real sshd keeps logins working through the whole
// overlap: before the rotation, while both CAs are published and the old
// one signs, after finish (the new one signs, the old one still trusted),
// and after retire on a target that trusts only the new CA. sshd logs the
// CA of each certificate it accepts, which shows who signed.
func TestCARotationKeepsLoginsWorking(t *testing.T) {
	e := newEnv(t)
	trustFile := filepath.Join(e.Target.Dir, "user_ca.pub")
	tandem := func(args ...string) string {
		t.Helper()
		out, errOut, err := e.GW.Run(t, append(args, "--config", e.Config)...)
		if err != nil {
			t.Fatalf("tandem %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	published := func() []string {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(tandem("ca", "public", "--kind", "user")), "\n")
		if err := os.WriteFile(trustFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return lines
	}
	// login runs a command on db1 through the gateway and returns the
	// fingerprint of the CA sshd accepted the certificate from.
	login := func(phase string) string {
		t.Helper()
		before := e.Target.Log()
		if r := e.Alice.SSH(t, "db1", "echo", "rotation-"+phase); r.Code != 0 || !strings.Contains(r.Stdout, "rotation-"+phase) {
			e.failf(t, r, "%s: login through the gateway failed", phase)
		}
		for _, l := range strings.Split(strings.TrimPrefix(e.Target.Log(), before), "\n") {
			if i := strings.Index(l, "Accepted certificate ID"); i >= 0 {
				if j := strings.Index(l, " CA "); j >= 0 {
					return strings.Fields(l[j+4:])[0]
				}
			}
		}
		t.Fatalf("%s: sshd logged no accepted certificate:\n%s", phase, e.Target.Log())
		return ""
	}

	oldFP := fingerprintOf(t, e.UserCA)
	if got := login("before"); got != oldFP {
		t.Fatalf("before: signed by %s, want %s", got, oldFP)
	}

	tandem("ca", "rotate", "--kind", "user")
	lines := published()
	if len(lines) != 2 || fingerprintOf(t, lines[0]) != oldFP {
		t.Fatalf("during the overlap ca public prints %q", lines)
	}
	newFP := fingerprintOf(t, lines[1])
	if tc := tandem("target-config"); !strings.Contains(tc, strings.Fields(lines[1])[1]) {
		t.Errorf("target-config does not name the next CA:\n%s", tc)
	}
	time.Sleep(3 * time.Second) // a rotation check of the gateway passes
	if got := login("overlap"); got != oldFP {
		t.Fatalf("overlap: signed by %s, want the old CA %s", got, oldFP)
	}

	if _, errOut, err := e.GW.Run(t, "ca", "rotate", "--kind", "user", "--finish", "--config", e.Config); err == nil || !strings.Contains(errOut, "--force") {
		t.Fatalf("finish before the overlap passed: err %v, %s", err, errOut)
	}
	tandem("ca", "rotate", "--kind", "user", "--finish", "--force")
	if lines := published(); len(lines) != 2 || fingerprintOf(t, lines[0]) != newFP || fingerprintOf(t, lines[1]) != oldFP {
		t.Fatalf("after finish ca public prints %q", lines)
	}
	// Every login works while the gateway picks the new CA up.
	deadline := time.Now().Add(10 * time.Second)
	for got := login("finish"); got != newFP; got = login("finish") {
		if time.Now().After(deadline) {
			t.Fatalf("after finish: still signed by %s, want %s", got, newFP)
		}
		time.Sleep(500 * time.Millisecond)
	}

	tandem("ca", "rotate", "--kind", "user", "--retire")
	if lines := published(); len(lines) != 1 || fingerprintOf(t, lines[0]) != newFP {
		t.Fatalf("after retire ca public prints %q (the target now trusts only these)", lines)
	}
	if got := login("retired"); got != newFP {
		t.Fatalf("after retire: signed by %s, want %s", got, newFP)
	}

	// Each step is in the audit log (queued, then appended by the gateway).
	deadline = time.Now().Add(10 * time.Second)
	for {
		out := tandem("audit", "show", "--type", "ca.rotated")
		if strings.Count(out, "ca.rotated") >= 3 {
			for _, p := range []string{"phase=\"start\"", "phase=\"finish\"", "phase=\"retire\"", newFP} {
				if !strings.Contains(out, p) {
					t.Errorf("audit log lacks %s:\n%s", p, out)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log holds fewer than 3 ca.rotated events:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func fingerprintOf(t *testing.T, line string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	return ssh.FingerprintSHA256(k)
}
