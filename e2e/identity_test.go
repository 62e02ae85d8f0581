package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end tests of the identity lifecycle (issue 6):
// obligations and key age gate the login, weak keys are refused, locks and
// reloads throw a person out of live sessions, and repeated failures block
// a source address. Each test builds its own gateway and target, because
// the fixture's configuration fixes obligations, key dates and roles.

// identityConfig is the configuration of an identity test without its
// persons: one host (db1, the real sshd at sshdAddr) and three roles:
// admin (root on db1), locker (admin plus the lock permission) and
// contractor (root on db1, external).
func identityConfig(dir string, gwPort int, sshdAddr, hostKey string, failuresPerSource int) *config.Config {
	c := gwConfig(dir, gwPort)
	c.Gateway.Limits = config.Limits{Window: config.Duration{Duration: 10 * time.Minute}, FailuresPerSource: failuresPerSource,
		FailuresPerPerson: 100, Block: config.Duration{Duration: 15 * time.Minute}}
	locker := role("locker", "root, and may lock persons", config.Rule{Hosts: nord, Logins: root})
	locker.Permissions = []string{config.PermissionLock}
	contractor := role("contractor", "an external expert", config.Rule{Hosts: nord, Logins: root})
	contractor.External = true
	c.Roles = []config.Role{role("admin", "root on every host of the school", config.Rule{Hosts: nord, Logins: root}), locker, contractor}
	c.Hosts = []config.Host{host("db1", config.Test, sshdAddr, hostKey)}
	return c
}

// okPerson returns a person in role admin who meets every obligation, with
// one key added ten days ago. A test clears an obligation's date to leave
// it out of the configuration.
func okPerson(id, pub string) config.Person { return testenv.Person(id, pub, "admin") }

// idEnv is the setup of one identity test.
type idEnv struct {
	Dir    string
	Bin    string
	Config string
	Cfg    *config.Config // as last written
	Target *testenv.Target
	GW     *testenv.Gateway
	known  []string
}

// idSpec is what a test wants from newIDEnv: the keys to create, the
// persons (built from the created public keys) and the failure limit per
// source.
type idSpec struct {
	FailuresPerSource int
	// Persons are built from the generated public keys.
	Persons func(pub map[string]string) []config.Person
	// KeyNames are the keys to generate (name → kind, "" meaning ecdsa).
	KeyNames map[string]string
}

