package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/creack/pty"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end tests of four-eyes sessions (issue 3, M6
// and M7): an interactive session on a production host waits until a
// qualified second person joins, the target sees no login before that,
// input pauses when the second person goes, and either participant can end
// it. Real OpenSSH clients run on PTYs, as a person's terminal would.
// Each test builds its own gateway and target, because the fixture's
// configuration has no production hosts and no join grants.

// fourEyesConfig is the configuration of a four-eyes test without its
// persons: three hosts on the same sshd at sshdAddr, spelt differently per
// environment — db1 (production), stg1 (staging with real data) and tst1
// (test) — and four roles:
//
//   - admin: root on every host of the tenant, may join as peer or observer
//   - watcher: may only observe sessions, no login of its own
//   - ops: root on every host, but may not join sessions
//   - contractor: external, root and join as peer
func fourEyesConfig(dir string, gwPort int, sshdAddr, hostKey string, o feOpts) *config.Config {
	c := gwConfig(dir, gwPort)
	// Tests refuse on purpose; they must not block their own source.
	c.Gateway.Limits = config.Limits{FailuresPerSource: 100, FailuresPerPerson: 100}
	c.Gateway.KeepAlive = config.Duration{Duration: o.KeepAlive}
	c.Policy = config.Policy{Grace: config.Duration{Duration: o.Grace}, WaitTimeout: config.Duration{Duration: o.WaitTimeout}}
	contractor := role("contractor", "an external expert", config.Rule{Hosts: nord, Logins: root, Join: []string{config.JoinPeer}})
	contractor.External = true
	c.Roles = []config.Role{
		role("admin", "root on every host of the school; may join as peer or observer",
			config.Rule{Hosts: nord, Logins: root, Join: []string{config.JoinPeer, config.JoinObserver}}),
		role("watcher", "may watch sessions, nothing else", config.Rule{Hosts: nord, Join: []string{config.JoinObserver}}),
		role("ops", "root on every host of the school, no joining", config.Rule{Hosts: nord, Logins: root}),
		contractor,
	}
	stg1 := host("stg1", config.Staging, testenv.LoopbackAlias(sshdAddr, 1), hostKey)
	stg1.RealData = true
	c.Hosts = []config.Host{
		host("db1", config.Production, sshdAddr, hostKey),
		stg1,
		host("tst1", config.Test, testenv.LoopbackAlias(sshdAddr, 2), hostKey),
	}
	return c
}

// feRoles are the persons of every four-eyes test and their roles.
var feRoles = []struct {
	id       string
	role     string
	external bool
}{
	{"alice", "admin", false},
	{"bob", "admin", false},
	{"erin", "admin", false},
	{"carol", "watcher", false},
	{"dave", "ops", false},
	{"xena", "contractor", true},
}

// feEnv is the setup of one four-eyes test.
type feEnv struct {
	Dir, Bin, Config string
	Target           *testenv.Target
	GW               *testenv.Gateway
	clients          map[string]*testenv.Client
}

// feOpts are the timing settings of a four-eyes test's gateway.
type feOpts struct {
	Grace, WaitTimeout time.Duration // policy.grace, policy.wait_timeout
	KeepAlive          time.Duration // gateway.keepalive; 0 for the default
}

// feDefaults are long enough that no timer fires during a test.
var feDefaults = feOpts{Grace: time.Minute, WaitTimeout: 2 * time.Minute}

// newFourEyesEnv builds keys for every person of feRoles, the
// configuration with the given timings, the target sshd, the gateway and
// one OpenSSH client per person.
func newFourEyesEnv(t *testing.T, o feOpts) *feEnv {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	e := &feEnv{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml"), clients: map[string]*testenv.Client{}}
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	cfg := fourEyesConfig(dir, gwPort, fmt.Sprintf("127.0.0.1:%d", sshdPort), hostPub, o)
	priv := map[string]string{}
	for _, r := range feRoles {
		var pub string
		priv[r.id], pub = testenv.KeyPair(t, keysDir, r.id, "ecdsa")
		cfg.Persons = append(cfg.Persons, member(r.id, pub, r.role, r.external))
	}
	writeConfig(t, e.Config, cfg)
	userCA := caPublic(t, bin, e.Config, "user")
	// testenv.StartSSHD gives the target's shells an empty home, so no rc
	// file of the machine's root account delays a prompt.
	e.Target = testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
	e.GW = testenv.StartGateway(t, bin, e.Config, gwPort)
	e.clients = personClients(t, dir, e.GW, gwPort, priv, map[string]string{"db1": "root", "stg1": "root", "tst1": "root"})
	return e
}

// dest returns the ssh arguments that reach root@host in user-name mode.
func (e *feEnv) dest(host string) []string {
	return []string{"-p", strconv.Itoa(e.GW.Port), "root%" + host + "@127.0.0.1"}
}

// fail stops the test with the screens of the given terminals, the
// gateway's output and the target's log.
func (e *feEnv) fail(t *testing.T, terms []*feTerm, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), e.debug(terms))
}

