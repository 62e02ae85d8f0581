package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the adversarial end-to-end suite: it asserts the
// gateway's promises against clients that misbehave on purpose (never
// read, stop answering keep-alives, hold many channels, flood) and
// against configuration changes made while connections are open.
//
//  1. Nothing a client does holds back enforcement: a lock, revocation,
//     expiry or reload ends every affected session within 1s.
//  2. Every decision uses the state in force now, also over an open
//     (ControlMaster) connection.
//  3. An approved request is not a shell.
//  4. Forward grants are bound to their hosts and leave from the target.
//  5. FIDO2, where required, means every typing person.
//  6. Externals are always supervised.
//
// Every wait has a deadline; a broken promise fails with the evidence
// (command output, timings, gateway output, target log).

// enforceWithin is how soon after an enforcing command returns the
// affected sessions and connections must be gone.
const enforceWithin = time.Second

// commandWithin bounds how long `tandem lock`, `ssh gw lock` and the
// other enforcing commands may take.
const commandWithin = 3 * time.Second

// adversaryRoles are the suite's roles:
//
//   - admin: root on every host, joins as peer or observer, and forwards
//     to localhost:forwardPort from test hosts only
//   - lead: admin rights plus approving requests and reading recordings
//   - locker: root, and the lock permission
//   - contractor: external, root on every host
//   - webonly: root on web1 only (a reload moves persons here to take
//     their rights on db1 away)
func adversaryRoles(forwardPort int) []config.Role {
	joins := []string{config.JoinPeer, config.JoinObserver}
	locker := role("locker", "root, and may lock persons", config.Rule{Hosts: nord, Logins: root})
	locker.Permissions = []string{config.PermissionLock}
	contractor := role("contractor", "an external expert", config.Rule{Hosts: nord, Logins: root})
	contractor.External = true
	return []config.Role{
		role("admin", "root on every host; joins; forwards from test hosts",
			config.Rule{Hosts: nord, Logins: root, Join: joins},
			config.Rule{Hosts: config.Selector{Environment: config.Test}, Logins: root, Forward: []string{fmt.Sprintf("localhost:%d", forwardPort)}}),
		role("lead", "root on every host; approves requests, reads recordings",
			config.Rule{Hosts: nord, Logins: root, Join: joins, Approve: true, Read: true}),
		locker, contractor,
		role("webonly", "root on web1 only", config.Rule{Hosts: config.Selector{Names: []string{"web1"}}, Logins: root}),
	}
}

// advRoles are the persons of the suite. fay and finn hold software FIDO2
// keys (testenv.SKSigner); everybody else a plain ECDSA key.
var advRoles = []struct {
	id, role string
	external bool
	sk       bool
}{
	{"alice", "admin", false, false},
	{"carol", "admin", false, false},
	{"bob", "lead", false, false},
	{"peggy", "lead", false, false},
	{"lena", "locker", false, false},
	{"xena", "contractor", true, false},
	{"fay", "admin", false, true},
	{"finn", "lead", false, true},
}

// advEnv is one setup of the suite: two sshds (A serves db1 and prod1,
// B serves nofwd1 with AllowTcpForwarding no), the gateway, an echo
// listener for forwards and a client per person.
type advEnv struct {
	Dir, Bin, Config string
	Cfg              *config.Config // as last written
	A, B             *testenv.Target
	GW               *testenv.Gateway
	Echo             *echoServer
	keys             map[string]string // person → private key file (plain keys)
	sk               map[string]*testenv.SKSigner
	clients          map[string]*testenv.Client // OpenSSH, plain-key persons
}

// advOpts tunes one setup.
type advOpts struct {
	DB1Env       string // environment of db1; default test
	RequireFIDO2 []string
}

func newAdvEnv(t *testing.T, o advOpts) *advEnv {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	e := &advEnv{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml"),
		keys: map[string]string{}, sk: map[string]*testenv.SKSigner{}, clients: map[string]*testenv.Client{}}
	e.Echo = startEcho(t)
	portA, portB, gwPort, deadPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	e.Cfg = gwConfig(dir, gwPort)
	e.Cfg.Gateway.Limits = config.Limits{FailuresPerSource: 1000, FailuresPerPerson: 1000}
	e.Cfg.Policy = config.Policy{WaitTimeout: config.Duration{Duration: 20 * time.Second}, RequireFIDO2: o.RequireFIDO2}
	e.Cfg.Roles = adversaryRoles(e.Echo.Port)
	for _, r := range advRoles {
		var pub string
		if r.sk {
			s, err := testenv.NewSKSigner()
			if err != nil {
				t.Fatalf("software FIDO2 key for %s: %v", r.id, err)
			}
			e.sk[r.id], pub = s, s.AuthorizedKey()
		} else {
			e.keys[r.id], pub = testenv.KeyPair(t, keysDir, r.id, "ecdsa")
		}
		e.Cfg.Persons = append(e.Cfg.Persons, member(r.id, pub, r.role, r.external))
	}
	hostA, hostAPub := testenv.KeyPair(t, keysDir, "a_host", "ecdsa")
	hostB, hostBPub := testenv.KeyPair(t, keysDir, "b_host", "ecdsa")
	db1Env := o.DB1Env
	if db1Env == "" {
		db1Env = config.Test
	}
	addrA, addrB := fmt.Sprintf("127.0.0.1:%d", portA), fmt.Sprintf("127.0.0.1:%d", portB)
	e.Cfg.Hosts = []config.Host{
		host("db1", db1Env, addrA, hostAPub),
		host("prod1", config.Production, testenv.LoopbackAlias(addrA, 1), hostAPub),
		host("nofwd1", config.Test, addrB, hostBPub),
		host("web1", config.Test, fmt.Sprintf("127.0.0.1:%d", deadPort), hostAPub),
	}
	writeConfig(t, e.Config, e.Cfg)
	userCA := caPublic(t, bin, e.Config, "user")
	e.A = testenv.StartSSHD(t, testenv.TargetOpts{Port: portA, HostKeyFile: hostA, UserCA: userCA})
	e.B = testenv.StartSSHD(t, testenv.TargetOpts{Port: portB, HostKeyFile: hostB, UserCA: userCA,
		Extra: []string{"AllowTcpForwarding no"}})
	e.GW = testenv.StartGateway(t, bin, e.Config, gwPort)
	e.clients = personClients(t, dir, e.GW, gwPort, e.keys,
		map[string]string{"db1": "root", "prod1": "root", "nofwd1": "root"})
	return e
}