// newIDEnv builds keys, a configuration, the target sshd and the gateway.
func newIDEnv(t *testing.T, spec idSpec) (*idEnv, map[string]string) {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	e := &idEnv{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml")}
	priv := map[string]string{}
	pub := map[string]string{}
	for name, kind := range spec.KeyNames {
		if kind == "" {
			kind = "ecdsa"
		}
		priv[name], pub[name] = testenv.KeyPair(t, keysDir, name, kind)
	}
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	fps := spec.FailuresPerSource
	if fps == 0 {
		fps = 100 // tests that refuse on purpose must not block themselves
	}
	e.Cfg = identityConfig(dir, gwPort, fmt.Sprintf("127.0.0.1:%d", sshdPort), hostPub, fps)
	e.Cfg.Persons = spec.Persons(pub)
	writeConfig(t, e.Config, e.Cfg)
	userCA := caPublic(t, bin, e.Config, "user")
	e.Target = testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
	e.GW = testenv.StartGateway(t, bin, e.Config, gwPort)
	e.known = []string{certAuthorityLine(t, e.GW)}
	return e, priv
}

// client returns an OpenSSH client for person with the given private key.
// "gw" reaches the gateway, "db1" reaches db1 as root in jump mode.
func (e *idEnv) client(t *testing.T, person, key string) *testenv.Client {
	t.Helper()
	return testenv.NewClient(t, mkdir(t, e.Dir, "client-"+person+"-"+filepath.Base(key)), testenv.ClientOpts{
		Key: key, Person: person, GatewayPort: e.GW.Port, KnownHosts: e.known,
		JumpHosts: map[string]string{"db1": "root"},
	})
}

// db1 returns the ssh arguments that reach root@db1 in user-name mode.
func (e *idEnv) db1() []string {
	return []string{"-p", strconv.Itoa(e.GW.Port), "root%db1@127.0.0.1"}
}

func (e *idEnv) failf(t *testing.T, r testenv.Result, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n%s\ngateway output (tail):\n%s", fmt.Sprintf(format, args...), r, e.GW.Tail())
}

func (e *idEnv) errorf(t *testing.T, r testenv.Result, format string, args ...any) {
	t.Helper()
	t.Errorf("%s\n%s\ngateway output (tail):\n%s", fmt.Sprintf(format, args...), r, e.GW.Tail())
}

// tandem runs the tandem binary and fails the test when it fails.
func (e *idEnv) tandem(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := testenv.RunTandem(t, e.Bin, args...)
	if err != nil {
		t.Fatalf("tandem %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// auditRecord is the part of an audit event these tests read.
type auditRecord struct {
	Type   string            `json:"type"`
	Person string            `json:"person"`
	Source string            `json:"source"`
	Attrs  map[string]string `json:"attrs"`
}

// auditEvents returns the audit events of the given types.
func (e *idEnv) auditEvents(t *testing.T, types string) []auditRecord {
	t.Helper()
	out := e.tandem(t, "audit", "show", "--config", e.Config, "--type", types, "--json")
	var recs []auditRecord
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r auditRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("audit show --json: %v\n%s", err, out)
		}
		recs = append(recs, r)
	}
	return recs
}

// waitAudit waits (bounded) until an audit event satisfies match.
func (e *idEnv) waitAudit(t *testing.T, types string, match func(auditRecord) bool) bool {
	t.Helper()
	return testenv.WaitFor(5*time.Second, func() bool {
		for _, r := range e.auditEvents(t, types) {
			if match(r) {
				return true
			}
		}
		return false
	})
}

// liveSSH is a background ssh client process with a held-open stdin.
type liveSSH struct {
	name   string
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	stdout *testenv.SyncBuffer
	done   chan struct{}
	exitAt time.Time // valid after done is closed
	err    error     // valid after done is closed
}

// startLive starts `ssh ARGS…` for c. Its standard input is a pipe the
// test keeps open, so the session ends only when the gateway ends it. The
// cleanup kills its process group.
func startLive(t *testing.T, name string, c *testenv.Client, args ...string) *liveSSH {
	t.Helper()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	l := &liveSSH{name: name, cmd: c.Command(t, "ssh", args...), stderr: &testenv.SyncBuffer{}, stdout: &testenv.SyncBuffer{}, done: make(chan struct{})}
	l.cmd.Stdin = stdinR
	l.cmd.Stdout = l.stdout
	l.cmd.Stderr = l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("start ssh: %v", err)
	}
	_ = stdinR.Close() // the child holds its copy
	go func() {
		l.err = l.cmd.Wait()
		l.exitAt = time.Now()
		close(l.done)
	}()
	t.Cleanup(func() {
		_ = testenv.KillGroup(l.cmd)
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			t.Errorf("ssh %v did not end after SIGKILL", args)
		}
		_ = stdinW.Close()
	})
	return l
}

// sleepArgs returns the ssh arguments for a long-running command with a
// terminal at dest.
func sleepArgs(dest ...string) []string {
	return append(append([]string{"-tt"}, dest...), "sleep 60")
}

// output is what the client printed, stdout and stderr, for messages.
func (l *liveSSH) output() string {
	return "stdout: " + l.stdout.String() + "\nstderr: " + l.stderr.String()
}

// ended reports whether the process has ended, without waiting.
func (l *liveSSH) ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for the process to end and reports whether
// it did.
func (l *liveSSH) waitExit(timeout time.Duration) bool { return testenv.WaitClosed(l.done, timeout) }

// waitNewLogin waits until the target shows more certificate logins than
// before.
func (e *idEnv) waitNewLogin(before int) bool {
	return testenv.WaitFor(20*time.Second, func() bool { return len(e.Target.AcceptedCertLogins()) > before })
}

