package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/testenv"
)

// TestRefusals checks that every refusal explains itself on the client's
// stderr, ends with a non-zero exit, and never reaches the target: the
// target's sshd log shows no login for any refused attempt.
func TestRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	type refusal struct {
		name   string
		client *testenv.Client
		args   []string
		want   []string // all must appear on stderr
	}
	var cases []refusal
	for _, m := range modes {
		cases = append(cases,
			refusal{m.Name + "/unknown key", e.Mallory, sshArgs(m.Dest(e, "root", "db1"), "true"),
				[]string{"is not registered", "Permission denied (publickey)"}},
			refusal{m.Name + "/host not granted", e.Bob, sshArgs(m.Dest(e, "deploy", "db1"), "true"),
				[]string{"has no access to host"}},
			refusal{m.Name + "/login not granted", e.Alice, sshArgs(m.Dest(e, "postgres", "db1"), "true"),
				[]string{"may not log in as"}},
			refusal{m.Name + "/unknown host", e.Alice, sshArgs(m.Dest(e, "root", "db9"), "true"),
				[]string{"unknown host"}},
			refusal{m.Name + "/host key mismatch", e.Alice, sshArgs(m.Dest(e, "root", "db-bad"), "true"),
				[]string{"host key of db-bad does not match"}},
			refusal{m.Name + "/target down", e.Alice, sshArgs(m.Dest(e, "root", "db-down"), "true"),
				[]string{"cannot reach db-down"}},
		)
	}
	cases = append(cases,
		refusal{"unknown key at the gateway", e.Mallory, []string{"gw", "whoami"},
			[]string{"is not registered"}},
		refusal{"password via OpenSSH", e.Alice,
			[]string{"-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", "gw", "whoami"},
			[]string{"Permission denied"}},
	)

	for _, tc := range cases {
		// Sequential on purpose: the before/after count of target logins
		// must belong to this attempt alone.
		t.Run(tc.name, func(t *testing.T) {
			before := e.Target.AcceptedLogins()
			r := tc.client.SSH(t, tc.args...)
			if r.Code == 0 {
				e.errorf(t, r, "%s: want a non-zero exit", tc.name)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.Stderr, want) {
					e.errorf(t, r, "%s: stderr lacks %q", tc.name, want)
				}
			}
			if after := e.Target.AcceptedLogins(); after != before {
				t.Errorf("%s: target accepted %d login(s) for a refused attempt:\n%s", tc.name, after-before, e.Target.Log())
			}
		})
	}

	t.Run("password via Go client", func(t *testing.T) {
		before := e.Target.AcceptedLogins()
		answered := 0
		for _, user := range []string{"alice", "root%db1"} {
			cfg := &ssh.ClientConfig{
				User: user,
				Auth: []ssh.AuthMethod{
					ssh.Password("correct horse battery staple 1"),
					ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
						answered++
						return nil, errors.New("no answers")
					}),
				},
				// Host keys are not the point here; the handshake must
				// fail at user authentication.
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
				Timeout:         10 * time.Second,
			}
			c, err := ssh.Dial("tcp", e.GW.Addr, cfg)
			if err == nil {
				_ = c.Close()
				t.Fatalf("user %s: handshake with only password and keyboard-interactive succeeded", user)
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("user %s: handshake failed with %v, want an authentication failure", user, err)
			}
		}
		if answered != 0 {
			t.Errorf("the gateway offered keyboard-interactive (%d prompts)", answered)
		}
		if after := e.Target.AcceptedLogins(); after != before {
			t.Errorf("target accepted %d login(s) for password attempts", after-before)
		}
	})
}

// TestForwardingRefused checks that the gateway is not a general TCP relay:
// -W to an address that is not a configured host, and -L through a
// session, are refused, and no bytes of the target's sshd come through.
func TestForwardingRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sshdAddr := e.Target.Addr

	t.Run("-W to an address", func(t *testing.T) {
		before := strings.Count(e.Target.Log(), "Connection from ")
		r := e.Alice.Exec(t, testenv.RunOpts{Stdin: strings.NewReader(""), Timeout: 20 * time.Second},
			"ssh", "-W", sshdAddr, "gw")
		if r.Code == 0 || strings.Contains(r.Stdout, "SSH-2.0-") {
			e.failf(t, r, "ssh -W %s gw: want a refusal, without the target's SSH banner on stdout", sshdAddr)
		}
		if after := strings.Count(e.Target.Log(), "Connection from "); after != before {
			t.Errorf("the target saw %d connection(s) from the refused -W:\n%s", after-before, e.Target.Log())
		}
	})

	for _, m := range modes {
		t.Run(m.Name+"/-L", func(t *testing.T) {
			lport := testenv.FreePort(t)
			fwd := fmt.Sprintf("127.0.0.1:%d:%s", lport, sshdAddr)
			args := append([]string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", fwd}, m.Dest(e, "root", "db1")...)
			cmd := e.Alice.Command(t, "ssh", args...)
			var stderr testenv.SyncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatalf("start ssh -L: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = testenv.KillGroup(cmd)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Errorf("ssh -L did not end after SIGKILL")
				}
			})

			// Wait until ssh listens locally, or ends (a refusal of the
			// whole connection is a refusal too).
			var conn net.Conn
			exited := false
			testenv.WaitFor(20*time.Second, func() bool {
				select {
				case err := <-done:
					done <- err // keep it for the cleanup
					exited = true
					return true
				default:
				}
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport), time.Second)
				if err != nil {
					return false
				}
				conn = c
				return true
			})
			if exited {
				t.Logf("ssh -L ended before forwarding anything (refused): %s", stderr.String())
				return
			}
			if conn == nil {
				t.Fatalf("ssh -L %s never listened; stderr:\n%s", fwd, stderr.String())
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			got, err := io.ReadAll(conn)
			if strings.Contains(string(got), "SSH-2.0-") {
				t.Fatalf("local forward to %s through the gateway reached the target (read %q)", sshdAddr, got)
			}
			if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("forwarded connection neither refused nor closed within 15s")
			}
			if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(stderr.String(), "open failed") }) {
				t.Errorf("ssh did not report the refused forward (\"open failed\"); stderr:\n%s\ngateway output (tail):\n%s", stderr.String(), e.GW.Tail())
			}
		})
	}
}