// errorf is fail without stopping the test.
func (e *feEnv) errorf(t *testing.T, terms []*feTerm, format string, args ...any) {
	t.Helper()
	t.Errorf("%s\n%s", fmt.Sprintf(format, args...), e.debug(terms))
}

func (e *feEnv) debug(terms []*feTerm) string {
	var b strings.Builder
	for _, tm := range terms {
		fmt.Fprintf(&b, "--- %s's terminal (tail):\n%s\n", tm.name, tm.screen.tail(3000))
	}
	fmt.Fprintf(&b, "--- gateway output (tail):\n%s\n--- target log (tail):\n%s", e.GW.Tail(), clipTail(e.Target.Log(), 3000))
	return b.String()
}

func clipTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// feScreen collects what a terminal showed. Unlike testenv.SyncBuffer it
// answers Contains without copying, because the stalled-participant test
// pours megabytes through it while polling.
type feScreen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *feScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *feScreen) contains(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Contains(s.buf.Bytes(), []byte(text))
}

func (s *feScreen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *feScreen) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buf.Bytes()
	if len(b) <= n {
		return string(b)
	}
	return "…" + string(b[len(b)-n:])
}

// feTerm is one person's ssh client running on a PTY.
type feTerm struct {
	name   string
	cmd    *exec.Cmd
	tty    *os.File
	screen feScreen
	done   chan struct{}
	err    error     // valid after done is closed
	exitAt time.Time // valid after done is closed
}

// open starts `ssh -tt ARGS…` for person on a new 40x120 PTY. The test's
// cleanup continues (if stopped) and kills the client, and closes the PTY.
func (e *feEnv) open(t *testing.T, person string, args ...string) *feTerm {
	t.Helper()
	cmd := clientOf(t, e.clients, person).Command(t, "ssh", append([]string{"-tt"}, args...)...)
	// pty makes the child a session leader, and so the leader of its own
	// process group; Setpgid on top of that would fail.
	cmd.SysProcAttr = nil
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("start ssh for %s on a pty: %v", person, err)
	}
	tm := &feTerm{name: person, cmd: cmd, tty: f, done: make(chan struct{})}
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		_, _ = io.Copy(&tm.screen, f) // ends once the child is gone and f is closed
	}()
	go func() {
		tm.err = cmd.Wait()
		tm.exitAt = time.Now()
		close(tm.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		_ = testenv.KillGroup(cmd)
		select {
		case <-tm.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s's ssh did not end after SIGKILL", person)
		}
		_ = f.Close()
		copied.Wait()
	})
	return tm
}

// send types text into the terminal.
func (tm *feTerm) send(t *testing.T, text string) {
	t.Helper()
	if _, err := io.WriteString(tm.tty, text); err != nil {
		t.Fatalf("type into %s's terminal: %v", tm.name, err)
	}
}

// waitFor waits (bounded) until the terminal showed text. After
// waitExit too: the client's last output may still be in the PTY when
// its process has ended, on its way to the screen.
func (tm *feTerm) waitFor(text string, timeout time.Duration) bool {
	return testenv.WaitFor(timeout, func() bool { return tm.screen.contains(text) })
}

// waitExit waits up to timeout for the client to end.
func (tm *feTerm) waitExit(timeout time.Duration) bool { return testenv.WaitClosed(tm.done, timeout) }

// code is the client's exit code; call it after waitExit returned true.
func (tm *feTerm) code() int {
	if tm.err == nil {
		return 0
	}
	if ee, ok := tm.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// signal sends sig to the client's process group.
func (tm *feTerm) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-tm.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signal %v to %s's ssh: %v", sig, tm.name, err)
	}
}

// sessionIDRE finds the session id in the waiting-room notice.
var sessionIDRE = regexp.MustCompile(`waiting up to \S+ for a second person to join session ([0-9a-f]{10})`)

// waitingSession opens an interactive session for owner on host in
// user-name mode, waits for the waiting-room notice and returns the
// terminal and the session id.
func (e *feEnv) waitingSession(t *testing.T, owner, host string) (*feTerm, string) {
	t.Helper()
	return e.waitingAt(t, owner, host, e.dest(host)...)
}