// TestIdentityObligations checks that a person whose obligations are not
// met is refused at authentication with the obligation named, and that the
// target sees no login.
func TestIdentityObligations(t *testing.T) {
	t.Parallel()
	keys := map[string]string{"alice": "", "erin": "", "fred": "", "gina": "", "xena": "", "yves": ""}
	e, priv := newIDEnv(t, idSpec{KeyNames: keys, Persons: func(pub map[string]string) []config.Person {
		alice := okPerson("alice", pub["alice"])
		erin := okPerson("erin", pub["erin"]) // training expired yesterday
		erin.Obligations.TrainingValidUntil = testenv.Day(-1)
		fred := okPerson("fred", pub["fred"]) // confidentiality signed tomorrow
		fred.Obligations.ConfidentialitySigned = testenv.Day(1)
		gina := okPerson("gina", pub["gina"]) // no training on record
		gina.Obligations.TrainingValidUntil = config.Date{}
		xena := okPerson("xena", pub["xena"]) // external without an NDA
		xena = testenv.External(xena)
		xena.Roles, xena.Obligations.NDASigned = []string{"contractor"}, config.Date{}
		yves := okPerson("yves", pub["yves"]) // external, everything on record
		yves = testenv.External(yves)
		yves.Roles = []string{"contractor"}
		return []config.Person{alice, erin, fred, gina, xena, yves}
	}})

	for _, tc := range []struct {
		person string
		ok     bool
		want   string
	}{
		{"alice", true, ""},
		// yves meets every obligation, so he logs in; as an external he
		// works only under supervision (M7): a command of his own is
		// refused, with no login on the target.
		{"yves", false, "external experts work only under supervision"},
		{"erin", false, "data-protection training expired on " + day(-1)},
		{"fred", false, "confidentiality commitment is dated " + day(1)},
		{"gina", false, "no data-protection training on record"},
		{"xena", false, "no signed NDA on record"},
	} {
		t.Run(tc.person, func(t *testing.T) {
			c := e.client(t, tc.person, priv[tc.person])
			if tc.person == "yves" {
				if r := c.SSH(t, "gw", "whoami"); r.Code != 0 {
					e.failf(t, r, "yves meets every obligation: want a login to the gateway")
				}
			}
			for _, dest := range [][]string{e.db1(), {"db1"}} {
				before := e.Target.AcceptedLogins()
				marker := "ok-" + nonce(t)
				r := c.SSH(t, sshArgs(dest, "echo "+marker)...)
				after := e.Target.AcceptedLogins()
				if tc.ok {
					if r.Code != 0 || strings.TrimSpace(r.Stdout) != marker {
						e.failf(t, r, "%s meets every obligation: want a login", tc.person)
					}
					continue
				}
				if r.Code == 0 {
					e.errorf(t, r, "%s: want a refusal", tc.person)
				}
				for _, want := range []string{"tandem: ", tc.want} {
					if !strings.Contains(r.Stderr, want) {
						e.errorf(t, r, "%s: stderr lacks %q", tc.person, want)
					}
				}
				if after != before {
					t.Errorf("%s: target accepted %d login(s) for a refused person:\n%s", tc.person, after-before, e.Target.Log())
				}
			}
		})
	}
}