// route returns ssh arguments reaching root@host in user-name mode.
func (e *advEnv) route(host string) []string {
	return []string{"-p", strconv.Itoa(e.GW.Port), "root%" + host + "@127.0.0.1"}
}

func (e *advEnv) client(t *testing.T, person string) *testenv.Client {
	t.Helper()
	return clientOf(t, e.clients, person)
}

// gw runs `ssh gw ARGS…` as person with a 15s deadline.
func (e *advEnv) gw(t *testing.T, person string, args ...string) testenv.Result {
	t.Helper()
	return e.client(t, person).Exec(t, testenv.RunOpts{Timeout: 15 * time.Second}, "ssh", append([]string{"gw"}, args...)...)
}

// signer returns person's key as an ssh.Signer (file key or software sk).
func (e *advEnv) signer(t *testing.T, person string) ssh.Signer {
	t.Helper()
	if s := e.sk[person]; s != nil {
		return s
	}
	s, err := testenv.ParsePrivateKeyFile(e.keys[person])
	if err != nil {
		t.Fatalf("key of %s: %v", person, err)
	}
	return s
}

// dial connects an attacker client for person with SSH user name user
// ("alice", "root%db1", …) and closes it at cleanup.
func (e *advEnv) dial(t *testing.T, person, user string) *testenv.Attacker {
	t.Helper()
	a, err := e.tryDial(t, person, user)
	if err != nil {
		t.Fatalf("%s as %q: dial the gateway: %v\ngateway:\n%s", person, user, err, e.GW.Tail())
	}
	return a
}

func (e *advEnv) tryDial(t *testing.T, person, user string) (*testenv.Attacker, error) {
	t.Helper()
	a, err := testenv.DialAttacker(t.Context(), testenv.AttackerOpts{Addr: e.GW.Addr, User: user, Signer: e.signer(t, person)})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = a.Close() })
	return a, nil
}

// timedTandem runs the tandem CLI with a 10s deadline and reports how
// long it took and when it returned.
func (e *advEnv) timedTandem(t *testing.T, args ...string) (string, time.Duration, time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out, errOut testenv.SyncBuffer
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("tandem %s: %v (after %v, deadline 10s)\nstdout: %s\nstderr: %s\ngateway:\n%s",
			strings.Join(args, " "), err, took.Round(time.Millisecond), out.String(), errOut.String(), e.GW.Tail())
	}
	return out.String(), took, start.Add(took)
}

// reload rewrites the configuration after mutate, sends SIGHUP and waits
// (≤ 5s) until the gateway logged the reload.
func (e *advEnv) reload(t *testing.T, mutate func(*config.Config)) time.Time {
	t.Helper()
	mutate(e.Cfg)
	writeConfig(t, e.Config, e.Cfg)
	before := strings.Count(e.GW.Stderr.String(), "configuration reloaded")
	e.GW.Signal(t, syscall.SIGHUP)
	sent := time.Now()
	if !testenv.WaitFor(5*time.Second, func() bool {
		return strings.Count(e.GW.Stderr.String(), "configuration reloaded") > before
	}) {
		t.Fatalf("the gateway did not log %q within 5s of SIGHUP\ngateway:\n%s", "configuration reloaded", e.GW.Tail())
	}
	return sent
}

func (e *advEnv) person(name string) *config.Person {
	for i := range e.Cfg.Persons {
		if e.Cfg.Persons[i].ID == name {
			return &e.Cfg.Persons[i]
		}
	}
	return nil
}

// advAudit is one audit event as `tandem audit show --json` prints it.
type advAudit struct {
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Person  string            `json:"person"`
	Host    string            `json:"host"`
	Session string            `json:"session"`
	Request string            `json:"request"`
	Attrs   map[string]string `json:"attrs"`
}

// audit returns every audit event so far.
func (e *advEnv) audit(t *testing.T) []advAudit {
	t.Helper()
	out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "show", "--config", e.Config, "--json")
	if err != nil {
		t.Fatalf("tandem audit show --json: %v\n%s", err, errOut)
	}
	var recs []advAudit
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r advAudit
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("tandem audit show --json: %v\n%s", err, clipTail(out, 2000))
		}
		recs = append(recs, r)
	}
	return recs
}

