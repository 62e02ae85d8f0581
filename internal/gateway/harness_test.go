package gateway_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/demotarget"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// The harness runs the whole gateway in this process, in front of
// demotarget targets, and drives it with x/crypto clients over loopback:
// no OpenSSH, so its tests are fast and table-driven. It uses only the
// package's exported API, like `tandem serve` does (internal/cli), so the
// tests describe behaviour, not the package's inner shape. The e2e suite
// keeps the real OpenSSH clients and tools.

// wait bounds every wait of the harness: a handshake, a command, a
// line of output, an audit event. Waits take a signal where there is one
// (output arriving, a session's end, the store's acknowledgement of a
// lock); what cannot signal (the audit log on disk) is polled by
// eventually. A wait that runs out fails the test with what it saw.
const wait = 10 * time.Second

// hPerson is one person of the harness's configuration.
type hPerson struct {
	id    string
	roles []string
	added time.Time // the key's registration day; key_max_age counts from it
}

// hHost is one host. Each gets its own demotarget: a configuration
// refuses one address for hosts of two environments, and a target's log
// then shows which host a login reached.
type hHost struct {
	name, env string
}

// spec is what the harness renders into the configuration's YAML. Options
// change it before the start; reload changes it while the gateway runs.
type spec struct {
	persons []hPerson
	hosts   []hHost
	roles   string // the YAML list under roles:
	policy  string // lines under policy:, indented by two
	locks   map[string]string
	noServe bool   // the test calls Serve itself
	gateway string // further "key: value" entries of the gateway section
	node    *hNode // a node of a cluster (harness_cluster_test.go)
	// auditHook, if set, sees each event before the audit log stores it,
	// on the goroutine that appends it.
	auditHook func(audit.Event)
}

// option changes the harness's spec before it starts.
type option func(*spec)

// withPerson adds a person (or replaces one of the same id).
func withPerson(id string, added time.Time, roles ...string) option {
	return func(s *spec) {
		s.persons = slices.DeleteFunc(s.persons, func(p hPerson) bool { return p.id == id })
		s.persons = append(s.persons, hPerson{id: id, roles: roles, added: added})
	}
}

// withPolicy adds lines under policy:, e.g. "require_fido2: [test]".
func withPolicy(line string) option {
	return func(s *spec) { s.policy += "  " + line + "\n" }
}

// withAuditHook has hook see each event before the audit log stores it:
// a test can hold a session there, between its decision and its start.
func withAuditHook(hook func(audit.Event)) option {
	return func(s *spec) { s.auditHook = hook }
}

// hookedSink is the audit log with a hook before each append.
type hookedSink struct {
	audit.Sink
	hook func(audit.Event)
}

func (s hookedSink) Append(ctx context.Context, e audit.Event) error {
	s.hook(e)
	return s.Sink.Append(ctx, e)
}

// withoutServe leaves calling Serve to the test.
func withoutServe() option {
	return func(s *spec) { s.noServe = true }
}

// withGateway adds entries to the gateway section, e.g.
// "proxy_protocol: {from: [127.0.0.1]}".
func withGateway(entries string) option {
	return func(s *spec) { s.gateway += ", " + entries }
}

// withLock locks person in the store before the gateway starts.
func withLock(person, reason string) option {
	return func(s *spec) { s.locks[person] = reason }
}

// defaultRoles: admins reach every host of the tenant as root, join as
// peer or observer, approve access requests and may lock; developers
// reach web1 as deploy only.
const defaultRoles = `
  - {id: admin, permissions: [lock], allow: [{hosts: {tenant: schule-nord}, logins: [root], join: [peer, observer], approve: true}]}
  - {id: dev, allow: [{hosts: {names: [web1]}, logins: [deploy]}]}
`

