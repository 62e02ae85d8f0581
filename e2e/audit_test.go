package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestAuditTrailOfASession checks that a session through the gateway is
// in the tamper-evident log and that the log verifies offline.
func TestAuditTrailOfASession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	marker := nonce(t)
	if r := e.Alice.SSH(t, "db1", "echo "+marker); r.Code != 0 {
		e.failf(t, r, "session through the gateway")
	}
	out, errOut, err := e.GW.Run(t, "audit", "show", "--config", e.Config, "--person", "alice")
	if err != nil {
		t.Fatalf("audit show: %v\n%s", err, errOut)
	}
	for _, typ := range []string{"auth.success", "session.start", "session.end"} {
		if !strings.Contains(out, typ) {
			t.Errorf("audit show lacks %s:\n%s", typ, out)
		}
	}
	if _, errOut, err := e.GW.Run(t, "audit", "verify", "--config", e.Config); err != nil {
		t.Fatalf("audit verify of a live log: %v\n%s", err, errOut)
	}
}

// TestAuditFailClosed makes the audit log unwritable under a running
// gateway: the next login is refused with a clear message and a live
// session ends (no audit, no access). Root ignores file modes, so the
// test uses the immutable attribute, which binds root too.
func TestAuditFailClosed(t *testing.T) {
	t.Parallel()
	chattr := testenv.RequireProgram(t, "chattr")
	e := newEnv(t)
	records := filepath.Join(e.Dir, "data", "audit", "records.log")

	live := e.Alice.Command(t, "ssh", "-tt", "db1", "echo live-started; sleep 60")
	var liveOut testenv.SyncBuffer
	live.Stdout, live.Stderr = &liveOut, &liveOut
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { _ = live.Wait(); close(ended) }()
	t.Cleanup(func() { _ = testenv.KillGroup(live); <-ended })
	if !testenv.WaitFor(15*time.Second, func() bool { return strings.Contains(liveOut.String(), "live-started") }) {
		t.Fatalf("live session did not start:\n%s\n%s", liveOut.String(), e.GW.Tail())
	}

	if out, err := exec.Command(chattr, "+i", records).CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("Operation not supported")) || bytes.Contains(out, []byte("Inappropriate ioctl")) {
			t.Skipf("file system has no immutable attribute: %s", out)
		}
		t.Fatalf("chattr +i: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(chattr, "-i", records).Run() })

	r := e.Alice.SSH(t, "db1", "echo should-not-run")
	if r.Code == 0 || strings.Contains(r.Stdout, "should-not-run") {
		e.failf(t, r, "login succeeded with an unwritable audit log")
	}
	if !strings.Contains(r.Stderr, "audit log is unavailable") {
		e.errorf(t, r, "refusal does not name the audit log")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatalf("live session still running 10s after the audit log failed:\n%s", liveOut.String())
	}
	if !strings.Contains(liveOut.String(), "audit log is unavailable") {
		t.Errorf("live session ended without saying why:\n%s", liveOut.String())
	}
}

// TestAuditSurvivesCrash kills the gateway with SIGKILL during a burst of
// logins and commands; after a restart the log verifies, and every login
// the clients saw succeed is in it.
func TestAuditSurvivesCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const clients, rounds = 6, 20
	var ok atomic.Int64
	done := make(chan struct{}, clients)
	for i := 0; i < clients; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			// whoami is audited before it prints, so output proves the
			// event was acknowledged. Each client stops at its first failure.
			for j := 0; j < rounds; j++ {
				r := e.Alice.SSH(t, "gw", "whoami")
				if r.Code != 0 || !strings.Contains(r.Stdout, "alice") {
					return
				}
				ok.Add(1)
			}
		}()
	}
	// Kill in the middle of the burst: once some commands got through.
	if !testenv.WaitFor(30*time.Second, func() bool { return ok.Load() >= 8 }) {
		t.Fatalf("burst did not get going:\n%s", e.GW.Tail())
	}
	e.GW.Crash(t)
	for i := 0; i < clients; i++ {
		<-done
	}
	succeeded := int(ok.Load())
	restarted := testenv.StartGateway(t, e.Bin, e.Config, e.GW.Port)
	if r := e.Alice.SSH(t, "gw", "whoami"); r.Code != 0 {
		t.Fatalf("login after restart: %s\n%s", r, restarted.Tail())
	}
	restarted.Stop(t)
	if out, errOut, err := restarted.Run(t, "audit", "verify", "--config", e.Config); err != nil {
		t.Fatalf("audit verify after crash: %v\n%s\n%s", err, out, errOut)
	}
	out, _, err := restarted.Run(t, "audit", "show", "--config", e.Config, "--type", "command")
	if err != nil {
		t.Fatal(err)
	}
	// Every whoami that printed was audited first (fail closed), plus the
	// one after the restart.
	if got := strings.Count(out, "whoami"); got < succeeded+1 {
		t.Errorf("%d whoami commands succeeded (+1 after restart) but the log holds %d:\n%s", succeeded, got, out)
	}
	t.Logf("%d commands finished before the kill", succeeded)
}