// waitingAt is waitingSession with the ssh destination arguments given.
func (e *feEnv) waitingAt(t *testing.T, owner, host string, dest ...string) (*feTerm, string) {
	t.Helper()
	tm := e.open(t, owner, dest...)
	if !tm.waitFor("a four-eyes host: waiting up to", 20*time.Second) {
		e.fail(t, []*feTerm{tm}, "%s on %s: no waiting-room notice", owner, host)
	}
	m := sessionIDRE.FindStringSubmatch(tm.screen.String())
	if m == nil {
		e.fail(t, []*feTerm{tm}, "%s on %s: no session id in the waiting-room notice", owner, host)
	}
	return tm, m[1]
}

// join starts `ssh -tt gw join ID [extra…]` for person and waits for the
// joiner's welcome notice.
func (e *feEnv) join(t *testing.T, person, id string, extra ...string) *feTerm {
	t.Helper()
	tm := e.open(t, person, append([]string{"gw", "join", id}, extra...)...)
	if !tm.waitFor("joined session "+id, 20*time.Second) {
		e.fail(t, []*feTerm{tm}, "%s: no welcome notice after joining %s", person, id)
	}
	return tm
}

// live waits until every terminal showed that the session is live.
func (e *feEnv) live(t *testing.T, terms ...*feTerm) {
	t.Helper()
	for _, tm := range terms {
		if !tm.waitFor("the session is live", 20*time.Second) {
			e.fail(t, terms, "%s: the session did not go live", tm.name)
		}
	}
}

// run types `echo TAG-$((A+B))` into from and waits until every terminal in
// sees shows TAG-(A+B). The arithmetic keeps the terminal's echo of the
// typed command from being taken for its output.
func (e *feEnv) run(t *testing.T, from *feTerm, tag string, a, b int, sees ...*feTerm) string {
	t.Helper()
	want := fmt.Sprintf("%s-%d", tag, a+b)
	from.send(t, fmt.Sprintf("echo %s-$((%d+%d))\r", tag, a, b))
	for _, tm := range sees {
		if !tm.waitFor(want, 20*time.Second) {
			e.fail(t, sees, "%s typed a command printing %s; %s's terminal does not show it", from.name, want, tm.name)
		}
	}
	return want
}

// waitLogins waits until the target saw n certificate logins.
func (e *feEnv) waitLogins(n int) bool {
	return testenv.WaitFor(20*time.Second, func() bool { return len(e.Target.AcceptedCertLogins()) >= n })
}

// refused checks that a client run failed, printed every want and did not
// reach the target.
func (e *feEnv) refused(t *testing.T, name string, run func() testenv.Result, want ...string) {
	t.Helper()
	before := e.Target.AcceptedLogins()
	r := run()
	all := r.Stdout + r.Stderr
	if r.Code == 0 {
		t.Errorf("%s: want a non-zero exit\n%s\ngateway:\n%s", name, r, e.GW.Tail())
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("%s: output lacks %q\n%s\ngateway:\n%s", name, w, r, e.GW.Tail())
		}
	}
	if after := e.Target.AcceptedLogins(); after != before {
		t.Errorf("%s: the target saw %d login(s)", name, after-before)
	}
	t.Logf("%s: exit %d, %q", name, r.Code, strings.TrimSpace(firstLine(all, "tandem: ")))
}

// firstLine returns the first line of s containing substr, or "".
func firstLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return strings.TrimRight(l, "\r")
		}
	}
	return ""
}