func defaultSpec() *spec {
	recent := time.Now().UTC().AddDate(0, 0, -10)
	return &spec{
		persons: []hPerson{
			{id: "alice", roles: []string{"admin"}, added: recent},
			{id: "bob", roles: []string{"admin"}, added: recent},
			{id: "dave", roles: []string{"dev"}, added: recent},
		},
		hosts: []hHost{{"db1", "test"}, {"web1", "test"}, {"prod1", "production"}},
		roles: defaultRoles,
		locks: map[string]string{},
	}
}

// harness is one gateway with its targets, keys, audit log, store and
// recorder, all under one t.TempDir().
type harness struct {
	srv      *gateway.Server
	addr     string       // the gateway's listen address
	ln       net.Listener // with withoutServe: the listener for the test's Serve
	dir      string
	keys     *ca.Keys
	store    *store.Store
	auditDir string
	vault    *record.Vault // the data keys of recordings and the audit log
	hostCA   ssh.PublicKey
	signers  map[string]ssh.Signer // person → key
	targets  map[string]*hTarget   // host name → target
	spec     *spec
	cfgPath  string
	targetHK ssh.PublicKey
}

// hTarget is a demotarget and its log, which names every certificate it
// accepted (like sshd's "Accepted certificate ID").
type hTarget struct {
	*demotarget.Server
	log *buffer
}

// accepted returns the key ids of the certificates the target accepted.
func (tg *hTarget) accepted() []string {
	var ids []string
	for _, line := range strings.Split(tg.log.String(), "\n") {
		if i := strings.Index(line, "Accepted certificate ID "); i >= 0 {
			ids = append(ids, line[i:])
		}
	}
	return ids
}