// TestIdentityKeyAge checks the key age limit: a key one day before its
// expiry logs in with a warning naming the day, `ssh gw keys` lists it as
// expiring, and a key past its maximum age is refused.
func TestIdentityKeyAge(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"kim": "", "olga": ""}, Persons: func(pub map[string]string) []config.Person {
		kim := okPerson("kim", pub["kim"])
		kim.Keys[0].Added = testenv.Day(-179) // expires tomorrow: within the 14-day warning
		olga := okPerson("olga", pub["olga"])
		olga.Keys[0].Added = testenv.Day(-181) // expired yesterday
		return []config.Person{kim, olga}
	}})
	expiry := day(1)

	t.Run("warning", func(t *testing.T) {
		kim := e.client(t, "kim", priv["kim"])
		for _, dest := range [][]string{e.db1(), {"db1"}} {
			marker := "ok-" + nonce(t)
			r := kim.SSH(t, sshArgs(dest, "echo "+marker)...)
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != marker {
				e.failf(t, r, "a key one day before expiry must still log in")
			}
			if !strings.Contains(r.Stderr, "tandem: ") || !strings.Contains(r.Stderr, "expires on "+expiry) {
				e.errorf(t, r, "want a warning line starting with %q naming the expiry day %s", "tandem: ", expiry)
			}
		}
		r := kim.SSH(t, "gw", "keys")
		if r.Code != 0 {
			e.failf(t, r, "gw keys: want exit 0")
		}
		var line string
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.Contains(l, "SHA256:") {
				line = l
			}
		}
		for _, want := range []string{day(-179), expiry, "expires soon"} {
			if !strings.Contains(line, want) {
				e.errorf(t, r, "gw keys: key line %q lacks %q", line, want)
			}
		}
		if !strings.Contains(r.Stderr, "expires on "+expiry) {
			e.errorf(t, r, "gw keys: want the expiry warning on stderr too")
		}
	})

	t.Run("expired", func(t *testing.T) {
		olga := e.client(t, "olga", priv["olga"])
		for _, args := range [][]string{sshArgs(e.db1(), "true"), {"db1", "true"}, {"gw", "keys"}} {
			before := e.Target.AcceptedLogins()
			r := olga.SSH(t, args...)
			if r.Code == 0 {
				e.errorf(t, r, "a key past its maximum age must be refused")
			}
			if !strings.Contains(r.Stderr, "expired on "+day(-1)) {
				e.errorf(t, r, "stderr lacks %q", "expired on "+day(-1))
			}
			if after := e.Target.AcceptedLogins(); after != before {
				t.Errorf("target accepted %d login(s) for an expired key", after-before)
			}
		}
	})
}

// TestIdentityWeakRSA checks that a 2048-bit RSA key is refused at login
// with the reason, and that a configuration registering one fails `tandem
// config check` at the key's line.
func TestIdentityWeakRSA(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": "", "rsa": "rsa-2048"}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"])}
	}})
	b, err := os.ReadFile(priv["rsa"] + ".pub")
	if err != nil {
		t.Fatalf("read RSA public key: %v", err)
	}
	rsaPub := strings.TrimSpace(string(b))

	t.Run("login", func(t *testing.T) {
		c := e.client(t, "alice", priv["rsa"])
		for _, args := range [][]string{sshArgs(e.db1(), "true"), {"gw", "whoami"}} {
			before := e.Target.AcceptedLogins()
			r := c.SSH(t, args...)
			if r.Code == 0 {
				e.errorf(t, r, "a 2048-bit RSA key must be refused")
			}
			if !strings.Contains(r.Stderr, "RSA key with 2048 bits is too short") {
				e.errorf(t, r, "stderr lacks the reason %q", "RSA key with 2048 bits is too short")
			}
			if after := e.Target.AcceptedLogins(); after != before {
				t.Errorf("target accepted %d login(s) for a weak key", after-before)
			}
		}
	})

	t.Run("config check", func(t *testing.T) {
		cfg := *e.Cfg
		cfg.Persons = append(append([]config.Person{}, cfg.Persons...), okPerson("rob", rsaPub))
		text := configText(t, &cfg)
		line := 0
		for i, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "ssh-rsa ") {
				line = i + 1
			}
		}
		path := filepath.Join(e.Dir, "weak.yaml")
		writeTestFile(t, path, text)
		out, errOut, err := testenv.RunTandem(t, e.Bin, "config", "check", "--config", path)
		if err == nil {
			t.Fatalf("tandem config check accepted a 2048-bit RSA key:\n%s%s", out, errOut)
		}
		want := fmt.Sprintf("%s:%d:", path, line)
		all := out + errOut
		if !strings.Contains(all, want) || !strings.Contains(all, "RSA key with 2048 bits is too short") {
			t.Errorf("tandem config check: want %q and the reason in its output, got:\n%s", want, all)
		}
	})
}

