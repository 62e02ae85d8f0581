package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestDemo runs `tandem demo` as a new user would: the printed commands
// work with the real ssh (whoami, a lock and an unlock, which the demo's
// admin may do), the demo target logs to a file and not over the
// instructions, and a second demo while the first runs stops at once,
// before it touches the demo directory.
func TestDemo(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ssh")
	bin := testenv.BuildTandem(t)
	dir := filepath.Join(t.TempDir(), "tandem-demo")
	listen := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out testenv.SyncBuffer
	demo := exec.CommandContext(ctx, bin, "demo", "--dir", dir, "--listen", listen)
	demo.Stdout, demo.Stderr = &out, &out
	demo.Cancel = func() error { return demo.Process.Signal(syscall.SIGTERM) }
	demo.WaitDelay = 5 * time.Second
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = demo.Wait() })
	if !testenv.WaitFor(60*time.Second, func() bool { return strings.Contains(out.String(), "Stop with Ctrl-C") }) {
		t.Fatalf("the demo did not print its instructions:\n%s", out.String())
	}
	if strings.Contains(out.String(), "part=demo-target") {
		t.Errorf("the demo target's log is mixed into the instructions:\n%s", out.String())
	}

	ssh := func(person string, args ...string) (string, string, int) {
		cmd := exec.CommandContext(ctx, "ssh", append([]string{"-F", filepath.Join(dir, "ssh_config."+person)}, args...)...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		return so.String(), se.String(), code
	}
	if so, se, code := ssh("alice", "gw", "whoami"); code != 0 || !strings.Contains(so, "alice") {
		t.Fatalf("the printed whoami command: exit %d\n%s%s", code, so, se)
	}
	if so, se, code := ssh("alice", "gw", "lock", "bob", "--reason", "trying the lock"); code != 0 || !strings.Contains(so, "bob is locked") {
		t.Errorf("the printed lock command: exit %d\n%s%s", code, so, se)
	}
	if _, se, code := ssh("bob", "gw", "whoami"); code == 0 || !strings.Contains(se, "trying the lock") {
		t.Errorf("bob is locked: want a refusal naming the reason, got exit %d\n%s", code, se)
	}
	if so, se, code := ssh("alice", "gw", "unlock", "bob"); code != 0 {
		t.Errorf("the printed unlock command: exit %d\n%s%s", code, so, se)
	}
	if info, err := os.Stat(filepath.Join(dir, "target.log")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the demo target's log file: %v %v", info, err)
	}

	// A second demo on the same address and directory.
	cfg := filepath.Join(dir, "tandem.yaml")
	before, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := exec.CommandContext(ctx, bin, "demo", "--dir", dir, "--listen", listen)
	msg, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "another `tandem demo` running") {
		t.Errorf("a second demo: want a refusal naming the running one, got %v\n%s", err, msg)
	}
	if after, _ := os.ReadFile(cfg); !bytes.Equal(before, after) {
		t.Errorf("a second demo rewrote the running demo's tandem.yaml")
	}
}