// TestFourEyesWaiting: alice's session on db1 waits and the target sees no
// login; `ssh gw sessions` lists it; bob joins as peer and the target sees
// exactly one login, alice's; both type, and both see everything.
func TestFourEyesWaiting(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	for _, w := range []string{
		"db1 is a four-eyes host: waiting up to 2m0s for a second person to join session " + id + " (Ctrl-] q aborts)",
		"tandem: ", "ask a colleague to run:",
		fmt.Sprintf("ssh -t -p %d 127.0.0.1 join %s", e.GW.Port, id),
	} {
		if !alice.waitFor(w, 5*time.Second) {
			e.errorf(t, []*feTerm{alice}, "alice's waiting terminal lacks %q", w)
		}
	}

	// `ssh gw sessions` as bob: a round trip through the gateway, which
	// also gives a wrongly early target connection time to show.
	r := e.clients["bob"].SSH(t, "gw", "sessions")
	if r.Code != 0 {
		t.Fatalf("bob: ssh gw sessions: %s\ngateway:\n%s", r, e.GW.Tail())
	}
	row := firstLine(r.Stdout, id)
	if f := strings.Fields(row); len(f) < 4 || f[1] != "db1" || f[2] != "alice" || f[3] != "waiting" {
		t.Errorf("bob: ssh gw sessions: want a row %q with db1 alice waiting, got:\n%s", id, r.Stdout)
	}
	if r := e.clients["dave"].SSH(t, "gw", "sessions"); r.Code != 0 || strings.Contains(r.Stdout, id) {
		t.Errorf("dave may not join: ssh gw sessions must not list %s:\n%s", id, r)
	}
	if n := e.Target.AcceptedLogins(); n != 0 {
		e.fail(t, []*feTerm{alice}, "the target saw %d login(s) while the session waited for a second person", n)
	}

	start := time.Now()
	bob := e.join(t, "bob", id)
	if !alice.waitFor("[tandem] bob joined as peer; the session is live", 10*time.Second) {
		e.fail(t, []*feTerm{alice, bob}, "alice: no notice that bob joined and the session is live")
	}
	e.live(t, bob)
	if !e.waitLogins(1) {
		e.fail(t, []*feTerm{alice, bob}, "the target saw no login after bob joined")
	}
	t.Logf("join to target login: %v", time.Since(start))
	logins := e.Target.AcceptedCertLogins()
	if len(logins) != 1 || logins[0].User != "root" || !strings.Contains(logins[0].ID, "person=alice") ||
		!strings.Contains(logins[0].ID, "session="+id) {
		t.Errorf("want exactly one certificate login as root with person=alice session=%s in its key id, got %+v", id, logins)
	}

	a := e.run(t, alice, "A", 40, 2, alice, bob)
	b := e.run(t, bob, "B", 40, 8, alice, bob)
	t.Logf("alice's %s and bob's %s reached the shell; both terminals show both", a, b)

	r = e.clients["bob"].SSH(t, "gw", "sessions")
	if f := strings.Fields(firstLine(r.Stdout, id)); len(f) < 4 || f[3] != "live" || !strings.Contains(r.Stdout, "bob(peer)") {
		t.Errorf("bob: ssh gw sessions: want %s live with bob(peer), got:\n%s", id, r)
	}
	if n := len(e.Target.AcceptedCertLogins()); n != 1 {
		t.Errorf("the target saw %d certificate logins for one shared session, want 1", n)
	}
}

// TestFourEyesJumpMode: the waiting room and the join work the same when
// the owner comes in jump mode (ssh -J), where the gateway terminates the
// inner SSH connection itself.
func TestFourEyesJumpMode(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingAt(t, "alice", "db1", "db1")
	if n := e.Target.AcceptedLogins(); n != 0 {
		e.fail(t, []*feTerm{alice}, "jump mode: the target saw %d login(s) while the session waited", n)
	}
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, alice, "A", 40, 2, alice, bob)
	e.run(t, bob, "B", 40, 8, alice, bob)
	if logins := e.Target.AcceptedCertLogins(); len(logins) != 1 || !strings.Contains(logins[0].ID, "person=alice") {
		t.Errorf("jump mode: want exactly one certificate login for alice, got %+v", logins)
	}
}

// TestFourEyesStagingRealData: a staging host with real data waits like a
// production one; a test host goes live at once.
func TestFourEyesStagingRealData(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	stg, _ := e.waitingSession(t, "alice", "stg1")
	if !stg.waitFor("stg1 is a four-eyes host", 5*time.Second) {
		e.errorf(t, []*feTerm{stg}, "stg1 (staging, real_data): want the four-eyes waiting room")
	}
	if n := e.Target.AcceptedLogins(); n != 0 {
		t.Errorf("the target saw %d login(s) for a waiting staging session", n)
	}
	tst := e.open(t, "alice", e.dest("tst1")...)
	want := fmt.Sprintf("T-%d", 5+6)
	tst.send(t, "echo T-$((5+6))\r")
	if !tst.waitFor(want, 20*time.Second) {
		e.fail(t, []*feTerm{tst}, "tst1 (test): want a shell at once, without a second person")
	}
	if tst.screen.contains("four-eyes") {
		e.errorf(t, []*feTerm{tst}, "tst1 (test) is not a four-eyes host, yet the terminal mentions four-eyes")
	}
}