// TestIdentityLockLiveSession locks a person with a live session on db1 and
// checks that the session ends at once with the reason, that new logins are
// refused until the unlock, and that both are audited.
func TestIdentityLockLiveSession(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": "", "bob": ""}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"]), okPerson("bob", pub["bob"])}
	}})
	alice := e.client(t, "alice", priv["alice"])
	bob := e.client(t, "bob", priv["bob"])
	const reason = "left the company"

	before := len(e.Target.AcceptedCertLogins())
	// alice holds a session in each routing mode and a connection
	// without any session; all three must end with the lock.
	lives := []*liveSSH{
		startLive(t, "username mode", alice, sleepArgs(e.db1()...)...),
		startLive(t, "jump mode", alice, sleepArgs("db1")...),
		// Without a terminal the session is a plain exec.
		startLive(t, "exec without terminal", alice, sshArgs(e.db1(), "sleep 60")...),
	}
	// bob's session must survive alice's lock.
	bobLive := startLive(t, "bob", bob, sleepArgs("db1")...)
	if !testenv.WaitFor(20*time.Second, func() bool { return len(e.Target.AcceptedCertLogins()) >= before+4 }) {
		t.Fatalf("the target saw %d of 4 logins for the live sessions\nsshd log:\n%s\ngateway:\n%s",
			len(e.Target.AcceptedCertLogins())-before, e.Target.Log(), e.GW.Tail())
	}
	// A connection without any session (-N): it counts as live once its
	// login is in the audit log.
	nBefore := len(e.auditEvents(t, "auth.success"))
	plain := startLive(t, "connection without session", alice, "-N", "gw")
	if !testenv.WaitFor(10*time.Second, func() bool { return len(e.auditEvents(t, "auth.success")) > nBefore }) || plain.ended() {
		t.Fatalf("ssh -N gw did not authenticate and stay: %s", plain.stderr.String())
	}
	lives = append(lives, plain)

	start := time.Now()
	out := e.tandem(t, "lock", "alice", "--reason", reason, "--config", e.Config)
	lockReturned := time.Since(start)
	if !strings.Contains(out, "alice") {
		t.Errorf("tandem lock: output %q does not name alice", out)
	}
	for _, l := range lives {
		if !l.waitExit(10 * time.Second) {
			t.Errorf("%s: alice's ssh did not end within 10s of the lock\nstderr: %s\ngateway:\n%s", l.name, l.stderr.String(), e.GW.Tail())
			continue
		}
		elapsed := l.exitAt.Sub(start)
		t.Logf("%s: lock to ssh exit %v (tandem lock itself took %v)", l.name, elapsed, lockReturned)
		if elapsed >= 3*time.Second {
			t.Errorf("%s: alice's ssh ended %v after the lock, want < 3s", l.name, elapsed)
		}
		if l.err == nil {
			t.Errorf("%s: alice's ssh exited 0 after the lock; want a non-zero exit", l.name)
		}
		if l == plain {
			continue // no session, so no channel to write a notice to
		}
		// With a terminal the notice may come on the terminal (stdout).
		if want := "alice was locked: " + reason; !strings.Contains(l.output(), want) {
			t.Errorf("%s: alice's ssh output lacks %q:\n%s", l.name, want, l.output())
		}
		for _, line := range strings.Split(l.output(), "\n") {
			if strings.Contains(line, "was locked") {
				t.Logf("%s: notice %q", l.name, strings.TrimSpace(line))
			}
		}
	}
	if bobLive.ended() {
		t.Errorf("bob's session ended with alice's lock: %s", bobLive.stderr.String())
	}

	t.Run("refused while locked", func(t *testing.T) {
		for _, args := range [][]string{sshArgs(e.db1(), "true"), {"db1", "true"}, {"gw", "whoami"}} {
			n := e.Target.AcceptedLogins()
			r := alice.SSH(t, args...)
			if r.Code == 0 {
				e.errorf(t, r, "a locked person must be refused")
			}
			if want := "your account is locked: " + reason; !strings.Contains(r.Stderr, want) {
				e.errorf(t, r, "stderr lacks %q", want)
			}
			if after := e.Target.AcceptedLogins(); after != n {
				t.Errorf("target accepted %d login(s) of a locked person", after-n)
			}
		}
		if out := e.tandem(t, "locks", "--config", e.Config); !strings.Contains(out, "alice") || !strings.Contains(out, reason) {
			t.Errorf("tandem locks: want alice and the reason, got:\n%s", out)
		}
	})

	t.Run("unlock", func(t *testing.T) {
		e.tandem(t, "unlock", "alice", "--config", e.Config)
		// The gateway notices within its poll interval; retry (bounded)
		// rather than sleep.
		var r testenv.Result
		ok := testenv.WaitFor(5*time.Second, func() bool {
			r = alice.SSH(t, sshArgs(e.db1(), "echo unlocked")...)
			return r.Code == 0
		})
		if !ok || strings.TrimSpace(r.Stdout) != "unlocked" {
			e.failf(t, r, "after tandem unlock alice must log in again")
		}
	})

	t.Run("audit", func(t *testing.T) {
		for _, typ := range []string{"lock", "unlock"} {
			if !e.waitAudit(t, "lock,unlock", func(r auditRecord) bool { return r.Type == typ && r.Person == "alice" }) {
				t.Errorf("no %s event for alice in the audit log: %+v", typ, e.auditEvents(t, "lock,unlock"))
			}
		}
		for _, r := range e.auditEvents(t, "lock") {
			if r.Person == "alice" && r.Attrs["reason"] != reason {
				t.Errorf("lock event %+v: want reason %q", r, reason)
			}
		}
		text := e.tandem(t, "audit", "show", "--config", e.Config, "--type", "lock")
		if !strings.Contains(text, "lock") || !strings.Contains(text, "alice") {
			t.Errorf("audit show --type lock: want alice's lock, got:\n%s", text)
		}
	})
}