// waitAuditEvent waits (≤ 5s) for an event that match accepts.
func (e *advEnv) waitAuditEvent(t *testing.T, match func(advAudit) bool) (advAudit, bool) {
	t.Helper()
	var found advAudit
	ok := testenv.WaitFor(5*time.Second, func() bool {
		for _, r := range e.audit(t) {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found, ok
}

// sessionsStarted counts sshd's "Starting session:" lines on a target:
// every command or shell that reached it, even over a reused connection.
func sessionsStarted(tg *testenv.Target) int {
	return strings.Count(tg.Log(), "Starting session: ")
}

// closedIn checks that an attacker connection was closed within limit of
// ref (the moment an enforcing command returned).
func (e *advEnv) closedIn(t *testing.T, promise, what string, a *testenv.Attacker, ref time.Time, limit time.Duration) {
	t.Helper()
	at, ok := a.WaitClosed(time.Until(ref.Add(limit + 2*time.Second)))
	if !ok {
		t.Errorf("PROMISE BROKEN (%s): %s: connection still open %v after the command returned (limit %v)\ngateway:\n%s",
			promise, what, time.Since(ref).Round(time.Millisecond), limit, e.GW.Tail())
		return
	}
	d := at.Sub(ref)
	t.Logf("%s: connection closed %v after the command returned (%s)", what, d.Round(time.Millisecond), a.HowClosed())
	if d > limit {
		t.Errorf("PROMISE BROKEN (%s): %s: connection closed %v after the command returned, limit %v", promise, what, d.Round(time.Millisecond), limit)
	}
}

// echoServer is a TCP echo listener on 127.0.0.1 that forwards reach.
type echoServer struct {
	Port int
	mu   sync.Mutex
	n    int
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echo listener: %v", err)
	}
	s := &echoServer{Port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return s
}

func (s *echoServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// exchange connects to a local forward on lport, sends a line and reports
// whether the echo came back (within 3s) and what it got.
func exchange(lport int, line string) (bool, string) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport), 2*time.Second)
	if err != nil {
		return false, "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return false, "write: " + err.Error()
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false, fmt.Sprintf("read: %v (got %q)", err, got)
	}
	return strings.TrimSpace(got) == line, got
}

// --- promise 1: nothing a client does holds back enforcement ----------

// stalledExec is the command whose output a stalled client never reads:
// more than any channel and socket buffers hold, and still bounded.
const stalledExec = "head -c 64000000 /dev/zero"

// fillTime lets a stalled command's output fill the channel window and
// the socket buffers on the way. Nothing observable says when they are
// full, so this one pause is a duration, not a condition.
const fillTime = 300 * time.Millisecond

// TestAdversaryLockStalledClients: alice holds a connection with many
// channels whose output she never reads and a second one that stops
// reading its socket (no keep-alive answered); carol has a normal live
// session. `ssh gw lock carol` by lena ends carol's session at once
// though alice's stalled clients are still there; `tandem lock alice`
// closes both of alice's connections within 1s of its return.
func TestAdversaryLockStalledClients(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "1: a lock ends every affected session within 1s, whatever the client does"

	stalled := e.dial(t, "alice", "root%db1")
	chans, err := stalled.Sessions(8, testenv.SessionOpts{Exec: stalledExec})
	if len(chans) == 0 {
		t.Fatalf("alice: no stalled exec channel opened on db1: %v\ngateway:\n%s", err, e.GW.Tail())
	}
	t.Logf("alice holds %d unread exec channels (%v)", len(chans), err)
	frozen := e.dial(t, "alice", "root%db1")
	if _, err := frozen.Session(testenv.SessionOpts{Exec: stalledExec}); err != nil {
		t.Fatalf("alice: exec on the client to freeze: %v", err)
	}
	// Let the outputs fill every buffer on the way before freezing.
	if !testenv.WaitFor(10*time.Second, func() bool { return sessionsStarted(e.A) >= len(chans)+1 }) {
		t.Fatalf("the target did not start alice's %d commands\ntarget log:\n%s", len(chans)+1, clipTail(e.A.Log(), 3000))
	}
	time.Sleep(fillTime)
	frozen.Freeze()

	carol := startLive(t, "carol", e.client(t, "carol"), sleepArgs(e.route("db1")...)...)
	if !testenv.WaitFor(10*time.Second, func() bool { return sessionsStarted(e.A) >= len(chans)+2 }) {
		t.Fatalf("carol's live session did not reach db1\n%s\ngateway:\n%s", carol.output(), e.GW.Tail())
	}

	// lena locks carol through the gateway while alice's stalled clients
	// hold their connections.
	returned := e.enforce(t, promise, "lena", "lock", "carol", "--reason", "'adversary test: carol'")
	if !carol.waitExit(time.Until(returned.Add(enforceWithin + 2*time.Second))) {
		t.Errorf("PROMISE BROKEN (%s): carol's session still runs %v after ssh gw lock carol returned\n%s\ngateway:\n%s",
			promise, time.Since(returned), carol.output(), e.GW.Tail())
	} else if d := carol.exitAt.Sub(returned); d > enforceWithin {
		t.Errorf("PROMISE BROKEN (%s): carol's session ended %v after ssh gw lock carol returned, limit %v (alice's stalled clients held it back?)\n%s",
			promise, d, enforceWithin, carol.output())
	} else {
		t.Logf("carol's session ended %v after the lock command returned", d.Round(time.Millisecond))
	}
	select {
	case <-stalled.Closed():
		t.Errorf("alice's stalled connection closed with carol's lock (%s): only carol was locked", stalled.HowClosed())
	default:
	}

	_, took, ret := e.timedTandem(t, "lock", "alice", "--reason", "adversary test: alice", "--config", e.Config)
	t.Logf("tandem lock alice took %v", took.Round(time.Millisecond))
	if took > commandWithin {
		t.Errorf("PROMISE BROKEN (%s): tandem lock alice took %v, limit %v", promise, took, commandWithin)
	}
	e.closedIn(t, promise, "alice's connection with unread channels", stalled, ret, enforceWithin)
	e.closedIn(t, promise, "alice's connection that stopped reading its socket (no keep-alive answered)", frozen, ret, enforceWithin)
}

// TestAdversaryRevokeStalled: under an approved request on prod1, alice
// runs an exec whose output she never reads; `ssh gw revoke` ends it
// within 1s of its return.
func TestAdversaryRevokeStalled(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "1: a revocation ends every affected session within 1s, whatever the client does"
	id := e.requestApproved(t, "alice", "prod1", "1h", "bob")
	a := e.dial(t, "alice", "root%prod1")
	s, err := a.Session(testenv.SessionOpts{Exec: stalledExec})
	if err != nil {
		t.Fatalf("alice: exec on prod1 under the approved request %s: %v\ngateway:\n%s", id, err, e.GW.Tail())
	}
	if !testenv.WaitFor(10*time.Second, func() bool { return sessionsStarted(e.A) >= 1 }) {
		t.Fatalf("alice's exec did not reach prod1\ngateway:\n%s", e.GW.Tail())
	}
	time.Sleep(fillTime)
	returned := e.enforce(t, promise, "bob", "revoke", id, "--reason", "adversary test revocation")
	e.sessionEndedIn(t, promise, "alice's unread exec under the revoked request", a, s, "ssh gw revoke returned", returned, enforceWithin)
}

// enforce runs an enforcing gateway command (`ssh gw lock|revoke …`) as
// person, reports a broken promise when it takes longer than
// commandWithin or hangs, and returns when it returned.
func (e *advEnv) enforce(t *testing.T, promise, person string, args ...string) time.Time {
	t.Helper()
	start := time.Now()
	r := e.client(t, person).Exec(t, testenv.RunOpts{Timeout: commandWithin + 5*time.Second}, "ssh", append([]string{"gw"}, args...)...)
	returned := time.Now()
	took := returned.Sub(start)
	t.Logf("%s: ssh gw %s took %v", person, strings.Join(args, " "), took.Round(time.Millisecond))
	if r.TimedOut || took > commandWithin {
		t.Errorf("PROMISE BROKEN (%s): %s: ssh gw %s took %v (limit %v) while stalled clients are connected\n%s\ngateway:\n%s",
			promise, person, strings.Join(args, " "), took.Round(time.Millisecond), commandWithin, r, e.GW.Tail())
	}
	if r.Code != 0 && !r.TimedOut {
		t.Fatalf("%s: ssh gw %s failed\n%s\ngateway:\n%s", person, strings.Join(args, " "), r, e.GW.Tail())
	}
	return returned
}

// sessionEndedIn checks that a session channel (or its whole connection)
// ended within limit of ref.
func (e *advEnv) sessionEndedIn(t *testing.T, promise, what string, a *testenv.Attacker, s *testenv.AttackSession, refName string, ref time.Time, limit time.Duration) {
	t.Helper()
	deadline := time.Until(ref.Add(limit + 2*time.Second))
	var at time.Time
	var how string
	select {
	case <-s.Done():
		at, how = s.DoneAt(), "channel closed"
	case <-a.Closed():
		at, how = a.ClosedAt(), "connection closed ("+a.HowClosed()+")"
	case <-time.After(deadline):
		t.Errorf("PROMISE BROKEN (%s): %s still runs %v after %s (limit %v)\ngateway:\n%s",
			promise, what, time.Since(ref).Round(time.Millisecond), refName, limit, e.GW.Tail())
		return
	}
	d := at.Sub(ref)
	t.Logf("%s: %s %v after %s", what, how, d.Round(time.Millisecond), refName)
	if d > limit {
		t.Errorf("PROMISE BROKEN (%s): %s: %s %v after %s, limit %v", promise, what, how, d.Round(time.Millisecond), refName, limit)
	}
}

// requestIDLine finds the request id in `ssh gw request` output.
var advRequestIDRE = regexp.MustCompile(`(?m)^request ([0-9a-f]{8}): `)

// request asks for access as person (OpenSSH) with extra flags before
// the reason and returns the id.
func (e *advEnv) request(t *testing.T, person, hosts, dur string, extra ...string) string {
	t.Helper()
	args := append([]string{"request", "--hosts", hosts, "--login", "root", "--for", dur}, extra...)
	args = append(args, "--reason", "TICKET-42 adversary test work")
	r := e.gw(t, person, args...)
	m := advRequestIDRE.FindStringSubmatch(r.Stdout)
	if r.Code != 0 || m == nil {
		t.Fatalf("%s: ssh gw %s: want `request <id>: …`\n%s\ngateway:\n%s", person, strings.Join(args, " "), r, e.GW.Tail())
	}
	return m[1]
}

// requestApproved requests and has approver approve; returns the id.
func (e *advEnv) requestApproved(t *testing.T, person, hosts, dur, approver string) string {
	t.Helper()
	id := e.request(t, person, hosts, dur)
	if r := e.gw(t, approver, "approve", id); r.Code != 0 || !strings.Contains(r.Stdout, "approved") {
		t.Fatalf("%s: ssh gw approve %s\n%s\ngateway:\n%s", approver, id, r, e.GW.Tail())
	}
	return id
}

// TestAdversaryExpiryStalled: a request approved for 3s; alice's exec
// under it never reads its output; it ends within 1s of the window's end
// (the request.approve event's valid_until).
func TestAdversaryExpiryStalled(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "1: an expiry ends every affected session within 1s, whatever the client does"
	id := e.request(t, "alice", "prod1", "3s")
	a := e.dial(t, "alice", "root%prod1") // connected before the approval, so the window is not spent dialing
	if r := e.gw(t, "bob", "approve", id); r.Code != 0 {
		t.Fatalf("bob: ssh gw approve %s\n%s", id, r)
	}
	s, err := a.Session(testenv.SessionOpts{Exec: stalledExec})
	if err != nil {
		t.Fatalf("alice: exec on prod1 under the 3s request %s: %v\ngateway:\n%s", id, err, e.GW.Tail())
	}
	ev, ok := e.waitAuditEvent(t, func(r advAudit) bool {
		return r.Type == "request.approve" && r.Request == id && r.Attrs["valid_until"] != ""
	})
	if !ok {
		t.Fatalf("no request.approve event with valid_until for %s: %+v", id, e.audit(t))
	}
	until, err := time.Parse(time.RFC3339, ev.Attrs["valid_until"])
	if err != nil {
		t.Fatalf("valid_until %q: %v", ev.Attrs["valid_until"], err)
	}
	// valid_until has whole seconds: the window ends before the next one.
	e.sessionEndedIn(t, promise, "alice's unread exec under the expiring request", a, s,
		"the end of the window (valid_until "+ev.Attrs["valid_until"]+", rounded up to the next second)", until.Add(time.Second), enforceWithin)
}

// TestAdversaryLockFlood: 8 workers open fresh connections as alice for
// at most 5s, each printing the target's clock; `tandem lock alice` at
// about 1s. No command may run on the target after the lock returned.
func TestAdversaryLockFlood(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "2: the lock is part of every authorization"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	signer := e.signer(t, "alice")
	var mu sync.Mutex
	var stamps []int64
	var errs []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && ctx.Err() == nil; i++ {
				a, err := testenv.DialAttacker(ctx, testenv.AttackerOpts{Addr: e.GW.Addr, User: "root%db1", Signer: signer, Timeout: 3 * time.Second})
				if err != nil {
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, fmt.Sprintf("worker %d: %v", w, err))
					}
					mu.Unlock()
					continue
				}
				s, err := a.Session(testenv.SessionOpts{Exec: "date +%s%N", Read: true})
				if err == nil {
					s.WaitDone(3 * time.Second)
					for _, f := range strings.Fields(s.Output.String()) {
						if n, err := strconv.ParseInt(f, 10, 64); err == nil && n > 1e18 {
							mu.Lock()
							stamps = append(stamps, n)
							mu.Unlock()
						}
					}
				}
				_ = a.Close()
			}
		}()
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	_, took, ret := e.timedTandem(t, "lock", "alice", "--reason", "adversary flood", "--config", e.Config)
	wg.Wait()
	var before, after []int64
	for _, s := range stamps {
		if s > ret.UnixNano() {
			after = append(after, s)
		} else {
			before = append(before, s)
		}
	}
	t.Logf("tandem lock took %v; %d commands ran before its return, %d after; dial errors (first 5): %q", took, len(before), len(after), errs)
	if len(before) == 0 {
		t.Errorf("no command ran before the lock: honest use must go on until then (errors: %q)\ngateway:\n%s", errs, e.GW.Tail())
	}
	if len(after) > 0 {
		var late []string
		for _, s := range after[:min(len(after), 5)] {
			late = append(late, fmt.Sprintf("+%v", time.Duration(s-ret.UnixNano())))
		}
		t.Errorf("PROMISE BROKEN (%s): %d command(s) of alice ran on db1 after tandem lock returned (e.g. %s after it)",
			promise, len(after), strings.Join(late, ", "))
	}
}

