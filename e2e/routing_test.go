package e2e

import (
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"

	"tandem.dev/tandem/internal/testenv"
)

// TestRoutingModes runs a command on db1 in both routing modes and checks
// that the target saw a certificate login naming alice, and that the
// gateway's own whoami command knows her.
func TestRoutingModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	for _, m := range modes {
		t.Run(m.Name, func(t *testing.T) {
			marker := "hello-" + nonce(t)
			before := len(e.Target.AcceptedCertLogins())
			r := e.Alice.SSH(t, sshArgs(m.Dest(e, "root", "db1"), "echo "+marker)...)
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != marker {
				e.failf(t, r, "%s mode: want exit 0 and output %q", m.Name, marker)
			}
			logins := newLogins(e.Target, before)
			if len(logins) != 1 {
				t.Fatalf("%s mode: target saw %d new certificate logins, want 1: %q\nsshd log:\n%s", m.Name, len(logins), logins, e.Target.Log())
			}
			l := logins[0]
			if l.User != "root" || !strings.Contains(l.ID, "person=alice") || !strings.Contains(l.ID, "session=") {
				t.Errorf("%s mode: target login %+v: want user root and a key id with person=alice and session=…", m.Name, l)
			}
		})
	}

	t.Run("whoami", func(t *testing.T) {
		r := e.Alice.SSH(t, "gw", "whoami")
		if r.Code != 0 {
			e.failf(t, r, "gw whoami: want exit 0")
		}
		for _, want := range []string{"alice", "Alice Adler", "db1", "root"} {
			if !strings.Contains(r.Stdout, want) {
				e.errorf(t, r, "gw whoami: output lacks %q", want)
			}
		}
	})

	t.Run("unknown gateway command", func(t *testing.T) {
		r := e.Alice.SSH(t, "gw", "frobnicate")
		if r.Code == 0 {
			e.failf(t, r, "gw frobnicate: want a non-zero exit")
		}
		// The help lists the commands, whoami among them.
		if !strings.Contains(r.Stdout+r.Stderr, "whoami") {
			e.errorf(t, r, "gw frobnicate: want help that lists whoami")
		}
	})
}

// TestExitStatusAndSignals checks that exit statuses pass through, and that
// a command killed by a signal looks to the client exactly as it does on a
// direct login.
func TestExitStatusAndSignals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	for _, m := range modes {
		for _, tc := range []struct {
			cmd  string
			want int
		}{{"exit 7", 7}, {"true", 0}, {"false", 1}, {"exit 255", 255}} {
			r := e.Alice.SSH(t, sshArgs(m.Dest(e, "root", "db1"), tc.cmd)...)
			if r.Code != tc.want {
				e.errorf(t, r, "%s mode: %q: want exit %d", m.Name, tc.cmd, tc.want)
			}
		}
	}

	for _, sig := range []string{"TERM", "KILL"} {
		cmd := "echo before; kill -" + sig + " $$"
		direct := e.Alice.SSH(t, "direct", cmd)
		directV := e.Alice.SSH(t, "-v", "direct", cmd)
		for _, m := range modes {
			t.Run(m.Name+"/"+sig, func(t *testing.T) {
				r := e.Alice.SSH(t, sshArgs(m.Dest(e, "root", "db1"), cmd)...)
				if r.Code != direct.Code {
					e.errorf(t, r, "killed by SIG%s: exit code %d through the gateway, %d directly (%s)", sig, r.Code, direct.Code, direct)
				}
				if got, want := stderrGist(r.Stderr), stderrGist(direct.Stderr); got != want {
					e.errorf(t, r, "killed by SIG%s: stderr gist %q through the gateway, %q directly", sig, got, want)
				}
				if !strings.Contains(r.Stdout, "before") {
					e.errorf(t, r, "killed by SIG%s: output before the signal was lost", sig)
				}
				// With -v OpenSSH names the request it got: exit-signal
				// directly, and it must be the same through the gateway.
				rv := e.Alice.SSH(t, sshArgs(append([]string{"-v"}, m.Dest(e, "root", "db1")...), cmd)...)
				const req = "rtype exit-signal"
				if strings.Contains(directV.Stderr, req) && !strings.Contains(rv.Stderr, req) {
					e.errorf(t, rv, "killed by SIG%s: the client got no exit-signal request through the gateway (directly it did)", sig)
				}
			})
		}
	}
}