// TestFourEyesObserver: carol, who may only observe, joins with --observer;
// she sees alice's output and her own keystrokes never reach the shell.
func TestFourEyesObserver(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	carol := e.join(t, "carol", id, "--observer")
	all := []*feTerm{alice, bob, carol}
	if !alice.waitFor("carol joined as observer", 10*time.Second) {
		e.errorf(t, all, "alice: no notice that carol joined as observer")
	}

	carol.send(t, "echo C-$((1+1))\r")
	if !carol.waitFor("you are observing; your input is not sent", 10*time.Second) {
		e.errorf(t, all, "carol typed as an observer: want a notice that her input is not sent")
	}
	// alice's command runs after carol's keystrokes were handled (the
	// notice above); had they reached the shell, C-2 would come first.
	e.run(t, alice, "A", 40, 2, alice, bob, carol)
	for _, tm := range all {
		if tm.screen.contains("C-2") {
			e.errorf(t, all, "carol is an observer, but her command ran: %s's terminal shows C-2", tm.name)
		}
	}

	// A lone observer is no second person: with bob gone, input pauses.
	bob.signal(t, syscall.SIGKILL)
	if !alice.waitFor("input paused until a second person joins", 10*time.Second) {
		e.fail(t, all, "bob left and only an observer remains: alice's input must pause")
	}
}

// TestFourEyesRefusals: joins that must be refused, and non-interactive
// access to a four-eyes host, each with its reason and a non-zero exit.
func TestFourEyesRefusals(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	c := func(p string) *testenv.Client { return e.clients[p] }
	joinRun := func(p string, args ...string) func() testenv.Result {
		return func() testenv.Result { return c(p).SSH(t, append([]string{"-tt", "gw", "join"}, args...)...) }
	}
	for _, tc := range []struct {
		name string
		run  func() testenv.Result
		want []string
	}{
		{"alice joins her own session", joinRun("alice", id), []string{"you cannot be the second person in your own session"}},
		{"dave has no join grant", joinRun("dave", id), []string{"may not join sessions on db1"}},
		{"carol asks for peer", joinRun("carol", id, "--peer"), []string{"may join sessions on db1 only as observer"}},
		{"nonexistent session", joinRun("bob", "0123456789"), []string{"no session 0123456789"}},
		{"join without a terminal", func() testenv.Result { return c("bob").SSH(t, "gw", "join", id) }, []string{"joining needs a terminal"}},
		{"xena (external) joins alone", joinRun("xena", id), []string{"external participants may join only under supervision"}},
		{"exec on db1, user-name mode", func() testenv.Result { return c("alice").SSH(t, sshArgs(e.dest("db1"), "true")...) }, []string{"approved access request"}},
		{"exec on db1, jump mode", func() testenv.Result { return c("alice").SSH(t, "db1", "true") }, []string{"approved access request"}},
		{"exec on stg1", func() testenv.Result { return c("alice").SSH(t, sshArgs(e.dest("stg1"), "true")...) }, []string{"approved access request"}},
		{"xena owns a session on db1", func() testenv.Result {
			return c("xena").SSH(t, sshArgs(append([]string{"-tt"}, e.dest("db1")...), "true")...)
		},
			[]string{"an external expert may not own a session there"}},
	} {
		e.refused(t, tc.name, tc.run, tc.want...)
	}
	// None of the refusals touched alice's waiting session.
	if alice.screen.contains("joined as") {
		e.errorf(t, []*feTerm{alice}, "a refused join showed up in alice's session")
	}
	if n := e.Target.AcceptedLogins(); n != 0 {
		t.Errorf("the target saw %d login(s) during the refusals", n)
	}

	// Without a mode, a join takes the strongest mode granted: observer
	// for carol. The welcome line says so, and she is no second person.
	carol := e.join(t, "carol", id)
	if !carol.waitFor("joined session "+id+" on db1 as observer", 5*time.Second) {
		e.errorf(t, []*feTerm{alice, carol}, "carol joined without a mode: want observer")
	}
	if !alice.waitFor("[tandem] carol joined as observer", 10*time.Second) {
		e.errorf(t, []*feTerm{alice, carol}, "alice: want a notice that carol joined as observer")
	}
	if alice.screen.contains("the session is live") || e.Target.AcceptedLogins() != 0 {
		e.errorf(t, []*feTerm{alice, carol}, "an observer must not make the session live")
	}
}

