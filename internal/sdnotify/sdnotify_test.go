package sdnotify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen opens a real unixgram socket in a fresh directory, as systemd's
// notification socket.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func read(t *testing.T, c *net.UnixConn, within time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyReady(t *testing.T) {
	c, path := listen(t)
	if err := (Notifier{Socket: path}).Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c, 5*time.Second); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "tandem-sdnotify-test-" + strconv.Itoa(time.Now().Nanosecond())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract sockets unavailable: %v", err)
	}
	defer c.Close()
	if err := (Notifier{Socket: "@" + name}).Notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c, 5*time.Second); got != "STOPPING=1" {
		t.Errorf("got %q", got)
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	if err := (Notifier{}).Notify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
	if err := (Notifier{Socket: "relative/path"}).Notify("READY=1"); err == nil {
		t.Error("a relative socket path was accepted")
	}
	if err := (Notifier{Socket: filepath.Join(t.TempDir(), "absent")}).Notify("READY=1"); err == nil {
		t.Error("a missing socket was not reported")
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := FromEnv()
	if err != nil || n.Socket != "/run/systemd/notify" || n.Watchdog != 30*time.Second {
		t.Errorf("FromEnv = %+v, %v", n, err)
	}
	// Another process's watchdog is not ours.
	t.Setenv("WATCHDOG_PID", "1")
	if n, err := FromEnv(); err != nil || n.Watchdog != 0 {
		t.Errorf("watchdog of pid 1 taken: %+v, %v", n, err)
	}
	t.Setenv("WATCHDOG_PID", "")
	for _, bad := range []string{"0", "-5", "abc", "1e6", "99999999999999999999"} {
		t.Setenv("WATCHDOG_USEC", bad)
		if _, err := FromEnv(); err == nil {
			t.Errorf("WATCHDOG_USEC=%q accepted", bad)
		}
	}
}

// TestWatchdog: pings arrive at the interval's pace, a failed ping is
// reported, and the loop ends with its context.
func TestWatchdog(t *testing.T) {
	c, path := listen(t)
	n := Notifier{Socket: path, Watchdog: 100 * time.Millisecond}
	errs := make(chan error, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, func(err error) { errs <- err })
	}()
	for range 3 {
		if got := read(t, c, 5*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	c.Close() // the manager is gone: the next ping fails and is reported
	select {
	case err := <-errs:
		t.Logf("reported: %v", err)
	case <-time.After(5 * time.Second):
		t.Error("a failed ping was not reported")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog loop did not end with its context")
	}
}

func TestWatchdogOffReturnsAtOnce(t *testing.T) {
	done := make(chan struct{})
	go func() { defer close(done); (Notifier{Socket: "/x"}).RunWatchdog(context.Background(), nil) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog without an interval did not return")
	}
}