// stderrGist drops the lines of ssh's stderr that differ between a direct
// login and one through the gateway for reasons unrelated to the command
// (host names, known-hosts notes).
func stderrGist(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "",
			strings.HasPrefix(l, "Warning: Permanently added"),
			strings.HasPrefix(l, "Connection to ") && strings.HasSuffix(l, " closed."):
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// TestNoLossAtEOF is the regression test for a bug seen in a peer gateway:
// with the client's stdin at EOF (ssh -n), all output must arrive before
// exit status, EOF and close are relayed. 10 runs per routing mode.
func TestNoLossAtEOF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const size = 10_000_000
	const runs = 10
	for _, m := range modes {
		t.Run(m.Name, func(t *testing.T) {
			for i := range runs {
				var w countingWriter
				r := e.Alice.Exec(t, testenv.RunOpts{Stdout: &w, Timeout: 60 * time.Second},
					"ssh", sshArgs(append([]string{"-n"}, m.Dest(e, "root", "db1")...), "head -c 10000000 /dev/zero")...)
				if r.Code != 0 || w.n.Load() != size {
					e.failf(t, r, "%s mode, run %d of %d: got %d bytes, want %d, and exit 0", m.Name, i+1, runs, w.n.Load(), size)
				}
			}
		})
	}
}

// TestPTYShell checks terminal sessions: a command with a forced PTY, and
// an interactive shell driven through a real PTY, whose window size must
// reach the target.
func TestPTYShell(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	for _, m := range modes {
		t.Run(m.Name+"/command", func(t *testing.T) {
			r := e.Alice.SSH(t, sshArgs(append([]string{"-tt"}, m.Dest(e, "root", "db1")...), "tty; echo pty-ok")...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") || !strings.Contains(r.Stdout, "pty-ok") {
				e.failf(t, r, "%s mode: ssh -tt: want exit 0 and output with /dev/pts/ and pty-ok", m.Name)
			}
		})
		t.Run(m.Name+"/interactive", func(t *testing.T) {
			cmd := e.Alice.Command(t, "ssh", sshArgs(append([]string{"-t"}, m.Dest(e, "root", "db1")...))...)
			sh := startPTY(t, cmd, 40, 160)
			// The typed line echoes as "$((6*7))"; only the shell's
			// output contains "42-mark", so the wait cannot match the echo.
			sh.send(t, "echo $((6*7))-mark; stty size\r")
			if !sh.waitFor("42-mark", 30*time.Second) || !sh.waitFor("40 160", 10*time.Second) {
				t.Fatalf("%s mode: interactive shell: want 42-mark and window size 40 160, screen so far:\n%s\ngateway output (tail):\n%s", m.Name, sh.out.String(), e.GW.Tail())
			}
			sh.send(t, "exit 3\r")
			code, ok := sh.wait(30 * time.Second)
			if !ok {
				t.Fatalf("%s mode: ssh did not end after exit; screen:\n%s", m.Name, sh.out.String())
			}
			if code != 3 {
				t.Errorf("%s mode: interactive shell: exit code %d, want 3; screen:\n%s", m.Name, code, sh.out.String())
			}
		})
	}
}

// ptySession is an ssh client running on a PTY.
type ptySession struct {
	cmd  *exec.Cmd
	tty  io.WriteCloser
	out  testenv.SyncBuffer
	done chan struct{}
	err  error
}

// startPTY starts cmd on a new PTY of the given size; the test's cleanup
// kills it (by process group) and closes the PTY.
func startPTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16) *ptySession {
	t.Helper()
	// pty.Start makes the child a session leader (and so the leader of
	// its own process group); Setpgid on top of that would fail.
	cmd.SysProcAttr = nil
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("start %s on a pty: %v", cmd, err)
	}
	s := &ptySession{cmd: cmd, tty: f, done: make(chan struct{})}
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		_, _ = io.Copy(&s.out, f) // ends with an error once the child is gone and f is closed
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = testenv.KillGroup(cmd)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("ssh on pty did not end after SIGKILL")
		}
		_ = f.Close()
		copied.Wait()
	})
	return s
}

func (s *ptySession) send(t *testing.T, text string) {
	t.Helper()
	if _, err := io.WriteString(s.tty, text); err != nil {
		t.Fatalf("write to pty: %v", err)
	}
}

func (s *ptySession) waitFor(text string, timeout time.Duration) bool {
	return testenv.WaitFor(timeout, func() bool { return strings.Contains(s.out.String(), text) })
}

// wait waits for the client to end and returns its exit code.
func (s *ptySession) wait(timeout time.Duration) (int, bool) {
	select {
	case <-s.done:
	case <-time.After(timeout):
		return 0, false
	}
	if s.err == nil {
		return 0, true
	}
	if ee, ok := s.err.(*exec.ExitError); ok {
		return ee.ExitCode(), true
	}
	return -1, true
}
