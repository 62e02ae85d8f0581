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

	"tandem.dev/tandem/internal/config"
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

// TestAuditReadAndReload: reloads name who made them (tandem reload --by,
// ssh gw reload, a bare SIGHUP), and ssh gw audit show lets a person with
// an audit grant read their tenant's events only, every read recorded.
func TestAuditReadAndReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// alice gets audit for schule-nord, root on a host of another tenant
	// and the permission configure; bob stays without either.
	const sued = "schule-sued"
	e.Cfg.Tenants = append(e.Cfg.Tenants, config.Tenant{ID: sued, Name: "Schule Süd"})
	e.Cfg.Hosts = append(e.Cfg.Hosts, config.Host{Name: "sued1", Address: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		Tenant: sued, Environment: config.Test, HostKey: e.Cfg.Hosts[0].HostKey})
	auditor := role("auditor", "reads nord's audit log, reloads",
		config.Rule{Hosts: nord, Audit: true}, config.Rule{Hosts: config.Selector{Tenant: sued}, Logins: []string{"root"}})
	auditor.Permissions = []string{config.PermissionConfigure}
	e.Cfg.Roles = append(e.Cfg.Roles, auditor)
	e.Cfg.Persons[0].Roles = append(e.Cfg.Persons[0].Roles, "auditor")
	writeConfig(t, e.Config, e.Cfg)

	if out, errOut, err := e.GW.Run(t, "reload", "--config", e.Config, "--by", "alice"); err != nil {
		t.Fatalf("tandem reload: %v\n%s%s\ngateway:\n%s", err, out, errOut, e.GW.Tail())
	}
	reloads := operatorEvents(t, e, "config.reload")
	if len(reloads) != 1 || reloads[0].Attrs["by"] != "alice" || !strings.Contains(reloads[0].Attrs["trigger"], "tandem reload") ||
		reloads[0].Attrs["actor"] == "" || reloads[0].Attrs["changes"] == "0" {
		t.Fatalf("config.reload after tandem reload: %+v", reloads)
	}

	// Events of both tenants: a session on db1 (nord) and one on sued1.
	if r := e.Alice.SSH(t, "db1", "true"); r.Code != 0 {
		e.failf(t, r, "alice on db1")
	}
	e.Alice.SSH(t, sshArgs(e.routeArgs("root", "sued1"), "true")...) // fails to dial; audited under sued

	r := e.Alice.SSH(t, "gw", "audit", "show", "--json")
	if r.Code != 0 {
		e.failf(t, r, "alice: audit show")
	}
	var sawDB1 bool
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var ev shownEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		if ev.Tenant != tenant {
			t.Errorf("alice sees an event of %q: %s", ev.Tenant, line)
		}
		sawDB1 = sawDB1 || ev.Type == "session.start" && ev.Host == "db1"
	}
	if !sawDB1 {
		t.Errorf("alice does not see her session on db1:\n%s", r.Stdout)
	}
	if r := e.Bob.SSH(t, "gw", "audit", "show"); r.Code != 1 || !strings.Contains(r.Stderr, "bob may read the audit events of no tenant") {
		e.errorf(t, r, "bob: audit show should be refused")
	}
	reads := operatorEvents(t, e, "audit.read")
	if len(reads) != 1 || reads[0].Person != "alice" || reads[0].Attrs["tenants"] != tenant {
		t.Errorf("audit.read events: %+v", reads)
	}
	if len(operatorEvents(t, e, "session.start")) < 2 {
		t.Error("the session on sued1 left no session.start for the operator")
	}

	// ssh gw reload: bob may not, alice may and is recorded.
	if r := e.Bob.SSH(t, "gw", "reload"); r.Code != 1 || !strings.Contains(r.Stderr, "may not reload the configuration") {
		e.errorf(t, r, "bob: reload should be refused")
	}
	if r := e.Alice.SSH(t, "gw", "reload"); r.Code != 0 || !strings.Contains(r.Stdout, "configuration reloaded: 0 change(s)") {
		e.failf(t, r, "alice: reload")
	}
	e.GW.Signal(t, syscall.SIGHUP)
	if !testenv.WaitFor(10*time.Second, func() bool { return len(operatorEvents(t, e, "config.reload")) == 3 }) {
		t.Fatalf("no reload after SIGHUP:\n%s", e.GW.Tail())
	}
	reloads = operatorEvents(t, e, "config.reload")
	if reloads[1].Attrs["by"] != "alice" || !strings.Contains(reloads[1].Attrs["trigger"], "ssh gw reload") || reloads[1].Source == "" ||
		reloads[2].Attrs["by"] != "unknown (signal)" {
		t.Errorf("config.reload events: %+v", reloads)
	}
}

// shownEvent is an event as tandem audit show --json prints it.
type shownEvent struct {
	Type    string            `json:"type"`
	Time    time.Time         `json:"time"`
	Person  string            `json:"person"`
	Session string            `json:"session"`
	Tenant  string            `json:"tenant"`
	Host    string            `json:"host"`
	Source  string            `json:"source"`
	Attrs   map[string]string `json:"attrs"`
	// Unreadable are the parts the reader could not decrypt.
	Unreadable []struct {
		Class  string `json:"class"`
		Day    string `json:"day"`
		Reason string `json:"reason"`
	} `json:"unreadable"`
}

// unreadable returns "class day reason" for each part ev lacks.
func (ev shownEvent) unreadable() []string {
	var out []string
	for _, u := range ev.Unreadable {
		out = append(out, u.Class+" "+u.Day+" "+u.Reason)
	}
	return out
}

// shownEvents parses the JSON lines of audit show --json.
func shownEvents(t *testing.T, out string) []shownEvent {
	t.Helper()
	var evs []shownEvent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev shownEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// operatorEvents reads the events of type typ with tandem audit show.
func operatorEvents(t *testing.T, e *env, typ string) []shownEvent {
	t.Helper()
	return gatewayEvents(t, e.GW, typ)
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