// TestAuditConfigChanges edits the configuration under a running gateway
// and reloads it: each modified and deleted entity is one config.change
// event with the changed fields (M12).
func TestAuditConfigChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// bob's email changes; web1 (the last host) goes.
	e.Cfg.Persons[1].Email = "bob.berg@example.org"
	if e.Cfg.Persons[1].ID != "bob" || e.Cfg.Hosts[3].Name != "web1" {
		t.Fatalf("fixture changed shape; cannot edit: %+v", e.Cfg)
	}
	e.Cfg.Hosts = e.Cfg.Hosts[:3]
	writeConfig(t, e.Config, e.Cfg)
	e.GW.Signal(t, syscall.SIGHUP)
	if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(e.GW.Stderr.String(), "configuration reloaded") }) {
		t.Fatalf("no reload:\n%s", e.GW.Tail())
	}
	out, errOut, err := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "config.change", "--json")
	if err != nil {
		t.Fatalf("audit show: %v\n%s", err, errOut)
	}
	var sawEmail, sawDelete bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Attrs map[string]string `json:"attrs"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		a := ev.Attrs
		if a["entity"] == "person" && a["id"] == "bob" && a["kind"] == "modify" &&
			strings.Contains(a["old.email"], "bob@example.org") && strings.Contains(a["new.email"], "bob.berg@example.org") {
			sawEmail = true
		}
		if a["entity"] == "host" && a["id"] == "web1" && a["kind"] == "delete" && strings.HasPrefix(a["trigger"], "reload of ") {
			sawDelete = true
		}
	}
	if !sawEmail || !sawDelete {
		t.Errorf("config.change events: email modify %v, host delete %v\n%s", sawEmail, sawDelete, out)
	}
}

// TestOneGatewayPerDataDirAndRecovery: a second serve on the data
// directory is refused naming the first one's pid; a log damaged in the
// middle keeps serve down, with the way back in the error; tandem audit
// recover starts a new segment, the gateway starts again, and audit
// verify reports the gap.
func TestOneGatewayPerDataDirAndRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, errOut, err := testenv.RunTandem(t, e.Bin, "serve", "--config", e.Config)
	if want := fmt.Sprintf("is in use by tandem serve (pid %d); one gateway per data directory", e.GW.PID()); err == nil || !strings.Contains(errOut, want) {
		t.Fatalf("second serve: %v\n%s\nwant %q", err, errOut, want)
	}
	if r := e.Alice.SSH(t, "gw", "whoami"); r.Code != 0 {
		t.Fatalf("the first gateway after the second was refused: %s", r)
	}
	e.GW.Stop(t)

	records := filepath.Join(e.Dir, "data", "audit", "records.log")
	b, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff // inside the first record: damage no crash explains
	if err := os.WriteFile(records, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err = testenv.RunTandem(t, e.Bin, "serve", "--config", e.Config)
	if err == nil || !strings.Contains(errOut, "tandem audit recover --config") {
		t.Fatalf("serve on a damaged log: %v\n%s", err, errOut)
	}
	out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "recover", "--config", e.Config, "--reason", "e2e: flipped a byte")
	if err != nil {
		t.Fatalf("audit recover: %v\n%s\n%s", err, out, errOut)
	}
	restarted := testenv.StartGateway(t, e.Bin, e.Config, e.GW.Port)
	if r := e.Alice.SSH(t, "gw", "whoami"); r.Code != 0 {
		t.Fatalf("login after recovery: %s\n%s", r, restarted.Tail())
	}
	restarted.Stop(t)
	out, errOut, err = restarted.Run(t, "audit", "verify", "--config", e.Config)
	if err != nil || !strings.Contains(out, "gap: segment 2 starts after a recovery") || !strings.Contains(out, "reason: e2e: flipped a byte") {
		t.Fatalf("audit verify after recovery: %v\n%s\n%s", err, out, errOut)
	}
}