// newHarness starts a gateway on 127.0.0.1:0 in front of one demotarget
// per host. Every part is closed at cleanup, in the reverse order of its
// start: the tests' clients first, then the gateway (Serve returns only
// after every connection handler has ended), the store, the audit log and
// the targets; last, the harness checks that no goroutine of the gateway,
// its parts or x/crypto/ssh is left behind.
func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	before, _ := goroutines()
	sp := defaultSpec()
	for _, o := range opts {
		o(sp)
	}
	// The second node of a cluster starts while the first one's goroutines
	// still come up; the first node's check, which runs last, covers both.
	if sp.node.sharesWith() == nil {
		t.Cleanup(func() { checkGoroutines(t, before) })
	}
	dir := t.TempDir()
	h := &harness{dir: dir, spec: sp, signers: map[string]ssh.Signer{}, targets: map[string]*hTarget{},
		cfgPath: filepath.Join(dir, "tandem.yaml"), auditDir: filepath.Join(dir, "data", "audit")}
	var err error
	// A second node of a cluster shares the first one's keys (as nodes
	// copy data_dir/keys), persons' keys, targets and state store.
	stateDir := filepath.Join(dir, "data")
	if first := sp.node.sharesWith(); first != nil {
		h.keys, h.signers, h.targets, h.targetHK, stateDir = first.keys, first.signers, first.targets, first.targetHK, filepath.Join(first.dir, "data")
	} else if h.keys, err = ca.LoadOrCreate(filepath.Join(dir, "data", "keys"), nil); err != nil {
		t.Fatal(err)
	}
	h.hostCA = h.keys.HostCA.PublicKey()
	for _, p := range sp.persons {
		if h.signers[p.id] == nil {
			h.signers[p.id] = newSigner(t)
		}
	}
	targetKey := newSigner(t)
	if h.targetHK == nil {
		h.targetHK = targetKey.PublicKey()
	}
	for _, hh := range sp.hosts {
		if h.targets[hh.name] != nil {
			continue
		}
		log := &buffer{}
		srv, err := demotarget.Start(context.Background(), demotarget.Options{
			Addr: "127.0.0.1:0", UserCA: h.keys.UserCA.PublicKey(), HostKey: targetKey,
			Dir: filepath.Join(dir, "target-"+hh.name), Logger: slog.New(slog.NewTextHandler(log, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		h.targets[hh.name] = &hTarget{Server: srv, log: log}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	cfg := h.parse(t)

	rec, err := newRecorder(dir)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	h.vault = rec.Vault
	alog, err := audit.Open(audit.Options{Dir: h.auditDir, Key: harnessAuditKey(t), Keys: rec.Vault})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	tl := &testLog{t: t}
	logger := slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(filepath.Join(stateDir, "state.db"), store.WithKeyDir(filepath.Join(stateDir, "keys")),
		store.WithReporter(gateway.ReportForgery(alog, logger)))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.store = st
	for person, reason := range sp.locks {
		if err := st.Lock(context.Background(), store.Lock{Person: person, Reason: reason, By: "harness", Created: time.Now()}); err != nil {
			ln.Close()
			t.Fatal(err)
		}
	}
	var sink audit.Sink = alog
	if sp.auditHook != nil {
		sink = hookedSink{alog, sp.auditHook}
	}
	o := gateway.Options{Config: cfg, Keys: h.keys, Audit: sink, Store: st, Recorder: rec, Logger: logger}
	sp.node.wire(&o)
	h.srv, err = gateway.New(o)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if sp.noServe {
		h.ln = ln
		t.Cleanup(func() { ln.Close(); tl.stop() })
		return h
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		tl.stopping()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v on a requested stop, want nil", err)
			}
		case <-time.After(wait):
			t.Errorf("Serve did not return within %v after its context ended", wait)
		}
		for _, line := range tl.stop() {
			t.Errorf("gateway logged an error while stopping: %s", line)
		}
	})
	return h
}

// testLog shows the gateway's warnings and errors with the test that
// caused them (t.Log: on failure, or with -v). After the gateway stopped,
// a late line goes to stderr: t.Log after the test's end would panic.
// It keeps the errors logged once the stop was asked for: a stop is no
// error, and the gateway must not report one.
type testLog struct {
	mu     sync.Mutex
	t      *testing.T
	ending bool
	late   []string
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending && bytes.Contains(p, []byte("level=ERROR")) {
		l.late = append(l.late, strings.TrimSuffix(string(p), "\n"))
	}
	if l.t == nil {
		return os.Stderr.Write(p)
	}
	l.t.Log("gateway: " + strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// stopping marks that the gateway was asked to stop.
func (l *testLog) stopping() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ending = true
}

// stop sends later lines to stderr and returns the errors logged since
// stopping.
func (l *testLog) stop() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t = nil
	return l.late
}

// newRecorder makes a key-encryption key (outside the data directory, as
// the configuration demands) and the vault the gateway records into.
func newRecorder(dir string) (*gateway.Recorder, error) {
	kekFile := filepath.Join(dir, "kek")
	if err := record.GenerateFileKEK(kekFile); err != nil {
		return nil, err
	}
	kek, err := record.FileKEK(kekFile)
	if err != nil {
		return nil, err
	}
	vault, err := record.OpenVault(filepath.Join(dir, "data", "vault"), kek)
	if err != nil {
		return nil, err
	}
	return &gateway.Recorder{Vault: vault, Dir: filepath.Join(dir, "data"), StreamCap: 1 << 20}, nil
}

// yaml renders the spec.
func (h *harness) yaml() string {
	var b strings.Builder
	// Tests refuse on purpose; they must not block their own source.
	fmt.Fprintf(&b, "gateway: {listen: %q, data_dir: %q, limits: {failures_per_source: 1000, failures_per_person: 1000}%s}\n",
		h.addr, filepath.Join(h.dir, "data"), h.spec.gateway)
	fmt.Fprintf(&b, "recording: {kek_file: %q}\n", filepath.Join(h.dir, "kek"))
	if h.spec.policy != "" {
		b.WriteString("policy:\n" + h.spec.policy)
	}
	b.WriteString(h.spec.node.yaml())
	b.WriteString("tenants: [{id: schule-nord, name: Gesamtschule Nord}]\npersons:\n")
	for _, p := range h.spec.persons {
		key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.signers[p.id].PublicKey())))
		fmt.Fprintf(&b, "  - {id: %s, name: %s Example, email: %s@example.org, roles: [%s], keys: [{key: %q, added: %s}], "+
			"obligations: {confidentiality_signed: 2026-01-10, training_valid_until: 2099-12-31, contract_until: 2099-12-31, nda_signed: 2026-01-10}}\n",
			p.id, p.id, p.id, strings.Join(p.roles, ", "), key, p.added.Format(time.DateOnly))
	}
	b.WriteString("roles:" + h.spec.roles + "hosts:\n")
	hk := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.targetHK)))
	for _, hh := range h.spec.hosts {
		fmt.Fprintf(&b, "  - {name: %s, address: %q, tenant: schule-nord, environment: %s, host_key: %q}\n",
			hh.name, h.targets[hh.name].Addr(), hh.env, hk)
	}
	return b.String()
}