// TestIdentityLockCommand checks `ssh gw lock`: refused without the lock
// permission, effective with it.
func TestIdentityLockCommand(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": "", "bob": "", "carol": ""}, Persons: func(pub map[string]string) []config.Person {
		carol := okPerson("carol", pub["carol"])
		carol.Roles = []string{"locker"}
		return []config.Person{okPerson("alice", pub["alice"]), okPerson("bob", pub["bob"]), carol}
	}})
	alice := e.client(t, "alice", priv["alice"])
	bob := e.client(t, "bob", priv["bob"])
	carol := e.client(t, "carol", priv["carol"])

	bobLogsIn := func() testenv.Result { return bob.SSH(t, sshArgs(e.db1(), "echo bob")...) }

	r := alice.SSH(t, "gw", "lock", "bob", "--reason", "x")
	if r.Code == 0 {
		e.errorf(t, r, "alice has no lock permission: want a refusal")
	}
	if !strings.Contains(r.Stderr, "may not lock") {
		e.errorf(t, r, "stderr lacks %q", "may not lock")
	}
	if r := bobLogsIn(); r.Code != 0 {
		e.failf(t, r, "bob must still log in after a refused lock")
	}

	// A reason of several words, unquoted: ssh joins the words with
	// blanks, and the gateway reads everything after --reason as the
	// reason.
	r = carol.SSH(t, "gw", "lock", "bob", "--reason", "left the company")
	if r.Code != 0 || !strings.Contains(r.Stdout, "bob is locked") {
		e.failf(t, r, "carol holds the lock permission: want bob locked")
	}
	// The gateway command applies the lock at once, no poll to wait for.
	if r := bobLogsIn(); r.Code == 0 || !strings.Contains(r.Stderr, "your account is locked: left the company") {
		e.errorf(t, r, "bob is locked: want a refusal naming the reason")
	}
	if r := alice.SSH(t, "gw", "unlock", "bob"); r.Code == 0 {
		e.errorf(t, r, "alice has no lock permission: unlock must be refused")
	}
	if r := carol.SSH(t, "gw", "unlock", "bob"); r.Code != 0 {
		e.failf(t, r, "carol: gw unlock bob")
	}
	if r := bobLogsIn(); r.Code != 0 {
		e.errorf(t, r, "bob is unlocked: want a login")
	}

	// A lock with --for lifts itself.
	// ssh joins the remote command with spaces; the gateway splits it
	// again with shell quoting.
	r = carol.SSH(t, "gw", "lock", "bob", "--reason", "'a short break'", "--for", "2s")
	if r.Code != 0 {
		e.failf(t, r, "carol: gw lock bob --for 2s")
	}
	if r := bobLogsIn(); r.Code == 0 || !strings.Contains(r.Stderr, "your account is locked: a short break") {
		e.errorf(t, r, "bob is locked for 2s: want a refusal naming the reason")
	}
	var after testenv.Result
	if !testenv.WaitFor(15*time.Second, func() bool { after = bobLogsIn(); return after.Code == 0 }) {
		e.errorf(t, after, "bob's 2s lock did not lift itself within 15s")
	}

	if !e.waitAudit(t, "lock", func(r auditRecord) bool { return r.Person == "bob" && r.Attrs["by"] == "carol" }) {
		t.Errorf("no lock event for bob by carol: %+v", e.auditEvents(t, "lock,unlock"))
	}
}

