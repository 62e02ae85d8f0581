package admin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/store"
)

// fakeGateway is admin's view of a gateway, in memory: a real
// configuration and policy, a real state store for the requests, and
// locks, audit events and sessions the test can see and set.
type fakeGateway struct {
	cfg      *config.Config
	eng      *policy.Engine
	st       *store.Store
	now      time.Time
	locks    map[string]store.Lock
	events   []audit.Event
	auditErr error
	refuse   audit.Type // an event type the audit log refuses, the others stored
	sessions []SessionInfo
	ended    []string       // messages of EndRequestSessions
	log      []audit.Record // the audit log as AuditEvents reads it
	reloads  []string       // who reloaded
	changes  []config.Change
}

func (g *fakeGateway) Reload(_ context.Context, who Caller) ([]config.Change, error) {
	g.reloads = append(g.reloads, who.ID())
	return g.changes, nil
}

func (g *fakeGateway) AuditEvents(f audit.Filter, fn func(audit.Record) error) error {
	for _, r := range g.log {
		if f.Match(r.Event) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *fakeGateway) Policy() (*config.Config, *policy.Engine) { return g.cfg, g.eng }
func (g *fakeGateway) Now() time.Time                           { return g.now }
func (g *fakeGateway) Requests() Requests                       { return g.st }
func (g *fakeGateway) Sessions() []SessionInfo                  { return g.sessions }
func (g *fakeGateway) Library() readable.Library {
	return readable.Library{Config: g.cfg, Engine: g.eng}
}
func (g *fakeGateway) Log() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (g *fakeGateway) Freezes() []policy.Freeze { return nil }

func (g *fakeGateway) LockReason(person string) string {
	if l, ok := g.locks[person]; ok {
		return l.Reason
	}
	return ""
}

func (g *fakeGateway) Audit(_ context.Context, e audit.Event) error {
	if g.auditErr != nil || e.Type == g.refuse && g.refuse != "" {
		return errors.New("disk full")
	}
	g.events = append(g.events, e)
	return nil
}

func (g *fakeGateway) Lock(_ context.Context, l store.Lock) error {
	g.locks[l.Person] = l
	return nil
}

func (g *fakeGateway) Unlock(_ context.Context, person, _ string) (bool, error) {
	_, ok := g.locks[person]
	delete(g.locks, person)
	return ok, nil
}

func (g *fakeGateway) Session(id string) (SessionInfo, bool) {
	for _, s := range g.sessions {
		if s.ID == id {
			return s, true
		}
	}
	return SessionInfo{}, false
}

func (g *fakeGateway) EndRequestSessions(id, msg string) int {
	g.ended = append(g.ended, msg)
	return 1
}

func (g *fakeGateway) Connections(who Caller) []Connection {
	return []Connection{{Source: "127.0.0.1:50000", Since: g.now.Add(-time.Minute), Channels: 1, This: true}}
}

// testPersons are the persons of the tests: alice and bob may log in,
// carol leads (locks, approves, reads), eve is an external expert, dora
// audits tenant nord and may reload the configuration.
var testPersons = []struct{ id, role string }{
	{"alice", "admin"}, {"bob", "admin"}, {"carol", "lead"}, {"eve", "contractor"}, {"dora", "auditor"},
}

func newFake(t *testing.T) *fakeGateway {
	t.Helper()
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "gateway: {listen: \"127.0.0.1:2222\", data_dir: %q}\n", filepath.Join(dir, "data"))
	b.WriteString("tenants: [{id: nord, name: Nord}, {id: sued, name: Sued}]\npersons:\n")
	for _, p := range testPersons {
		fmt.Fprintf(&b, "  - {id: %s, name: %s Example, email: %s@example.org, roles: [%s], keys: [{key: %q, added: %s}], "+
			"obligations: {confidentiality_signed: 2026-01-10, training_valid_until: 2099-12-31, contract_until: 2099-12-31, nda_signed: 2026-01-10}}\n",
			p.id, p.id, p.id, p.role, keyLine(t), now.AddDate(0, 0, -10).Format(time.DateOnly))
	}
	b.WriteString(`roles:
  - {id: admin, allow: [{hosts: {tenant: nord}, logins: [root]}]}
  - {id: lead, permissions: [lock], allow: [{hosts: {tenant: nord}, logins: [root], approve: true, read: true}]}
  - {id: contractor, external: true, allow: [{hosts: {tenant: nord}, logins: [root]}]}
  - {id: auditor, permissions: [configure], allow: [{hosts: {tenant: nord}, audit: true}]}
hosts:
`)
	fmt.Fprintf(&b, "  - {name: db1, address: \"127.0.0.1:1\", tenant: nord, environment: test, host_key: %q}\n", keyLine(t))
	fmt.Fprintf(&b, "  - {name: prod1, address: \"127.0.0.2:1\", tenant: nord, environment: production, host_key: %q}\n", keyLine(t))
	fmt.Fprintf(&b, "  - {name: sued1, address: \"127.0.0.3:1\", tenant: sued, environment: test, host_key: %q}\n", keyLine(t))
	cfg, err := config.Parse(filepath.Join(dir, "tandem.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.WithKeyDir(filepath.Join(dir, "keys")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fakeGateway{cfg: cfg, eng: policy.New(cfg), st: st, now: now, locks: map[string]store.Lock{}}
}

func keyLine(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// as is person logged in with their first key.
func (g *fakeGateway) as(id string) Caller {
	p := g.cfg.Person(id)
	return Caller{Person: p, Key: &p.Keys[0], Source: "127.0.0.1:50000"}
}

// run runs line as person and returns the exit status and both outputs.
func (g *fakeGateway) run(person, line string) (status int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	status = Run(context.Background(), g, g.as(person), line, &out, &errOut)
	return status, out.String(), errOut.String()
}

// request has alice ask for root on prod1 and returns the request's id.
func (g *fakeGateway) request(t *testing.T, reason string) string {
	t.Helper()
	code, out, errOut := g.run("alice", "request --hosts prod1 --login root --for 1h --reason "+reason)
	if code != 0 {
		t.Fatalf("request: %d %s %s", code, out, errOut)
	}
	return strings.TrimSuffix(strings.Fields(out)[1], ":")
}

// TestRefusals: each command refuses what the policy or the command line
// does not allow, with a message that says why, exit status 1 (2 for a
// command not understood), and nothing changed.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, g *fakeGateway) string // returns a request id, if any
		person string
		line   string // %s: the request id
		status int
		stderr string
	}{
		{name: "lock without the permission", person: "alice", line: "lock bob --reason x", status: 1,
			stderr: "may not lock or unlock persons: no role of theirs has the permission lock"},
		{name: "lock by an external", person: "eve", line: "lock bob --reason x", status: 1,
			stderr: "external experts never lock or unlock persons"},
		{name: "lock an unknown person", person: "carol", line: "lock nobody --reason x", status: 1, stderr: `unknown person "nobody"`},
		{name: "lock without a reason", person: "carol", line: "lock bob", status: 1, stderr: "--reason is required"},
		{name: "lock without a person", person: "carol", line: "lock --reason x", status: 1, stderr: "name the person"},
		{name: "unlock who is not locked", person: "carol", line: "unlock bob", status: 1, stderr: "bob was not locked"},
		{name: "unlock without the permission", person: "alice", line: "unlock bob", status: 1, stderr: "may not lock or unlock persons"},
		{name: "approve own request", setup: requested, person: "alice", line: "approve %s", status: 1,
			stderr: "you cannot approve your own request"},
		{name: "approve by an external", setup: requested, person: "eve", line: "approve %s", status: 1,
			stderr: "external experts never approve access requests"},
		{name: "approve without the right", setup: requested, person: "bob", line: "approve %s", status: 1,
			stderr: "may not approve requests for prod1"},
		{name: "approve an unknown request", person: "carol", line: "approve 0000", status: 1, stderr: "no request 0000"},
		{name: "deny without a reason", setup: requested, person: "carol", line: "deny %s", status: 1, stderr: "--reason is required"},
		{name: "revoke by a stranger", setup: requested, person: "bob", line: "revoke %s --reason mine now", status: 1,
			stderr: "may not approve requests for prod1"},
		{name: "request without a reason", person: "alice", line: "request --hosts prod1 --login root", status: 1, stderr: "reason"},
		{name: "requests takes no arguments", person: "alice", line: "requests x", status: 1, stderr: "requests: usage"},
		{name: "whoami takes no arguments", person: "alice", line: "whoami x", status: 1, stderr: "takes no arguments"},
		{name: "export without an id", person: "carol", line: "export", status: 1, stderr: "usage: export SESSION-ID"},
		{name: "unknown command", person: "alice", line: "shell", status: 2, stderr: `unknown command "shell"`},
		{name: "join is not run here", person: "alice", line: "join x", status: 2, stderr: `unknown command "join"`},
		{name: "unterminated quote", person: "alice", line: "lock 'bob", status: 2, stderr: "unterminated single quote"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFake(t)
			line := c.line
			if c.setup != nil {
				line = fmt.Sprintf(line, c.setup(t, g))
			}
			before := len(g.events)
			code, out, errOut := g.run(c.person, line)
			if code != c.status || !strings.Contains(errOut, c.stderr) {
				t.Fatalf("%s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", line, code, c.status, c.stderr, out, errOut)
			}
			if len(g.locks) != 0 || len(g.ended) != 0 {
				t.Errorf("a refusal changed something: locks %v, ended %v", g.locks, g.ended)
			}
			for _, e := range g.events[before:] {
				if e.Type != audit.Command {
					t.Errorf("a refusal was audited as %s", e.Type)
				}
			}
		})
	}
}

