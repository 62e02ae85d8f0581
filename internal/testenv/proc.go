package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that is safe for concurrent use: a child
// process writes to it while the test reads it for failure messages.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns at most the last n bytes written, for failure messages.
func (b *SyncBuffer) Tail(n int) string {
	s := b.String()
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// process is a started background program together with the channel that
// reports its exit, so that both a stop and an early death can be observed
// without racing on cmd.Wait.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
	once sync.Once
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process by PID, waits up to grace for it to
// end, then sends SIGKILL and waits again (bounded). It is idempotent.
func (p *process) stop(grace time.Duration) error {
	var result error
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			result = fmt.Errorf("process %d did not end after SIGKILL", p.cmd.Process.Pid)
		}
	})
	return result
}

// startListener starts cmd, with its stdout and stderr into out, and
// waits until it accepts TCP connections on addr (deadline 15s). The
// test's cleanup stops it by PID (SIGTERM, SIGKILL after 5s) and, when
// the test failed, logs the end of its output. name (e.g. "haproxy")
// names it in messages.
func startListener(t testing.TB, name string, cmd *exec.Cmd, addr string, out *SyncBuffer) *process {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := p.stop(5 * time.Second); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, out.Tail(4000))
		}
	})
	if err := waitListening(addr, p, 15*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s output:\n%s", name, err, name, out.Tail(4000))
	}
	return p
}

// waitListening polls a TCP connect to addr every 20ms until it succeeds,
// the process ends, or the deadline passes.
func waitListening(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("process ended before listening on %s: %v", addr, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %v: %w", addr, timeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitFor polls cond every 20ms until it returns true or timeout passes,
// and reports whether it became true. Use it instead of fixed sleeps.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode extracts a process exit code from err: 0 for nil, the code for
// a normal exit, 128+signal for a death by signal (as a shell reports it),
// and -1 when the program could not be run at all.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// WaitClosed waits up to timeout for done to be closed (a background
// process's end, typically) and reports whether it was.
func WaitClosed(done <-chan struct{}, timeout time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// EachFile calls fn with the path, entry and content of every regular
// file below dir, and returns how many there were; a walk or read error
// fails the test. Tests search a data directory with it for what must
// not lie there in plaintext.
func EachFile(t testing.TB, dir string, fn func(path string, d fs.DirEntry, content []byte)) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		fn(p, d, b)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return files
}