// parse renders and validates the spec, as `tandem serve` loads a file.
func (h *harness) parse(t *testing.T) *config.Config {
	t.Helper()
	text := h.yaml()
	cfg, err := config.Parse(h.cfgPath, []byte(text))
	if err != nil {
		t.Fatalf("configuration: %v\n%s", err, text)
	}
	return cfg
}

// reload changes the spec (or the persons' keys) and reloads the
// gateway with it, as SIGHUP does.
func (h *harness) reload(t *testing.T, change func(*harness)) {
	t.Helper()
	change(h)
	if err := h.srv.Reload(h.parse(t)); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// lock locks person through the store, as `tandem lock` does from
// another process, and returns once the gateway has confirmed that it
// applied the lock (its watcher acknowledges the store's generation).
func (h *harness) lock(t *testing.T, person, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.store.Lock(ctx, store.Lock{Person: person, Reason: reason, By: "operator", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h.applied(t, ctx, "the lock of "+person)
}

// applied returns once the gateway has confirmed the store's current
// generation, as `tandem lock` and `tandem freeze` wait for it.
func (h *harness) applied(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	gen, err := h.store.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	applied, _, err := h.store.WaitApplied(ctx, gen, wait, 10*time.Millisecond, time.Now)
	if err != nil || !applied {
		t.Fatalf("the gateway did not apply %s: applied %v, %v", what, applied, err)
	}
}

// newSigner makes an ECDSA P-256 key, as `tandem demo` does for its persons.
func newSigner(t *testing.T) ssh.Signer { return testenv.NewSigner(t, elliptic.P256()) }

// clientConfig is person's client side: their key, and trust in the
// gateway's host CA only (a certificate for the name dialled, as the
// known_hosts line of `tandem client-config` says), never a bare key.
func (h *harness) clientConfig(person, user string, banner *strings.Builder) *ssh.ClientConfig {
	checker := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), h.hostCA.Marshal())
	}}
	return &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signers[person])}, HostKeyCallback: checker.CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoECDSA384v01},
		BannerCallback: func(msg string) error {
			banner.WriteString(msg)
			return nil
		},
		Timeout: wait,
	}
}