// TestFourEyesExternal: an external expert joins only while a qualified
// second person is present and never counts as one (M7).
func TestFourEyesExternal(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	xena := e.join(t, "xena", id)
	all := []*feTerm{alice, bob, xena}
	if !alice.waitFor("xena joined as peer (external)", 10*time.Second) {
		e.errorf(t, all, "alice: want a notice that xena joined as an external peer")
	}
	e.run(t, xena, "X", 30, 3, alice, xena)

	bob.signal(t, syscall.SIGKILL)
	if !alice.waitFor("input paused until a second person joins", 10*time.Second) {
		e.fail(t, all, "bob left, only the external xena remains: input must pause")
	}
	// Input from the owner and the external is held now.
	xena.send(t, "echo Y-$((40+4))\r")
	alice.send(t, "echo Z-$((50+5))\r")
	if !alice.waitFor("input is discarded until a second person is present", 10*time.Second) {
		e.errorf(t, all, "alice typed while paused: want the notice that input is discarded")
	}
	erin := e.join(t, "erin", id)
	all = append(all, erin)
	if !alice.waitFor("erin joined as peer; input resumed", 10*time.Second) {
		e.fail(t, all, "erin joined: want input resumed")
	}
	e.run(t, alice, "R", 200, 22, alice, erin, xena)
	for _, tm := range all {
		for _, bad := range []string{"Y-44", "Z-55"} {
			if tm.screen.contains(bad) {
				e.errorf(t, all, "input typed while paused ran: %s's terminal shows %s", tm.name, bad)
			}
		}
	}
}

// TestFourEyesPauseResume: bob's client dies; alice's input pauses and is
// dropped; erin joins and input resumes.
func TestFourEyesPauseResume(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, alice, "A", 40, 2, alice, bob)

	start := time.Now()
	bob.signal(t, syscall.SIGKILL)
	if !alice.waitFor("[tandem] bob left", 10*time.Second) || !alice.waitFor("input paused until a second person joins (grace 1m0s)", 5*time.Second) {
		e.fail(t, []*feTerm{alice, bob}, "bob's ssh was killed: alice must see the pause notice")
	}
	t.Logf("kill -9 of bob's ssh to alice's pause notice: %v", time.Since(start))
	t.Logf("pause notice: %q", firstLine(alice.screen.String(), "bob left"))

	alice.send(t, "echo P-$((100+11))\r")
	if !alice.waitFor("input is discarded until a second person is present", 10*time.Second) {
		e.errorf(t, []*feTerm{alice}, "alice typed while paused: want the notice that input is discarded")
	}
	r := e.clients["alice"].SSH(t, "gw", "sessions")
	if f := strings.Fields(firstLine(r.Stdout, id)); len(f) < 4 || f[3] != "paused" {
		t.Errorf("alice: ssh gw sessions: want %s paused, got:\n%s", id, r)
	}

	erin := e.join(t, "erin", id)
	all := []*feTerm{alice, erin}
	if !alice.waitFor("[tandem] erin joined as peer; input resumed", 10*time.Second) {
		e.fail(t, all, "erin joined: alice must see that input resumed")
	}
	e.live(t, erin)
	// R runs after P was typed; had P been passed on, it would show first.
	e.run(t, alice, "R", 200, 22, alice, erin)
	e.run(t, erin, "E", 300, 33, alice, erin)
	for _, tm := range all {
		if tm.screen.contains("P-111") {
			e.errorf(t, all, "alice's input while paused ran: %s's terminal shows P-111", tm.name)
		}
	}
	if n := len(e.Target.AcceptedCertLogins()); n != 1 {
		t.Errorf("pause and resume must keep the one target connection; the target saw %d logins", n)
	}
}

// TestFourEyesGrace: with grace 3s, the session ends for alice when nobody
// rejoins after bob's client died.
func TestFourEyesGrace(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feOpts{Grace: 3 * time.Second, WaitTimeout: time.Minute})
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, bob, "B", 40, 8, alice, bob)

	start := time.Now()
	bob.signal(t, syscall.SIGKILL)
	if !alice.waitFor("input paused until a second person joins (grace 3s)", 10*time.Second) {
		e.fail(t, []*feTerm{alice}, "bob's ssh was killed: alice must see the pause notice")
	}
	if !alice.waitExit(20 * time.Second) {
		e.fail(t, []*feTerm{alice}, "alice's ssh did not end within 20s of bob's kill with grace 3s")
	}
	t.Logf("kill -9 of bob's ssh to the end of alice's ssh: %v (grace 3s), exit code %d", alice.exitAt.Sub(start), alice.code())
	if !alice.waitFor("no second person rejoined within 3s; session closed", 5*time.Second) {
		e.errorf(t, []*feTerm{alice}, "alice's terminal lacks the grace message")
	}
	if alice.code() == 0 {
		e.errorf(t, []*feTerm{alice}, "the session was closed by the gateway: want a non-zero exit")
	}
	if r := e.clients["bob"].SSH(t, "-tt", "gw", "join", id); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "no session "+id) {
		t.Errorf("joining the ended session %s: want a refusal naming it\n%s", id, r)
	}
}