// --- promise 2: every decision uses the state in force now -------------

// controlMaster starts an OpenSSH master connection for person to root%db1
// in the foreground (the test owns its PID) and waits until it serves.
func (e *advEnv) controlMaster(t *testing.T, person string) (*liveSSH, string) {
	t.Helper()
	sock := filepath.Join(e.Dir, person+".ctl")
	m := startLive(t, person+"'s master", e.client(t, person),
		append([]string{"-M", "-S", sock, "-o", "ControlPersist=no", "-N"}, e.route("db1")...)...)
	if !testenv.WaitFor(10*time.Second, func() bool { return e.overMaster(t, person, sock, 3*time.Second, "-O", "check").Code == 0 }) {
		t.Fatalf("%s's ControlMaster does not answer -O check\n%s\ngateway:\n%s", person, m.output(), e.GW.Tail())
	}
	return m, sock
}

// overMaster runs `ssh -S SOCK ARGS… x` over an existing master.
func (e *advEnv) overMaster(t *testing.T, person, sock string, timeout time.Duration, args ...string) testenv.Result {
	t.Helper()
	full := append([]string{"-S", sock, "-o", "ControlMaster=no"}, args...)
	if len(args) > 0 && args[0] == "-O" {
		full = append(full, "x")
	}
	return e.client(t, person).Exec(t, testenv.RunOpts{Timeout: timeout}, "ssh", full...)
}

