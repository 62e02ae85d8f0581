package gateway_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
)

// TestHarnessRefusals: every refusal explains itself to the person, ends
// with the status OpenSSH's ssh would show (1 for a refused session, 255
// for a refused connection), reaches no target, and is audited with the
// event type an auditor filters on.
func TestHarnessRefusals(t *testing.T) {
	h := newHarness(t,
		withLock("erin", "on holiday until Monday"),
		withPerson("erin", time.Now().UTC().AddDate(0, 0, -10), "admin"),
		withPerson("olga", time.Now().UTC().AddDate(0, 0, -400), "admin"),
	)
	for _, tc := range []struct {
		name, person, dest, command string
		status                      int
		stderr                      string            // in what the person reads
		event                       audit.Type        // the refusal's audit event
		host                        string            // the event's host, when set
		attrs                       map[string]string // in the event
		nobody                      bool              // the event names no person: the key is nobody's
	}{
		// At login: the pre-authentication banner says why.
		{name: "unregistered key", person: "stranger", dest: "gw", command: "whoami", status: 255,
			stderr: "is not registered to any person", event: audit.AuthFailure, nobody: true,
			attrs: map[string]string{"method": "publickey"}},
		{name: "locked person", person: "erin", dest: "root%db1", command: "true", status: 255,
			stderr: "your account is locked: on holiday until Monday", event: audit.AuthFailure},
		{name: "expired key", person: "olga", dest: "root%db1", command: "true", status: 255,
			stderr: "expired on", event: audit.AuthFailure},
		{name: "another person's user name", person: "alice", dest: "bob", command: "whoami", status: 255,
			stderr: "is alice's, not bob's", event: audit.AuthFailure},

		// User-name mode: the session channel is refused with status 1.
		{name: "unknown host", person: "alice", dest: "root%db9", command: "true", status: 1,
			stderr: "unknown host db9", event: audit.SessionDenied, attrs: map[string]string{"reason": "unknown host"}},
		{name: "login not granted", person: "alice", dest: "postgres%db1", command: "true", status: 1,
			stderr: "may not log in as postgres", event: audit.SessionDenied, attrs: map[string]string{"mode": "user"}},
		{name: "no grant on the host", person: "dave", dest: "deploy%db1", command: "true", status: 1,
			stderr: "dave has no access to host db1", event: audit.SessionDenied, attrs: map[string]string{"verdict": "deny"}},
		{name: "production exec without a request", person: "alice", dest: "root%prod1", command: "true", status: 1,
			stderr: "non-interactive access needs an approved access request", event: audit.SessionDenied,
			attrs: map[string]string{"verdict": "needs-approval"}},

		// Jump mode: the direct-tcpip channel is refused before any
		// handshake with the host; a login refused inside the jump is a
		// refused session.
		{name: "jump without a grant", person: "dave", dest: "root@db1", command: "true", status: 255,
			stderr: "dave has no access to host db1", event: audit.SessionDenied, host: "db1",
			attrs: map[string]string{"mode": "jump", "verdict": "deny", "reason": "dave has no access to host db1"}},
		{name: "jump to an unknown host", person: "alice", dest: "root@db9", command: "true", status: 255,
			stderr: "unknown host db9", event: audit.ForwardDenied, attrs: map[string]string{"destination": "db9:22"}},
		{name: "jump with a login not granted", person: "alice", dest: "postgres@db1", command: "true", status: 1,
			stderr: "may not log in as postgres", event: audit.SessionDenied, attrs: map[string]string{"mode": "jump"}},
		{name: "production exec through a jump", person: "alice", dest: "root@prod1", command: "true", status: 1,
			stderr: "non-interactive access needs an approved access request", event: audit.SessionDenied, host: "prod1",
			attrs: map[string]string{"mode": "jump", "verdict": "needs-approval"}},

		// Gateway commands.
		{name: "lock without the permission", person: "dave", dest: "gw", command: "lock bob --reason test", status: 1,
			stderr: "dave may not lock or unlock persons", event: audit.Command},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(h.events(t))
			stdout, stderr, status := h.run(t, tc.person, tc.dest, tc.command)
			if status != tc.status || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("status %d, stderr %q; want %d and %q (stdout %q)", status, stderr, tc.status, tc.stderr, stdout)
			}
			h.waitEvent(t, from, string(tc.event), func(e audit.Event) bool {
				if e.Type != tc.event || e.Person != tc.person && !tc.nobody || tc.host != "" && e.Host != tc.host {
					return false
				}
				for k, v := range tc.attrs {
					if e.Attrs[k] != v {
						return false
					}
				}
				return true
			})
		})
	}
	for name, tg := range h.targets {
		if ids := tg.accepted(); len(ids) != 0 {
			t.Errorf("a refused attempt reached %s: %q", name, ids)
		}
	}
}

// TestHarnessFIDO2Required: where the policy requires FIDO2 keys, a
// login with a plain key reaches nothing and is told why.
func TestHarnessFIDO2Required(t *testing.T) {
	h := newHarness(t, withPolicy("require_fido2: [test]"))
	for _, dest := range []string{"root%db1", "root@db1"} {
		_, stderr, status := h.run(t, "alice", dest, "true")
		if status == 0 || !strings.Contains(stderr, "FIDO2") {
			t.Fatalf("%s: status %d, stderr %q; want a refusal naming FIDO2", dest, status, stderr)
		}
	}
	h.waitEvent(t, 0, "session.denied", func(e audit.Event) bool {
		return e.Type == audit.SessionDenied && e.Person == "alice" && strings.Contains(e.Attrs["reason"], "FIDO2")
	})
	if ids := h.targets["db1"].accepted(); len(ids) != 0 {
		t.Errorf("a refused login reached db1: %q", ids)
	}
}

// TestHarnessPasswordNeverOffered: passwords and keyboard-interactive
// are never offered (M1): the gateway's answer to "none" lists only
// publickey, so a client with a password has nothing to try.
func TestHarnessPasswordNeverOffered(t *testing.T) {
	h := newHarness(t)
	cfg := &ssh.ClientConfig{User: "alice", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: wait,
		Auth: []ssh.AuthMethod{ssh.Password("correct horse battery"),
			ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
				return nil, errors.New("keyboard-interactive was offered")
			})}}
	nc, err := net.DialTimeout("tcp", h.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	var banner strings.Builder
	c, err := handshake(nc, h.addr, cfg, &banner)
	if err == nil {
		c.Close()
		t.Fatal("a password login was accepted")
	}
	if !strings.Contains(err.Error(), "attempted methods [none], no supported methods remain") {
		t.Fatalf("password login: %v", err)
	}
}