// TestFourEyesWaitTimeout: with wait_timeout 5s, a session nobody joins
// closes, and the target never sees a login.
func TestFourEyesWaitTimeout(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feOpts{Grace: 3 * time.Second, WaitTimeout: 5 * time.Second})
	alice, _ := e.waitingSession(t, "alice", "db1")
	start := time.Now()
	if !alice.waitExit(30 * time.Second) {
		e.fail(t, []*feTerm{alice}, "alice's waiting ssh did not end within 30s with wait_timeout 5s")
	}
	t.Logf("waiting-room notice to the end of alice's ssh: %v (wait_timeout 5s), exit code %d", alice.exitAt.Sub(start), alice.code())
	if !alice.waitFor("nobody joined within 5s; session closed", 5*time.Second) {
		e.errorf(t, []*feTerm{alice}, "alice's terminal lacks the waiting-room timeout message")
	}
	if alice.code() == 0 {
		e.errorf(t, []*feTerm{alice}, "the session was closed by the gateway: want a non-zero exit")
	}
	if n := e.Target.AcceptedLogins(); n != 0 {
		t.Errorf("the target saw %d login(s) for a session nobody joined", n)
	}
}

// TestFourEyesEscape: Ctrl-] q from the joiner ends the session for both.
func TestFourEyesEscape(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	for _, by := range []string{"bob", "alice"} {
		t.Run("by "+by, func(t *testing.T) {
			alice, id := e.waitingSession(t, "alice", "db1")
			bob := e.join(t, "bob", id)
			e.live(t, alice, bob)
			e.run(t, alice, "A", 40, 2, alice, bob)
			who := map[string]*feTerm{"alice": alice, "bob": bob}[by]
			start := time.Now()
			who.send(t, "\x1dq")
			for _, tm := range []*feTerm{alice, bob} {
				if !tm.waitExit(10 * time.Second) {
					e.fail(t, []*feTerm{alice, bob}, "%s typed Ctrl-] q: %s's ssh did not end within 10s", by, tm.name)
				}
				t.Logf("Ctrl-] q by %s to the end of %s's ssh: %v, exit code %d", by, tm.name, tm.exitAt.Sub(start), tm.code())
			}
			if !alice.waitFor("session ended by "+by, 5*time.Second) {
				e.errorf(t, []*feTerm{alice, bob}, "alice's terminal lacks %q", "session ended by "+by)
			}
		})
	}
}

// TestFourEyesStalledParticipant: bob's client stops reading (SIGSTOP); the
// owner's big output still arrives promptly, and bob is dropped.
func TestFourEyesStalledParticipant(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, alice, "A", 40, 2, alice, bob)

	bob.signal(t, syscall.SIGSTOP)
	start := time.Now()
	alice.send(t, "head -c 3000000 /dev/zero | base64; echo END-$((2*21))\r")
	if !alice.waitFor("END-42", 20*time.Second) {
		e.fail(t, []*feTerm{alice}, "with bob stalled, alice's 4 MB of output did not end within 20s")
	}
	t.Logf("SIGSTOP of bob's ssh, then 4 MB of output: alice saw the end marker after %v", time.Since(start))
	if !alice.waitFor("[tandem] bob left", 30*time.Second) {
		e.fail(t, []*feTerm{alice}, "the stalled bob was never dropped")
	}
	t.Logf("bob dropped after %v: %q", time.Since(start), firstLine(alice.screen.String(), "[tandem] bob left"))
	if !alice.waitFor("input paused until a second person joins", 5*time.Second) {
		e.errorf(t, []*feTerm{alice}, "bob was dropped: input must pause")
	}
}