func (e *advEnv) execOverMaster(t *testing.T, person, sock string, extra ...string) (testenv.Result, string) {
	t.Helper()
	n := "hi-" + nonce(t)
	return e.overMaster(t, person, sock, 10*time.Second, append(append([]string{}, extra...), "x", "echo "+n)...), n
}

// TestAdversaryControlMaster: an open OpenSSH master connection does not
// keep rights a reload took away.
func TestAdversaryControlMaster(t *testing.T) {
	const promise = "2: every decision uses the state in force now"
	t.Run("role removed", func(t *testing.T) {
		e := newAdvEnv(t, advOpts{})
		_, sock := e.controlMaster(t, "alice")
		if r, n := e.execOverMaster(t, "alice", sock); r.Code != 0 || !strings.Contains(r.Stdout, n) {
			t.Fatalf("before the reload, exec over alice's master must work\n%s\ngateway:\n%s", r, e.GW.Tail())
		}
		started := sessionsStarted(e.A)
		live := startLive(t, "alice's sleep", e.client(t, "alice"), sleepArgs(e.route("db1")...)...)
		if !testenv.WaitFor(10*time.Second, func() bool { return sessionsStarted(e.A) > started }) {
			t.Fatalf("alice's live session did not reach db1\n%s", live.output())
		}
		sent := e.reload(t, func(c *config.Config) { e.person("alice").Roles = []string{"webonly"} })
		before := sessionsStarted(e.A)
		r, n := e.execOverMaster(t, "alice", sock)
		if r.Code == 0 || strings.Contains(r.Stdout, n) {
			t.Errorf("PROMISE BROKEN (%s): alice's role on db1 was removed, yet exec over her open master connection ran\n%s", promise, r)
		}
		if after := sessionsStarted(e.A); after != before {
			t.Errorf("PROMISE BROKEN (%s): role removed: %d session(s) reached db1 over the old master connection", promise, after-before)
		}
		if !live.waitExit(time.Until(sent.Add(4 * time.Second))) {
			t.Errorf("PROMISE BROKEN (%s): alice's live session on db1 still runs %v after the reload that removed her grant\n%s",
				promise, time.Since(sent).Round(time.Millisecond), live.output())
		} else if d := live.exitAt.Sub(sent); d > 2*time.Second {
			t.Errorf("PROMISE BROKEN (%s): alice's live session ended %v after SIGHUP, limit 2s", promise, d)
		} else {
			t.Logf("live session ended %v after SIGHUP", d.Round(time.Millisecond))
		}
	})
	t.Run("key removed", func(t *testing.T) {
		e := newAdvEnv(t, advOpts{})
		m, sock := e.controlMaster(t, "alice")
		sent := e.reload(t, func(c *config.Config) {
			_, e.person("alice").Keys[0].Key = testenv.KeyPair(t, e.Dir, "alice-new", "ecdsa")
		})
		closed := testenv.WaitFor(time.Until(sent.Add(2*time.Second)), func() bool {
			return m.ended() || e.overMaster(t, "alice", sock, time.Second, "-O", "check").Code != 0
		})
		if !closed {
			t.Errorf("PROMISE BROKEN (%s): alice's key was removed, yet her master connection is open 2s after SIGHUP\n%s\ngateway:\n%s",
				promise, m.output(), e.GW.Tail())
		} else {
			t.Logf("master connection gone %v after SIGHUP", time.Since(sent).Round(time.Millisecond))
		}
	})
	t.Run("host moved to production", func(t *testing.T) {
		e := newAdvEnv(t, advOpts{})
		_, sock := e.controlMaster(t, "alice")
		e.reload(t, func(c *config.Config) { c.Hosts[0].Environment = config.Production })
		before := sessionsStarted(e.A)
		r, n := e.execOverMaster(t, "alice", sock)
		if r.Code == 0 || strings.Contains(r.Stdout, n) {
			t.Errorf("PROMISE BROKEN (%s): db1 is production now, yet exec without a request over the old master ran\n%s", promise, r)
		}
		tty := startLive(t, "alice's terminal over the master", e.client(t, "alice"), "-S", sock, "-o", "ControlMaster=no", "-tt", "x")
		if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(tty.output(), "join") }) {
			t.Errorf("PROMISE BROKEN (%s): db1 is production now: a terminal over the old master must go to the waiting room (output with \"join\")\n%s\ngateway:\n%s",
				promise, tty.output(), e.GW.Tail())
		}
		if after := sessionsStarted(e.A); after != before {
			t.Errorf("PROMISE BROKEN (%s): db1 is production now: %d session(s) reached it over the old master without a second person or request\ntarget log:\n%s",
				promise, after-before, clipTail(e.A.Log(), 2000))
		}
	})
}