// TestIdentityReloadRemovesPerson removes a person with a live session from
// the configuration and reloads with SIGHUP: the session ends, and the
// person's key is unknown from then on.
func TestIdentityReloadRemovesPerson(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": "", "bob": ""}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"]), okPerson("bob", pub["bob"])}
	}})
	bob := e.client(t, "bob", priv["bob"])
	alice := e.client(t, "alice", priv["alice"])

	before := len(e.Target.AcceptedCertLogins())
	// Jump mode here; the lock test covers user-name mode.
	live := startLive(t, "bob", bob, sleepArgs("db1")...)
	if !e.waitNewLogin(before) {
		t.Fatalf("the target saw no login for bob's live session\nstderr: %s\nsshd log:\n%s", live.stderr.String(), e.Target.Log())
	}

	cfg := *e.Cfg
	cfg.Persons = cfg.Persons[:1]
	writeConfig(t, e.Config, &cfg)
	start := time.Now()
	e.GW.Signal(t, syscall.SIGHUP)
	if !live.waitExit(10 * time.Second) {
		t.Fatalf("bob's session did not end within 10s of the reload\nstderr: %s\ngateway:\n%s", live.stderr.String(), e.GW.Tail())
	}
	t.Logf("SIGHUP to ssh exit: %v", live.exitAt.Sub(start))
	if want := "bob was removed from the configuration"; !strings.Contains(live.output(), want) {
		t.Errorf("bob's ssh output lacks %q:\n%s", want, live.output())
	}

	r := bob.SSH(t, sshArgs(e.db1(), "true")...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "is not registered") {
		e.errorf(t, r, "bob was removed: want his key refused as not registered")
	}
	if r := alice.SSH(t, sshArgs(e.db1(), "echo still")...); r.Code != 0 {
		e.errorf(t, r, "alice stays in the configuration: want a login after the reload")
	}

	t.Run("bad file keeps the running configuration", func(t *testing.T) {
		// The file names bob again but is invalid as a whole: the reload
		// must be refused, so bob stays out and alice stays in.
		bad := configText(t, e.Cfg) + "unknown_section: 1\n"
		writeTestFile(t, e.Config, bad)
		e.GW.Signal(t, syscall.SIGHUP)
		if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(e.GW.Stderr.String(), "reload refused") }) {
			t.Fatalf("the gateway did not log a refused reload:\n%s", e.GW.Tail())
		}
		if r := bob.SSH(t, sshArgs(e.db1(), "true")...); r.Code == 0 || !strings.Contains(r.Stderr, "is not registered") {
			e.errorf(t, r, "a refused reload must not bring bob back")
		}
		if r := alice.SSH(t, sshArgs(e.db1(), "echo still")...); r.Code != 0 {
			e.errorf(t, r, "alice after a refused reload: want a login")
		}
		if e.GW.Exited() {
			t.Errorf("the gateway ended after a bad reload:\n%s", e.GW.Tail())
		}
	})
}