// handshake runs the client handshake on c, closing c if it takes longer
// than wait: a channel-backed conn (jump mode) has no deadlines.
func handshake(c net.Conn, addr string, cfg *ssh.ClientConfig, banner *strings.Builder) (*ssh.Client, error) {
	timer := time.AfterFunc(wait, func() { c.Close() })
	defer timer.Stop()
	sc, chans, reqs, err := ssh.NewClientConn(c, addr, cfg)
	if err != nil {
		c.Close()
		if banner.Len() > 0 {
			return nil, fmt.Errorf("%w; banner: %s", err, banner.String())
		}
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// dial connects person to dest, spelt as with ssh:
//
//	"gw"         the gateway itself (user name = the person)
//	"root%db1"   user-name mode: login root on host db1
//	"root@db1"   jump mode: direct-tcpip to db1, then SSH inside it
//	"bob"        any other plain user name
//
// A person the configuration does not know gets a fresh key.
// A refusal at login carries the gateway's pre-auth banner in the error.
// The connection (both of them in jump mode) closes at cleanup.
func (h *harness) dial(t *testing.T, person, dest string) (*ssh.Client, error) {
	t.Helper()
	if h.signers[person] == nil {
		h.signers[person] = newSigner(t) // a stranger: a key the configuration does not know
	}
	user := person
	login, jumpHost, jump := strings.Cut(dest, "@")
	if !jump && dest != "gw" {
		user = dest
	}
	var banner strings.Builder
	nc, err := net.DialTimeout("tcp", h.addr, wait)
	if err != nil {
		return nil, err
	}
	outer, err := handshake(nc, h.addr, h.clientConfig(person, user, &banner), &banner)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { outer.Close() })
	if !jump {
		return outer, nil
	}
	addr := net.JoinHostPort(jumpHost, "22")
	cc, err := outer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var inner strings.Builder
	c, err := handshake(cc, addr, h.clientConfig(person, login, &inner), &inner)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// client is dial that fails the test on an error.
func (h *harness) client(t *testing.T, person, dest string) *ssh.Client {
	t.Helper()
	c, err := h.dial(t, person, dest)
	if err != nil {
		t.Fatalf("%s → %s: %v", person, dest, err)
	}
	return c
}

// run runs command as person on dest (see dial) without a terminal and
// returns its output and exit status. A connection the gateway refuses
// gives status 255 and the error on stderr, as OpenSSH's ssh does.
func (h *harness) run(t *testing.T, person, dest, command string) (stdout, stderr string, status int) {
	t.Helper()
	c, err := h.dial(t, person, dest)
	if err != nil {
		return "", err.Error(), 255
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err.Error(), 255
	}
	var out, errb buffer
	s.Stdout, s.Stderr = &out, &errb
	timer := time.AfterFunc(wait, func() { c.Close() })
	err = s.Run(command)
	if !timer.Stop() {
		t.Fatalf("%s → %s %q: no end within %v; stdout %q, stderr %q", person, dest, command, wait, out.String(), errb.String())
	}
	return out.String(), errb.String(), exitStatus(t, err)
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitStatus()
	case errors.As(err, &missing):
		return -1
	default:
		t.Fatalf("session: %v", err)
		return 0
	}
}

// term is a session in progress: a shell with a PTY, a join, or a
// command started without waiting. What the person would see on their
// terminal, stdout and stderr, collects in out.
type term struct {
	c     *ssh.Client
	s     *ssh.Session
	stdin io.WriteCloser
	out   buffer
	done  chan struct{}
	err   error // the session's end, once done is closed
}

func (h *harness) start(t *testing.T, c *ssh.Client, pty bool, command string) *term {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{c: c, s: s, done: make(chan struct{})}
	s.Stdout, s.Stderr = &tm.out, &tm.out
	if tm.stdin, err = s.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if pty {
		if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
	}
	if command == "" {
		err = s.Shell()
	} else {
		err = s.Start(command)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { tm.err = s.Wait(); close(tm.done) }()
	t.Cleanup(func() { c.Close(); <-tm.done })
	return tm
}

// shell opens an interactive shell with a PTY for person on dest.
func (h *harness) shell(t *testing.T, person, dest string) *term {
	t.Helper()
	return h.start(t, h.client(t, person, dest), true, "")
}

// exec starts command without a PTY for person on dest and returns at once.
func (h *harness) exec(t *testing.T, person, dest, command string) *term {
	t.Helper()
	return h.start(t, h.client(t, person, dest), false, command)
}

// join runs `ssh -t gw join ID [args]` for person.
func (h *harness) join(t *testing.T, person, id string, args ...string) *term {
	t.Helper()
	return h.start(t, h.client(t, person, "gw"), true, strings.Join(append([]string{"join", id}, args...), " "))
}

// send types text.
func (tm *term) send(t *testing.T, text string) {
	t.Helper()
	if _, err := io.WriteString(tm.stdin, text); err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
}

// expect waits until the output matches the regular expression and
// returns the match's first group (or the whole match without one).
func (tm *term) expect(t *testing.T, expr string) string {
	t.Helper()
	re := regexp.MustCompile(expr)
	var m []string
	tm.out.waitFor(t, func(s string) bool { m = re.FindStringSubmatch(s); return m != nil }, expr)
	return m[len(m)-1]
}

// wait waits for the session's end and returns its exit status.
func (tm *term) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-tm.done:
		return exitStatus(t, tm.err)
	case <-time.After(wait):
		t.Fatalf("session did not end within %v; output %q", wait, tm.out.String())
		return 0
	}
}