// TestFourEyesSilentLoss: bob's client stops answering (SIGSTOP) while
// nothing is printed, as after a silent network loss; the gateway's
// keep-alives (here every 1s, three misses) drop him and input pauses.
func TestFourEyesSilentLoss(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feOpts{Grace: time.Minute, WaitTimeout: 2 * time.Minute, KeepAlive: time.Second})
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, alice, "A", 40, 2, alice, bob)

	start := time.Now()
	bob.signal(t, syscall.SIGSTOP)
	if !alice.waitFor("[tandem] bob left", 20*time.Second) {
		e.fail(t, []*feTerm{alice}, "bob's client stopped answering: the gateway did not drop him within 20s (keepalive 1s)")
	}
	t.Logf("SIGSTOP of bob's idle ssh to alice's notice: %v (keepalive 1s): %q", time.Since(start),
		firstLine(alice.screen.String(), "[tandem] bob left"))
	if !alice.waitFor("input paused until a second person joins", 5*time.Second) {
		e.errorf(t, []*feTerm{alice}, "bob was dropped: input must pause")
	}
	// The owner is unaffected: a new peer resumes the session.
	erin := e.join(t, "erin", id)
	if !alice.waitFor("erin joined as peer; input resumed", 10*time.Second) {
		e.fail(t, []*feTerm{alice, erin}, "erin joined: want input resumed")
	}
	e.run(t, alice, "R", 200, 22, alice, erin)
}

// feAuditRecord is the part of an audit event this test reads.
type feAuditRecord struct {
	Type    string            `json:"type"`
	Person  string            `json:"person"`
	Session string            `json:"session"`
	Attrs   map[string]string `json:"attrs"`
}

// TestFourEyesAudit runs a session through waiting, live, a leave, a pause,
// a resume and its end, and checks that `tandem audit show --session ID`
// has all of it.
func TestFourEyesAudit(t *testing.T) {
	t.Parallel()
	e := newFourEyesEnv(t, feDefaults)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, bob, "B", 40, 8, alice, bob)
	bob.signal(t, syscall.SIGKILL)
	if !alice.waitFor("input paused", 10*time.Second) {
		e.fail(t, []*feTerm{alice}, "no pause after bob's kill")
	}
	erin := e.join(t, "erin", id)
	if !alice.waitFor("input resumed", 10*time.Second) {
		e.fail(t, []*feTerm{alice, erin}, "no resume after erin joined")
	}
	e.run(t, alice, "A", 40, 2, alice, erin)
	alice.send(t, "exit\r")
	for _, tm := range []*feTerm{alice, erin} {
		if !tm.waitExit(10 * time.Second) {
			e.fail(t, []*feTerm{alice, erin}, "alice's shell exited: %s's ssh did not end", tm.name)
		}
	}

	want := []string{"session.start", "session.waiting", "session.join", "session.live", "session.leave",
		"session.paused", "session.resumed", "session.ended", "session.end"}
	var recs []feAuditRecord
	var text string
	// The last events are written as the connection winds down.
	ok := testenv.WaitFor(10*time.Second, func() bool {
		out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "show", "--config", e.Config, "--session", id, "--json")
		if err != nil {
			t.Fatalf("tandem audit show --session %s --json: %v\n%s", id, err, errOut)
		}
		recs = nil
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var r feAuditRecord
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("audit show --json: %v\n%s", err, out)
			}
			recs = append(recs, r)
		}
		return len(missingTypes(recs, want)) == 0
	})
	if !ok {
		t.Errorf("audit show --session %s lacks %v; has:\n%s", id, missingTypes(recs, want), fmtRecords(recs))
	}
	var types []string
	for _, r := range recs {
		if r.Session != id {
			t.Errorf("audit show --session %s returned an event of session %q: %+v", id, r.Session, r)
		}
		types = append(types, r.Type)
	}
	t.Logf("audit events of session %s: %s", id, strings.Join(types, " "))
	joins := map[string]string{}
	for _, r := range recs {
		switch r.Type {
		case "session.join":
			joins[r.Attrs["participant"]] = r.Attrs["mode"]
		case "session.leave", "session.paused", "session.ended", "session.end":
			t.Logf("%s: %v", r.Type, r.Attrs)
		}
	}
	if joins["bob"] != "peer" || joins["erin"] != "peer" {
		t.Errorf("session.join events: want bob and erin as peer, got %v\n%s", joins, fmtRecords(recs))
	}

	out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "show", "--config", e.Config, "--session", id)
	if err != nil {
		t.Fatalf("tandem audit show --session %s: %v\n%s", id, err, errOut)
	}
	text = out
	for _, w := range []string{"session.waiting", "session.live", "session.join", "session.ended", "session.end"} {
		if !strings.Contains(text, w) {
			t.Errorf("tandem audit show --session %s (text) lacks %s:\n%s", id, w, text)
		}
	}
}

// missingTypes returns the types of want that no record has.
func missingTypes(recs []feAuditRecord, want []string) []string {
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Type] = true
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	return missing
}

func fmtRecords(recs []feAuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s person=%s %v\n", r.Type, r.Person, r.Attrs)
	}
	return b.String()
}