// --- promise 3: an approved request is not a shell ---------------------

// TestAdversaryRequestNotShell: under an approved request on prod1, every
// way to a shell fails and runs nothing; exec, sftp, scp and Ansible with
// pipelining work. A request with --tty needs --terminals to be approved,
// and its terminal session is recorded as a PTY session.
func TestAdversaryRequestNotShell(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "3: an approved request is not a shell"
	alice := e.client(t, "alice")
	id := e.requestApproved(t, "alice", "prod1", "1h", "bob")

	tmuxSock := "adv-" + nonce(t)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tmuxSock, "kill-server").Run() })
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ssh -tt prod1 bash -i", []string{"-tt", "prod1", "bash -i"}},
		{"ssh -T prod1 (shell without terminal)", []string{"-T", "prod1"}},
		{"ssh -tt prod1 script -q /dev/null", []string{"-tt", "prod1", "script -q /dev/null"}},
		{"ssh -tt prod1 tmux", []string{"-tt", "prod1", "tmux -L " + tmuxSock}},
	} {
		mark := filepath.Join(e.Dir, "shell-ran-"+nonce(t))
		input := fmt.Sprintf("touch %s; echo SHELL-$((40+2))\nexit\n", mark)
		r := alice.Exec(t, testenv.RunOpts{Stdin: strings.NewReader(input), Timeout: 10 * time.Second}, "ssh", tc.args...)
		_, statErr := os.Stat(mark)
		ran := statErr == nil || strings.Contains(r.Stdout, "SHELL-42")
		if ran || r.Code == 0 {
			t.Errorf("PROMISE BROKEN (%s): %s under the approved request %s: want a non-zero exit and nothing run (ran: %v)\n%s",
				promise, tc.name, id, ran, r)
		} else {
			t.Logf("%s: refused (exit %d%s): %q", tc.name, r.Code, map[bool]string{true: ", killed at deadline"}[r.TimedOut],
				strings.TrimSpace(firstLine(r.Stderr, "tandem")))
		}
	}

	n := nonce(t)
	if r := alice.SSH(t, "prod1", "echo ok-"+n); r.Code != 0 || strings.TrimSpace(r.Stdout) != "ok-"+n {
		t.Errorf("exec without terminal under the approved request must work\n%s", r)
	}
	local := filepath.Join(e.Dir, "payload.txt")
	writeTestFile(t, local, "payload "+n+"\n")
	remote := filepath.Join(mkdir(t, e.Dir, "remote"), "payload.txt")
	if r := alice.Run(t, "scp", local, "prod1:"+remote); r.Code != 0 {
		t.Errorf("scp under the approved request must work\n%s", r)
	}
	if r := alice.RunInput(t, strings.NewReader("get "+remote+" "+remote+".back\n"), "sftp", "-b", "-", "prod1"); r.Code != 0 {
		t.Errorf("sftp under the approved request must work\n%s", r)
	}

	t.Run("ansible with pipelining", func(t *testing.T) {
		if testenv.InCI() {
			testenv.RequireProgram(t, "ansible-playbook")
		} else if _, err := exec.LookPath("ansible-playbook"); err != nil {
			t.Skip("ansible-playbook not installed (apt-get install -y ansible)")
		}
		rq := &rqEnv{Dir: e.Dir, Bin: e.Bin, Config: e.Config, GW: e.GW,
			Targets: map[string]*testenv.Target{"prod1": e.A}, clients: e.clients}
		s := newAnsibleSetup(t, rq, "alice", []string{"prod1"})
		f, err := os.OpenFile(filepath.Join(s.Dir, "ansible.cfg"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(f, "pipelining = True\n") // [ssh_connection] is the file's last section
		_ = f.Close()
		s.greenRun(t, rq, id, nil)
	})

	t.Run("--tty request needs --terminals", func(t *testing.T) {
		args := []string{"request", "--hosts", "prod1", "--login", "root", "--for", "1h", "--tty", "--reason", "TICKET-43 interactive check"}
		r := e.gw(t, "alice", args...)
		m := advRequestIDRE.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			t.Fatalf("PROMISE BROKEN (%s): ssh gw request … --tty must be accepted\n%s", promise, r)
		}
		tid := m[1]
		r = e.gw(t, "bob", "approve", tid)
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "terminal") {
			t.Errorf("PROMISE BROKEN (%s): approving a --tty request without --terminals must fail and say \"terminal\"\n%s", promise, r)
		}
		r = e.gw(t, "bob", "approve", tid, "--terminals")
		if r.Code != 0 || !strings.Contains(r.Stdout, "approved") {
			t.Fatalf("bob: ssh gw approve %s --terminals\n%s\ngateway:\n%s", tid, r, e.GW.Tail())
		}
		marker := "marker-" + nonce(t)
		r = alice.Exec(t, testenv.RunOpts{Timeout: 15 * time.Second}, "ssh", "-tt", "prod1", "echo "+marker)
		if r.Code != 0 || !strings.Contains(r.Stdout, marker) {
			t.Fatalf("ssh -tt prod1 'echo %s' under the --terminals approval must work\n%s\ngateway:\n%s", marker, r, e.GW.Tail())
		}
		ev, ok := e.waitAuditEvent(t, func(a advAudit) bool { return a.Type == "session.start" && a.Request == tid && a.Session != "" })
		if !ok {
			t.Fatalf("no session.start event with request=%s: %+v", tid, e.audit(t))
		}
		r = e.gw(t, "bob", "export", ev.Session)
		if r.Code != 0 {
			t.Fatalf("bob (read): ssh gw export %s\n%s", ev.Session, r)
		}
		if !isPTYCast(r.Stdout, marker) {
			t.Errorf("PROMISE BROKEN (%s): the recording of session %s under %s is no PTY recording with the marker (asciicast v2 with \"o\" events)\n%s",
				promise, ev.Session, tid, clipTail(r.Stdout, 2000))
		}
	})
}