func requested(t *testing.T, g *fakeGateway) string { return g.request(t, "ticket 42 migrate the db") }

// TestLockUnlock: a person with the lock permission locks with a reason of
// several unquoted words (ssh joins its arguments with blanks) and
// unlocks; the local operator needs no permission.
func TestLockUnlock(t *testing.T) {
	g := newFake(t)
	code, out, errOut := g.run("carol", "lock bob --for 2h --reason left the company")
	if code != 0 || !strings.Contains(out, "bob is locked") {
		t.Fatalf("lock: %d %s %s", code, out, errOut)
	}
	l := g.locks["bob"]
	if l.Reason != "left the company" || l.By != "carol" || !l.Until.Equal(g.now.Add(2*time.Hour)) {
		t.Fatalf("stored lock %+v", l)
	}
	if e := g.events[len(g.events)-1]; e.Type != audit.Command || e.Person != "carol" || e.Attrs["command"] != "lock bob --for 2h --reason left the company" {
		t.Errorf("audit: %+v", e)
	}
	if code, out, _ = g.run("carol", "unlock bob"); code != 0 || out != "bob is unlocked\n" {
		t.Fatalf("unlock: %d %s", code, out)
	}
	op := Caller{Operator: "local:root"}
	if err := Lock(context.Background(), g, op, "alice", "laptop stolen", 0); err != nil {
		t.Fatal(err)
	}
	if l := g.locks["alice"]; l.By != "local:root" || !l.Until.IsZero() {
		t.Fatalf("operator's lock %+v", l)
	}
	if err := Unlock(context.Background(), g, op, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := Unlock(context.Background(), g, op, "alice"); err == nil || err.Error() != "alice was not locked" {
		t.Fatalf("second unlock: %v", err)
	}
}

// TestRequestLifecycle: request, approve, revoke; the revocation ends the
// sessions under the request and names who revoked it and why.
func TestRequestLifecycle(t *testing.T) {
	g := newFake(t)
	id := g.request(t, "ticket 42 migrate the db")
	if code, out, errOut := g.run("carol", "approve "+id+" --comment looks fine"); code != 0 || !strings.Contains(out, "approved: alice may use root on prod1") {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	if code, out, _ := g.run("alice", "requests"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "approved") {
		t.Fatalf("requests: %d %s", code, out)
	}
	code, out, errOut := g.run("alice", "revoke "+id+" --reason done early")
	if code != 0 || !strings.Contains(out, "revoked; 1 live session(s) ended") {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	if want := fmt.Sprintf("request %s was revoked by alice: done early", id); len(g.ended) != 1 || g.ended[0] != want {
		t.Fatalf("ended %q, want %q", g.ended, want)
	}
	var types []string
	for _, e := range g.events {
		if e.Type != audit.Command {
			types = append(types, string(e.Type))
			if e.Request != id || e.Attrs["requester"] != "alice" || e.Attrs["hosts"] != "prod1" {
				t.Errorf("%s: %+v", e.Type, e)
			}
		}
	}
	if got := strings.Join(types, ","); got != "request.create,request.approve,request.revoke" {
		t.Errorf("audited %s", got)
	}
}

// TestHostileTextEscaped: a reason with control and bidi characters
// reaches the approver's terminal escaped; the audit log keeps its bytes.
func TestHostileTextEscaped(t *testing.T) {
	g := newFake(t)
	const reason = "ticket 1\u009b2J \u202egnp.exe"
	id := g.request(t, "'"+reason+"'")
	code, out, _ := g.run("carol", "requests")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("requests: %d %s", code, out)
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b\u202e") {
		t.Fatalf("raw control in %q", out)
	}
	if want := `ticket 1\u009b2J \u202egnp.exe`; !strings.Contains(out, want) {
		t.Fatalf("requests does not show %q:\n%s", want, out)
	}
	found := false
	for _, e := range g.events {
		found = found || e.Type == audit.RequestCreate && e.Attrs["reason"] == reason
	}
	if !found {
		t.Fatal("the audit log does not keep the reason's original bytes")
	}
	// An error that repeats what was typed is escaped too.
	if _, _, errOut := g.run("carol", "lock \x1b[2J --reason x"); strings.ContainsAny(errOut, "\x1b") {
		t.Fatalf("raw ESC in %q", errOut)
	}
}

// TestAuditFailClosed: without the audit log no command runs.
func TestAuditFailClosed(t *testing.T) {
	g := newFake(t)
	g.auditErr = errors.New("disk full")
	code, out, errOut := g.run("carol", "lock bob --reason x")
	if code != 1 || !strings.Contains(errOut, "the audit log is unavailable, so no command can run") || out != "" {
		t.Fatalf("%d %q %q", code, out, errOut)
	}
	if len(g.locks) != 0 {
		t.Fatal("a command ran without the audit log")
	}
	if _, err := OpenRecording(context.Background(), g, g.as("carol"), "x", audit.RecordingRead); err == nil {
		t.Fatal("a recording opened without the audit log")
	}
}

// TestWhoamiAndSessions: whoami shows the caller's connections and hosts;
// sessions shows only what the caller owns or may join.
func TestWhoamiAndSessions(t *testing.T) {
	g := newFake(t)
	code, out, _ := g.run("alice", "whoami")
	for _, want := range []string{"alice (alice Example <alice@example.org>)", "connections: 1 open", "(this one)", "prod1", "four-eyes"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("whoami lacks %q: %d\n%s", want, code, out)
		}
	}
	prod := g.cfg.Host("prod1")
	g.sessions = []SessionInfo{{Info: session.Info{ID: "s1", Host: "prod1", Owner: session.Participant{Person: "bob"},
		Participants: []session.Participant{{Person: "bob", Mode: session.Owner}}, Started: g.now}, HostConfig: prod}}
	if code, out, _ = g.run("alice", "sessions"); code != 0 || !strings.Contains(out, "no sessions you may join") {
		t.Errorf("alice may not join on prod1, yet: %d\n%s", code, out)
	}
	if code, out, _ = g.run("bob", "sessions"); code != 0 || !strings.Contains(out, "s1") {
		t.Errorf("bob owns s1, yet: %d\n%s", code, out)
	}
}

// TestJoin: admin decides a join; the gateway only attaches.
func TestJoin(t *testing.T) {
	g := newFake(t)
	prod := g.cfg.Host("prod1")
	g.sessions = []SessionInfo{{Info: session.Info{ID: "s1", Owner: session.Participant{Person: "bob"}}, HostConfig: prod}}
	cases := []struct {
		person string
		args   []string
		tty    bool
		err    string
	}{
		{"alice", []string{"s1"}, false, "joining needs a terminal"},
		{"alice", nil, true, "name the session to join\n  usage: ssh -t gw join"},
		{"alice", []string{"s1", "s2"}, true, `unexpected argument "s2"`},
		{"alice", []string{"s9"}, true, "no session s9"},
		{"bob", []string{"s1"}, true, "you cannot be the second person in your own session"},
		{"alice", []string{"s1"}, true, "may not join sessions on prod1"},
	}
	for _, c := range cases {
		_, err := Join(context.Background(), g, g.as(c.person), c.args, c.tty)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s join %q (tty %v): %v, want %q", c.person, c.args, c.tty, err, c.err)
		}
	}
	if args, ok := JoinArgs("join s1 --observer"); !ok || strings.Join(args, " ") != "s1 --observer" {
		t.Errorf("JoinArgs: %q %v", args, ok)
	}
	if _, ok := JoinArgs("whoami"); ok {
		t.Error("whoami is no join")
	}
}