// buffer collects output and wakes whoever waits for it.
type buffer struct {
	mu      sync.Mutex
	b       []byte
	changed chan struct{} // closed at the next write
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// waitFor waits, at most wait, until ok holds for the content.
func (b *buffer) waitFor(t *testing.T, ok func(string) bool, what string) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		s := string(b.b)
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if ok(s) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v; output so far:\n%s", what, wait, s)
		}
	}
}

// events reads the audit log back from disk.
func (h *harness) events(t *testing.T) []audit.Event {
	t.Helper()
	var es []audit.Event
	if err := audit.ReadKeys(h.auditDir, h.vault, audit.Filter{}, func(r audit.Record) error {
		es = append(es, r.Event)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// eventually polls ok, at most wait, for what cannot signal: the audit
// log on disk, the gateway's count of sessions, goroutines ending. On
// time-out it fails the test with why().
func eventually(t *testing.T, ok func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", wait, why())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEvent waits for an event at index from or later that match
// accepts. Some events are written after the client has seen the end: a
// refused login's auth.failure when the connection is closed, session.end
// after the exit status.
func (h *harness) waitEvent(t *testing.T, from int, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	var es []audit.Event
	var found audit.Event
	eventually(t, func() bool {
		es = h.events(t)
		for _, e := range es[min(from, len(es)):] {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	}, func() string { return "no audit event " + what + "; the log has" + types(es) })
	return found
}

// waitLive waits until the gateway counts n live sessions: a session
// leaves the registry a moment after its client saw the end.
func (h *harness) waitLive(t *testing.T, n int) {
	t.Helper()
	eventually(t, func() bool { return h.srv.LiveSessions() == n },
		func() string { return fmt.Sprintf("%d live sessions, want %d", h.srv.LiveSessions(), n) })
}

// types lists the events' types and persons, for failure messages.
func types(es []audit.Event) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %s person=%s host=%s session=%s %v", e.Type, e.Person, e.Host, e.Session, e.Attrs)
	}
	return b.String()
}

// goroutines counts the goroutines of the gateway and its parts and of
// x/crypto/ssh (both sides of every connection), the current one aside.
func goroutines() (int, string) {
	var buf strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)    // every goroutine's stack, as a panic prints them
	stacks := strings.Split(buf.String(), "\n\n")[1:] // the first is this one
	var ours []string
	for _, s := range stacks {
		if strings.Contains(s, "tandem.dev/tandem/internal/") || strings.Contains(s, "golang.org/x/crypto/ssh") {
			ours = append(ours, s)
		}
	}
	return len(ours), strings.Join(ours, "\n\n")
}

// checkGoroutines waits until no more of those goroutines run than
// before the harness started. Some end a moment after Serve returned (a
// connection's reader sees the close; an eviction's timer closes a
// transport that is already closed).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	var n int
	var stacks string
	eventually(t, func() bool { n, stacks = goroutines(); return n <= before }, func() string {
		return fmt.Sprintf("%d goroutines left behind (before the harness: %d):\n%s", n-before, before, stacks)
	})
}

// harnessAuditKey is the checkpoint signing key of a harness gateway,
// kept in memory as the real one is kept outside data_dir.
func harnessAuditKey(t testing.TB) *audit.SigningKey {
	t.Helper()
	k, _, err := audit.GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	return k
}