// isPTYCast reports whether s is an asciicast v2 with an "o" event that
// shows marker.
func isPTYCast(s, marker string) bool {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) < 2 {
		return false
	}
	var hdr struct {
		Version int `json:"version"`
	}
	if json.Unmarshal([]byte(lines[0]), &hdr) != nil || hdr.Version != 2 {
		return false
	}
	for _, l := range lines[1:] {
		var ev []any
		if json.Unmarshal([]byte(l), &ev) == nil && len(ev) == 3 && ev[1] == "o" {
			if text, _ := ev[2].(string); strings.Contains(text, marker) {
				return true
			}
		}
	}
	return false
}

// --- promise 4: forwards are bound to their hosts and leave from the target

// TestAdversaryForward: the admin role may forward to localhost:PORT from
// test hosts. Refused from prod1's route and from a bare gateway
// connection; works from db1 (jump and user-name route) with a
// forward.end event counting bytes; fails from nofwd1, whose sshd forbids
// forwarding, because the forward leaves from the target.
func TestAdversaryForward(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "4: forward grants are bound to their hosts and leave from the target"
	alice := e.client(t, "alice")
	spec := func(lport int) string { return fmt.Sprintf("%d:localhost:%d", lport, e.Echo.Port) }
	try := func(name string, dest ...string) (bool, string) {
		lport := testenv.FreePort(t)
		l := startLive(t, name, alice, append([]string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", spec(lport)}, dest...)...)
		if !testenv.WaitFor(10*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport), 200*time.Millisecond)
			if err == nil {
				_ = c.Close()
			}
			return err == nil || l.ended()
		}) {
			return false, "the local forward never listened: " + l.output()
		}
		if l.ended() {
			return false, "ssh ended: " + l.output()
		}
		line := "ping-" + nonce(t)
		ok, got := exchange(lport, line)
		_ = testenv.KillGroup(l.cmd)
		return ok, fmt.Sprintf("%s; ssh: %s", got, l.output())
	}
	for _, tc := range []struct {
		name string
		dest []string
		want bool
	}{
		{"jump route to db1 (test)", []string{"db1"}, true},
		{"user-name route root%db1", e.route("db1"), true},
		{"jump route to prod1 (production)", []string{"prod1"}, false},
		{"user-name route root%prod1", e.route("prod1"), false},
		{"bare gateway connection", []string{"gw"}, false},
		{"jump route to nofwd1 (its sshd: AllowTcpForwarding no)", []string{"nofwd1"}, false},
	} {
		before := e.Echo.accepted()
		ok, detail := try(tc.name, tc.dest...)
		switch {
		case ok && !tc.want:
			t.Errorf("PROMISE BROKEN (%s): forward via %s reached the echo listener; want refused\n%s", promise, tc.name, detail)
		case !ok && tc.want:
			t.Errorf("forward via %s (granted) must reach the echo listener: %s\ngateway:\n%s", tc.name, detail, e.GW.Tail())
		default:
			t.Logf("forward via %s: reached=%v as wanted (echo accepted %d)", tc.name, ok, e.Echo.accepted()-before)
		}
	}
	ev, ok := e.waitAuditEvent(t, func(a advAudit) bool {
		// Each probe may open more than one forward; the one that
		// carried the echoed line counts.
		return a.Type == "forward.end" && a.Attrs["bytes_in"] != "" && a.Attrs["bytes_out"] != "" &&
			a.Attrs["bytes_in"] != "0" && a.Attrs["bytes_out"] != "0"
	})
	if !ok {
		var types []string
		for _, a := range e.audit(t) {
			if strings.HasPrefix(a.Type, "forward.") {
				types = append(types, fmt.Sprintf("%s%v", a.Type, a.Attrs))
			}
		}
		t.Errorf("PROMISE BROKEN (%s): no forward.end event with bytes_in and bytes_out; forward events: %s", promise, strings.Join(types, "; "))
	} else if ev.Attrs["bytes_in"] == "0" || ev.Attrs["bytes_out"] == "0" {
		t.Errorf("forward.end %+v: want non-zero byte counts for an echoed line", ev)
	} else {
		t.Logf("forward.end: %v", ev.Attrs)
	}
}

// --- promise 5: FIDO2 where required means every typing person ---------