// TestIdentityBruteForce makes failed logins from 127.0.0.2 until the
// source is blocked, then checks that even a valid key is refused from
// there while 127.0.0.3 is unaffected, and that the block is audited.
func TestIdentityBruteForce(t *testing.T) {
	t.Parallel()
	const limit = 3
	e, priv := newIDEnv(t, idSpec{FailuresPerSource: limit, KeyNames: map[string]string{"alice": "", "mallory": ""}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"])}
	}})
	alice := e.client(t, "alice", priv["alice"])
	mallory := e.client(t, "mallory", priv["mallory"])
	from := func(src string, args ...string) []string {
		return append([]string{"-o", "BindAddress=" + src}, args...)
	}

	// Before: alice logs in from 127.0.0.2.
	if r := alice.SSH(t, from("127.0.0.2", "gw", "whoami")...); r.Code != 0 {
		e.failf(t, r, "alice from 127.0.0.2 before any failure: want a login")
	}

	blockedAt := 0
	var last testenv.Result
	for i := 1; i <= 10; i++ {
		last = mallory.SSH(t, from("127.0.0.2", "gw", "whoami")...)
		if last.Code == 0 {
			e.failf(t, last, "an unregistered key logged in")
		}
		if !strings.Contains(last.Stderr, "is not registered") {
			// No refusal banner: the connection was closed before
			// authentication.
			blockedAt = i
			break
		}
	}
	if blockedAt == 0 {
		e.failf(t, last, "10 failed logins from 127.0.0.2 with failures_per_source %d: the source was never blocked", limit)
	}
	t.Logf("first attempt refused before authentication: #%d (limit %d)", blockedAt, limit)
	if blockedAt <= limit {
		e.errorf(t, last, "attempt %d was refused before authentication, but only %d failures preceded it (limit %d)", blockedAt, blockedAt-1, limit)
	}
	if !strings.Contains(last.Stderr, "Connection closed") && !strings.Contains(last.Stderr, "kex_exchange_identification") &&
		!strings.Contains(last.Stderr, "Connection reset") {
		e.errorf(t, last, "blocked attempt: want the connection closed before the SSH handshake")
	}

	before := e.Target.AcceptedLogins()
	r := alice.SSH(t, from("127.0.0.2", sshArgs(e.db1(), "true")...)...)
	if r.Code == 0 {
		e.errorf(t, r, "alice's valid key from the blocked 127.0.0.2: want a refusal")
	}
	if after := e.Target.AcceptedLogins(); after != before {
		t.Errorf("target accepted a login from a blocked source")
	}
	marker := "ok-" + nonce(t)
	r = alice.SSH(t, from("127.0.0.3", sshArgs(e.db1(), "echo "+marker)...)...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != marker {
		e.errorf(t, r, "alice from 127.0.0.3: another source must be unaffected")
	}

	if !e.waitAudit(t, "auth.blocked", func(r auditRecord) bool { return strings.HasPrefix(r.Source, "127.0.0.2") }) {
		t.Errorf("no auth.blocked event for 127.0.0.2: %+v", e.auditEvents(t, "auth.blocked"))
	}
	if got := e.auditEvents(t, "auth.blocked"); len(got) != 1 {
		t.Errorf("want exactly one auth.blocked event, got %d: %+v", len(got), got)
	}

	// The operator sees the block and lifts it; the gateway applies it and
	// audits who did.
	if out := e.tandem(t, "blocks", "-c", e.Config); !strings.Contains(out, "127.0.0.2") || !strings.Contains(out, "failed logins") {
		t.Errorf("tandem blocks does not list 127.0.0.2:\n%s", out)
	}
	if out := e.tandem(t, "unblock", "127.0.0.2", "-c", e.Config); !strings.Contains(out, "unblocked") {
		t.Errorf("tandem unblock 127.0.0.2:\n%s", out)
	}
	var again testenv.Result
	if !testenv.WaitFor(5*time.Second, func() bool { again = alice.SSH(t, from("127.0.0.2", "gw", "whoami")...); return again.Code == 0 }) {
		e.errorf(t, again, "alice from 127.0.0.2 after tandem unblock: want a login")
	}
	if !e.waitAudit(t, "auth.unblocked", func(r auditRecord) bool { return r.Source == "127.0.0.2" && strings.HasPrefix(r.Attrs["by"], "local") }) {
		t.Errorf("no auth.unblocked event naming the operator: %+v", e.auditEvents(t, "auth.unblocked"))
	}
	if out := e.tandem(t, "blocks", "-c", e.Config); !strings.Contains(out, "no blocks") {
		t.Errorf("tandem blocks after the unblock:\n%s", out)
	}
}