// TestAdversaryFIDO2: with require_fido2 on production, fay (software
// FIDO2 key) opens a terminal on prod1 and finn (FIDO2) joins as peer;
// peggy (plain ECDSA) may only observe; peggy may not approve a
// production request, finn may.
func TestAdversaryFIDO2(t *testing.T) {
	e := newAdvEnv(t, advOpts{RequireFIDO2: []string{"production"}})
	const promise = "5: FIDO2 where required means every typing person"

	owner := e.dial(t, "fay", "root%prod1")
	own, err := owner.Session(testenv.SessionOpts{PTY: true, Shell: true, Read: true})
	if err != nil {
		t.Fatalf("fay (FIDO2): terminal on prod1: %v\ngateway:\n%s", err, e.GW.Tail())
	}
	if !testenv.WaitFor(10*time.Second, func() bool { return sessionIDRE.MatchString(own.Output.String()) }) {
		t.Fatalf("fay's terminal on prod1 shows no waiting room\n%q\ngateway:\n%s", own.Output.String(), e.GW.Tail())
	}
	id := sessionIDRE.FindStringSubmatch(own.Output.String())[1]
	join := func(person string, extra ...string) (*testenv.AttackSession, bool) {
		a := e.dial(t, person, person)
		s, err := a.Session(testenv.SessionOpts{PTY: true, Exec: strings.Join(append([]string{"join", id}, extra...), " "), Read: true})
		if err != nil {
			return s, false
		}
		joined := testenv.WaitFor(5*time.Second, func() bool {
			return strings.Contains(s.Output.String(), "joined session "+id) || isDone(s)
		}) && strings.Contains(s.Output.String(), "joined session "+id)
		return s, joined
	}
	if s, joined := join("peggy", "--peer"); joined {
		t.Errorf("PROMISE BROKEN (%s): peggy (plain ECDSA key) joined fay's prod1 session %s as peer\n%q", promise, id, s.Output.String())
	} else {
		t.Logf("peggy as peer refused: %q", clipTail(s.Output.String(), 300))
	}
	if s, joined := join("peggy", "--observer"); !joined {
		t.Errorf("peggy (plain ECDSA key) may observe fay's session %s\n%q\ngateway:\n%s", id, s.Output.String(), e.GW.Tail())
	}
	if s, joined := join("finn", "--peer"); !joined {
		t.Errorf("finn (FIDO2) must join fay's session %s as peer\n%q\ngateway:\n%s", id, s.Output.String(), e.GW.Tail())
	} else if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(own.Output.String(), "the session is live") }) {
		t.Errorf("finn (FIDO2) joined as peer: fay's session must go live\n%q", own.Output.String())
	}

	// Approving: fay asks; peggy's plain key may not approve, finn's may.
	fay := e.dial(t, "fay", "fay")
	request := func() string {
		t.Helper()
		rs, err := fay.Session(testenv.SessionOpts{Exec: "request --hosts prod1 --login root --for 1h --reason TICKET-44 fido check", Read: true})
		if err != nil {
			t.Fatalf("fay: request: %v", err)
		}
		rs.WaitDone(10 * time.Second)
		m := advRequestIDRE.FindStringSubmatch(rs.Output.String())
		if m == nil {
			t.Fatalf("fay: ssh gw request: no id\n%q\ngateway:\n%s", rs.Output.String(), e.GW.Tail())
		}
		return m[1]
	}
	rid := request()
	if r := e.gw(t, "peggy", "approve", rid); r.Code == 0 {
		t.Errorf("PROMISE BROKEN (%s): peggy (plain ECDSA key) approved the production request %s\n%s", promise, rid, r)
	} else {
		t.Logf("peggy's approval refused: %q", strings.TrimSpace(r.Stderr))
	}
	rid = request() // a fresh one, should peggy's approval have gone through
	fn := e.dial(t, "finn", "finn")
	as, err := fn.Session(testenv.SessionOpts{Exec: "approve " + rid, Read: true})
	if err != nil {
		t.Fatalf("finn: approve: %v", err)
	}
	as.WaitDone(10 * time.Second)
	if as.ExitStatus() != 0 || !strings.Contains(as.Output.String(), "approved") {
		t.Errorf("finn (FIDO2) must approve %s: exit %d\n%q\ngateway:\n%s", rid, as.ExitStatus(), as.Output.String(), e.GW.Tail())
	}
}

func isDone(s *testenv.AttackSession) bool { return !s.DoneAt().IsZero() }

// --- promise 6: externals are always supervised ------------------------

// TestAdversaryExternalSupervised: xena (external) opens a terminal on
// db1, a test host; no login reaches the target until bob joins as peer.
func TestAdversaryExternalSupervised(t *testing.T) {
	e := newAdvEnv(t, advOpts{})
	const promise = "6: externals are always supervised"
	before := len(e.A.AcceptedCertLogins())
	x := e.dial(t, "xena", "root%db1")
	s, err := x.Session(testenv.SessionOpts{PTY: true, Shell: true, Read: true})
	if err != nil {
		t.Fatalf("xena: terminal on db1: %v\ngateway:\n%s", err, e.GW.Tail())
	}
	waiting := testenv.WaitFor(5*time.Second, func() bool { return sessionIDRE.MatchString(s.Output.String()) })
	xenaLogins := func() int {
		n := 0
		for _, l := range newLogins(e.A, before) {
			if strings.Contains(l.ID, "person=xena") {
				n++
			}
		}
		return n
	}
	if n := xenaLogins(); n > 0 || !waiting {
		t.Fatalf("PROMISE BROKEN (%s): xena (external) on the test host db1: want a waiting room and no login on the target; waiting room: %v, target logins of xena: %d\nxena's terminal: %q\ntarget log:\n%s",
			promise, waiting, n, clipTail(s.Output.String(), 1000), clipTail(e.A.Log(), 1500))
	}
	id := sessionIDRE.FindStringSubmatch(s.Output.String())[1]
	b := e.dial(t, "bob", "bob")
	js, err := b.Session(testenv.SessionOpts{PTY: true, Exec: "join " + id + " --peer", Read: true})
	if err != nil {
		t.Fatalf("bob: join %s: %v", id, err)
	}
	if !testenv.WaitFor(10*time.Second, func() bool { return xenaLogins() > 0 }) {
		t.Errorf("bob joined xena's session %s as peer: her login must reach db1\nbob: %q\nxena: %q\ngateway:\n%s",
			id, js.Output.String(), s.Output.String(), e.GW.Tail())
	}
}
