package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end tests of access requests (issue 7, M8):
// non-interactive work on a four-eyes host — exec, sftp, scp, and so
// Ansible — passes only under a time-boxed, purpose-bound request that a
// second person approved. The tests drive the real gateway commands
// (`ssh gw request|requests|approve|deny|revoke`), real OpenSSH clients and
// a real ansible-playbook run against real sshd targets. Each test builds
// its own gateway and targets, because the fixture's configuration has no
// production hosts and no approve rights.

// rqPerson is a person of a request test and the one role they hold.
type rqPerson struct {
	id, role string
	external bool // adds the contract and NDA obligations an external needs
}

// rqPersons are the persons of every request test:
//
//   - alice and dave: admin, root on every host, no approve right
//   - bob and erin: lead, root on every host and the approve right
//   - carol: stage-lead, the approve right on staging hosts only
//   - xena: contractor, external, root (the config refuses an approve
//     right on an external role; the gateway refuses her anyway)
var rqPersons = []rqPerson{
	{"alice", "admin", false},
	{"dave", "admin", false},
	{"bob", "lead", false},
	{"erin", "lead", false},
	{"carol", "stage-lead", false},
	{"xena", "contractor", true},
}

// rqHost is a host of a request test; each gets its own sshd.
type rqHost struct {
	Name, Env string
	RealData  bool
	Listen    string // loopback address of its sshd; "" is 127.0.0.1
}

// rqOpts configures a request test's gateway.
type rqOpts struct {
	Hosts []rqHost
	// ProductionApprovers sets policy.approvers.production; 0 leaves the
	// default (1).
	ProductionApprovers int
	// WaitTimeout sets policy.wait_timeout, how long an interactive
	// session waits for a second person; 0 leaves the default.
	WaitTimeout time.Duration
	// TwoNodes runs a second gateway, node b, beside the first on one
	// real PostgreSQL state store (docs/HA.md); see rqEnv.nodeB.
	TwoNodes bool
}

// rqEnv is the setup of one request test.
type rqEnv struct {
	Dir, Bin, Config string
	GW               *testenv.Gateway
	Targets          map[string]*testenv.Target // by host name
	clients          map[string]*testenv.Client // by person id
	b                *rqEnv                     // node b (rqOpts.TwoNodes)
}

// nodeB is the same test setup seen through the second gateway: its
// gateway process and the persons' clients that connect to it.
func (e *rqEnv) nodeB(t *testing.T) *rqEnv {
	t.Helper()
	if e.b == nil {
		t.Fatal("the test has one gateway: set rqOpts.TwoNodes")
	}
	return e.b
}

// requestConfig is the configuration of a request test without its
// hosts: the persons of rqPersons with their keys (pubs) and four roles:
// admin (root everywhere), lead (admin plus approving), stage-lead
// (approving on staging only) and contractor (external, root).
func requestConfig(dir string, gwPort int, o rqOpts, pubs map[string]string) *config.Config {
	c := gwConfig(dir, gwPort)
	// Tests refuse on purpose; they must not block their own source.
	c.Gateway.Limits = config.Limits{FailuresPerSource: 100, FailuresPerPerson: 100}
	c.Policy.WaitTimeout = config.Duration{Duration: o.WaitTimeout}
	if o.ProductionApprovers > 0 {
		c.Policy.Approvers = map[string]int{config.Production: o.ProductionApprovers}
	}
	for _, p := range rqPersons {
		c.Persons = append(c.Persons, member(p.id, pubs[p.id], p.role, p.external))
	}
	contractor := role("contractor", "an external expert; external roles never approve", config.Rule{Hosts: nord, Logins: root})
	contractor.External = true
	c.Roles = []config.Role{
		role("admin", "root on every host of the school", config.Rule{Hosts: nord, Logins: root}),
		role("lead", "root on every host of the school; approves access requests", config.Rule{Hosts: nord, Logins: root, Approve: true}),
		role("stage-lead", "approves access requests for staging hosts only",
			config.Rule{Hosts: config.Selector{Environment: config.Staging}, Approve: true}),
		contractor,
	}
	return c
}

// newRequestEnv builds keys for every person, one sshd per host, the
// gateway and one OpenSSH client per person that reaches every host in
// jump mode as root.
func newRequestEnv(t *testing.T, o rqOpts) *rqEnv {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	e := &rqEnv{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml"),
		Targets: map[string]*testenv.Target{}, clients: map[string]*testenv.Client{}}
	priv, pubs := map[string]string{}, map[string]string{}
	for _, p := range rqPersons {
		priv[p.id], pubs[p.id] = testenv.KeyPair(t, keysDir, p.id, "ecdsa")
	}
	gwPort := testenv.FreePort(t)
	cfg := requestConfig(dir, gwPort, o, pubs)
	hostPrivs, ports := map[string]string{}, map[string]int{}
	for _, h := range o.Hosts {
		listen := h.Listen
		if listen == "" {
			listen = "127.0.0.1"
		}
		var hostPub string
		hostPrivs[h.Name], hostPub = testenv.KeyPair(t, keysDir, h.Name+"_host", "ecdsa")
		ports[h.Name] = testenv.FreePort(t)
		ch := host(h.Name, h.Env, fmt.Sprintf("%s:%d", listen, ports[h.Name]), hostPub)
		ch.RealData = h.RealData
		cfg.Hosts = append(cfg.Hosts, ch)
	}
	if o.TwoNodes {
		cfg.Store = config.Store{Driver: config.StorePostgres, DSN: testenv.RequirePostgres(t).NewDatabase(t)}
	}
	writeConfig(t, e.Config, cfg)

	userCA := caPublic(t, bin, e.Config, "user")
	for _, h := range o.Hosts {
		e.Targets[h.Name] = testenv.StartSSHD(t, testenv.TargetOpts{
			Address: h.Listen, Port: ports[h.Name], HostKeyFile: hostPrivs[h.Name], UserCA: userCA,
		})
	}
	e.GW = testenv.StartGateway(t, bin, e.Config, gwPort)
	jump := map[string]string{}
	for _, h := range o.Hosts {
		jump[h.Name] = "root"
	}
	e.clients = personClients(t, dir, e.GW, gwPort, priv, jump)
	if o.TwoNodes {
		// Node b: the same configuration but its own listener, data
		// directory and audit files, and the CAs and state key of node a.
		b := &rqEnv{Dir: mkdir(t, dir, "b"), Bin: bin, Targets: e.Targets}
		b.Config = filepath.Join(b.Dir, "tandem.yaml")
		port := testenv.FreePort(t)
		bc := *cfg
		base := gwConfig(b.Dir, port)
		bc.Gateway.Listen, bc.Gateway.DataDir, bc.Audit = base.Gateway.Listen, base.Gateway.DataDir, base.Audit
		writeConfig(t, b.Config, &bc)
		shareKeys(t, filepath.Join(dir, "data", "keys"), filepath.Join(b.Dir, "data", "keys"))
		b.GW = testenv.StartGateway(t, bin, b.Config, port)
		b.clients = personClients(t, b.Dir, b.GW, port, priv, jump)
		e.b = b
	}
	return e
}

// client returns the OpenSSH client of person.
func (e *rqEnv) client(t *testing.T, person string) *testenv.Client {
	t.Helper()
	return clientOf(t, e.clients, person)
}

// gw runs `ssh gw ARGS…` as person.
func (e *rqEnv) gw(t *testing.T, person string, args ...string) testenv.Result {
	t.Helper()
	return e.client(t, person).SSH(t, append([]string{"gw"}, args...)...)
}

// requestIDRE finds the id in the answer of `ssh gw request`.
var requestIDRE = regexp.MustCompile(`(?m)^request ([0-9a-f]{8}): `)

// request runs `ssh gw request` as person and returns the request id. The
// reason goes last and unquoted, the way a person types it.
func (e *rqEnv) request(t *testing.T, person, hosts, dur, reason string) string {
	t.Helper()
	r := e.gw(t, person, "request", "--hosts", hosts, "--login", "root", "--for", dur, "--reason", reason)
	m := requestIDRE.FindStringSubmatch(r.Stdout)
	if r.Code != 0 || m == nil {
		t.Fatalf("%s: ssh gw request --hosts %s --for %s: want `request <id>: …`\n%s\ngateway:\n%s", person, hosts, dur, r, e.GW.Tail())
	}
	t.Logf("%s: %s", person, strings.TrimSpace(firstLine(r.Stdout, "request "+m[1])))
	return m[1]
}

// decide runs `ssh gw VERB ID ARGS…` as person and expects success and
// want in its output.
func (e *rqEnv) decide(t *testing.T, person, verb, id, want string, args ...string) testenv.Result {
	t.Helper()
	r := e.gw(t, person, append([]string{verb, id}, args...)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, want) {
		t.Fatalf("%s: ssh gw %s %s: want exit 0 and %q\n%s\ngateway:\n%s", person, verb, id, want, r, e.GW.Tail())
	}
	t.Logf("%s: %s", person, strings.TrimSpace(firstLine(r.Stdout, want)))
	return r
}

// decideRefused runs `ssh gw VERB ID ARGS…` as person and expects a refusal
// that says want.
func (e *rqEnv) decideRefused(t *testing.T, person, verb, id, want string, args ...string) {
	t.Helper()
	r := e.gw(t, person, append([]string{verb, id}, args...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("%s: ssh gw %s %s: want a refusal saying %q\n%s", person, verb, id, want, r)
		return
	}
	t.Logf("%s: ssh gw %s refused: %q", person, verb, strings.TrimSpace(firstLine(r.Stderr, want)))
}

// execOK runs a command as root on host in jump mode and expects its
// output.
func (e *rqEnv) execOK(t *testing.T, person, host string) {
	t.Helper()
	n := nonce(t)
	r := e.client(t, person).SSH(t, host, "echo", "ok-"+n)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "ok-"+n {
		t.Fatalf("%s: exec on %s under an approved request: want exit 0 and ok-%s\n%s\ngateway:\n%s", person, host, n, r, e.GW.Tail())
	}
}

// execRefused runs a command as root on host in jump mode and expects
// Tandem's refusal, with the hint, and no login on the target.
func (e *rqEnv) execRefused(t *testing.T, why, person, host string) {
	t.Helper()
	tg := e.Targets[host]
	before := tg.AcceptedLogins()
	r := e.client(t, person).SSH(t, host, "echo", "must-not-run")
	all := r.Stdout + r.Stderr
	for _, w := range []string{
		"tandem: " + host + " is a",
		"non-interactive access needs an approved access request",
		"ssh gw request --hosts " + host + " --login root",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("%s: exec by %s on %s: output lacks %q\n%s\ngateway:\n%s", why, person, host, w, r, e.GW.Tail())
		}
	}
	if r.Code == 0 || strings.Contains(r.Stdout, "must-not-run") {
		t.Errorf("%s: exec by %s on %s ran\n%s", why, person, host, r)
	}
	if after := tg.AcceptedLogins(); after != before {
		t.Errorf("%s: exec by %s on %s was refused, yet the target saw %d login(s)", why, person, host, after-before)
	}
}

// rqAuditRecord is the part of an audit event these tests read.
type rqAuditRecord struct {
	Type    string            `json:"type"`
	Person  string            `json:"person"`
	Host    string            `json:"host"`
	Request string            `json:"request"`
	Session string            `json:"session"`
	Attrs   map[string]string `json:"attrs"`
}

// auditOfRequest waits (bounded) until `tandem audit show --request ID
// --json` has every type in want, and returns its records. The last events
// of a session are written as its connection winds down.
func (e *rqEnv) auditOfRequest(t *testing.T, id string, want ...string) []rqAuditRecord {
	t.Helper()
	var recs []rqAuditRecord
	missing := want
	configs := []string{e.Config} // each node's log holds what went through it
	if e.b != nil {
		configs = append(configs, e.b.Config)
	}
	testenv.WaitFor(10*time.Second, func() bool {
		recs = nil
		for _, c := range configs {
			out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "show", "--config", c, "--request", id, "--json")
			if err != nil {
				t.Fatalf("tandem audit show --request %s --json: %v\n%s", id, err, errOut)
			}
			dec := json.NewDecoder(strings.NewReader(out))
			for dec.More() {
				var r rqAuditRecord
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("tandem audit show --request %s --json: %v\n%s", id, err, out)
				}
				recs = append(recs, r)
			}
		}
		missing = nil
		for _, w := range want {
			if countType(recs, w) == 0 {
				missing = append(missing, w)
			}
		}
		return len(missing) == 0
	})
	if len(missing) > 0 {
		t.Errorf("tandem audit show --request %s lacks %v; has:\n%s", id, missing, fmtRequestRecords(recs))
	}
	for _, r := range recs {
		if r.Request != id {
			t.Errorf("tandem audit show --request %s returned an event of request %q: %+v", id, r.Request, r)
		}
	}
	return recs
}

func countType(recs []rqAuditRecord, typ string) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

func fmtRequestRecords(recs []rqAuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s person=%s host=%s session=%s %v\n", r.Type, r.Person, r.Host, r.Session, r.Attrs)
	}
	return b.String()
}

// bgExec is an ssh exec running in the background.
type bgExec struct {
	cmd            *exec.Cmd
	stdout, stderr testenv.SyncBuffer
	done           chan struct{}
	err            error     // valid after done is closed
	exitAt         time.Time // valid after done is closed
}

// startExec starts `ssh HOST COMMAND` as person without waiting for it.
// The test's cleanup kills it if it still runs.
func (e *rqEnv) startExec(t *testing.T, person, host, command string) *bgExec {
	t.Helper()
	b := &bgExec{done: make(chan struct{})}
	b.cmd = e.client(t, person).Command(t, "ssh", host, command)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start ssh %s %q: %v", host, command, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		b.exitAt = time.Now()
		close(b.done)
	}()
	t.Cleanup(func() {
		_ = testenv.KillGroup(b.cmd)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Errorf("ssh %s %q did not end after SIGKILL", host, command)
		}
	})
	return b
}

// waitExit waits up to timeout for the client to end.
func (b *bgExec) waitExit(timeout time.Duration) bool { return testenv.WaitClosed(b.done, timeout) }

func (b *bgExec) String() string {
	return fmt.Sprintf("%s\n  stdout: %q\n  stderr: %q", b.cmd, b.stdout.String(), b.stderr.String())
}

// TestRequestsRules: the rules of access requests end to end — who may
// approve, the cap on the window, two approvers for production, deny, and
// the audit trail of a request.
func TestRequestsRules(t *testing.T) {
	t.Parallel()
	e := newRequestEnv(t, rqOpts{
		Hosts: []rqHost{
			{Name: "db1", Env: "production"},
			{Name: "stg1", Env: "staging", RealData: true},
		},
		ProductionApprovers: 2,
	})

	// Without a request, non-interactive work on both four-eyes hosts is
	// refused, with the command that asks for one.
	e.execRefused(t, "no request", "alice", "db1")
	e.execRefused(t, "no request", "alice", "stg1")

	// Requests that must not be stored.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"over the cap", []string{"--hosts", "db1", "--login", "root", "--for", "9h", "--reason", "TICKET-7 long maintenance"},
			"a request lasts at most 8h0m0s, not 9h0m0s"},
		{"reason too short", []string{"--hosts", "db1", "--login", "root", "--for", "1h", "--reason", "fix"},
			"the reason must say what the work is for"},
		{"unknown host", []string{"--hosts", "db9", "--login", "root", "--for", "1h", "--reason", "TICKET-7 deploy config"},
			`no host is named "db9"`},
		{"login the roles do not grant", []string{"--hosts", "db1", "--login", "deploy", "--for", "1h", "--reason", "TICKET-7 deploy config"},
			"a request cannot grant more than your roles do"},
	} {
		r := e.gw(t, "alice", append([]string{"request"}, tc.args...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) || requestIDRE.MatchString(r.Stdout) {
			t.Errorf("request %s: want a refusal saying %q and no request id\n%s", tc.name, tc.want, r)
			continue
		}
		t.Logf("request %s refused: %q", tc.name, strings.TrimSpace(firstLine(r.Stderr, tc.want)))
	}
	r := e.gw(t, "xena", "request", "--hosts", "db1", "--login", "root", "--for", "1h", "--reason", "TICKET-7 deploy config")
	if r.Code == 0 || !strings.Contains(r.Stderr, "external experts never request access") {
		t.Errorf("xena (external) requests db1: want a refusal\n%s", r)
	}

	// Selectors name hosts by their attributes, too.
	for _, tc := range []struct{ sel, want string }{
		{"environment=production", "root on db1 for"},
		{"tenant=schule-nord", "root on db1, stg1 for"},
		{"db*,stg1", "root on db1, stg1 for"},
	} {
		r := e.gw(t, "alice", "request", "--hosts", tc.sel, "--login", "root", "--for", "1h", "--reason", "TICKET-7 selector check")
		m := requestIDRE.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil || !strings.Contains(r.Stdout, tc.want) {
			t.Errorf("request --hosts %s: want %q\n%s", tc.sel, tc.want, r)
			continue
		}
		e.decide(t, "alice", "revoke", m[1], "revoked", "--reason", "only a selector check")
	}

	// A production request needs two distinct approvers.
	id := e.request(t, "alice", "db1", "1h", "TICKET-7 rotate the database certificates")
	if r := e.gw(t, "alice", "requests"); r.Code != 0 || !strings.Contains(firstLine(r.Stdout, id), "open") {
		t.Errorf("alice: ssh gw requests: want %s open\n%s", id, r)
	}
	if r := e.gw(t, "bob", "requests"); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Errorf("bob may decide %s: ssh gw requests must list it\n%s", id, r)
	}
	if r := e.gw(t, "dave", "requests"); r.Code != 0 || strings.Contains(r.Stdout, id) {
		t.Errorf("dave may not decide %s: ssh gw requests must not list it\n%s", id, r)
	}
	e.decideRefused(t, "alice", "approve", id, "you cannot approve your own request")
	e.decideRefused(t, "dave", "approve", id, "may not approve requests for db1")
	e.decideRefused(t, "carol", "approve", id, "may not approve requests for db1")
	e.decideRefused(t, "xena", "approve", id, "external experts never approve access requests")
	e.execRefused(t, "no approval yet", "alice", "db1")
	// scp (over sftp, as OpenSSH 9 does it) and sftp are refused the same
	// way, and the person learns why every time: three tries each, so
	// that a reason that gets lost only now and then shows.
	local := filepath.Join(e.Dir, "payload.txt")
	writeTestFile(t, local, "payload "+id+"\n")
	remote := filepath.Join(mkdir(t, e.Dir, "remote"), "payload.txt")
	before := e.Targets["db1"].AcceptedLogins()
	for try := 1; try <= 3; try++ {
		for _, tc := range []struct {
			name string
			run  func() testenv.Result
		}{
			{"scp", func() testenv.Result { return e.client(t, "alice").Run(t, "scp", local, "db1:"+remote) }},
			{"sftp", func() testenv.Result {
				return e.client(t, "alice").RunInput(t, strings.NewReader("put "+local+" "+remote+"\n"), "sftp", "-b", "-", "db1")
			}},
		} {
			r := tc.run()
			if r.Code == 0 || !strings.Contains(r.Stderr, "non-interactive access needs an approved access request") {
				t.Errorf("alice: %s to db1 without an approved request (try %d): want a refusal with Tandem's reason\n%s", tc.name, try, r)
			}
		}
	}
	if _, err := os.Stat(remote); err == nil {
		t.Errorf("a refused scp or sftp wrote %s", remote)
	}
	if n := e.Targets["db1"].AcceptedLogins() - before; n != 0 {
		t.Errorf("refused scp and sftp: the target saw %d login(s)", n)
	}

	e.decide(t, "bob", "approve", id, "approval recorded, 1 more needed", "--comment", "certificates expire Friday")
	e.execRefused(t, "one of two approvals", "alice", "db1")
	r = e.gw(t, "bob", "approve", id)
	if r.Code == 0 {
		t.Errorf("bob approves %s a second time: want a refusal, one person is one approver\n%s", id, r)
	}
	e.execRefused(t, "bob approved twice", "alice", "db1")

	e.decide(t, "erin", "approve", id, "request "+id+" approved: alice may use root on db1 until")
	e.execOK(t, "alice", "db1")
	// The request holds in user-name mode as well.
	n := nonce(t)
	if r := e.client(t, "alice").SSH(t, "-p", strconv.Itoa(e.GW.Port), "root%db1@127.0.0.1", "echo", "um-"+n); r.Code != 0 || strings.TrimSpace(r.Stdout) != "um-"+n {
		t.Errorf("alice: exec on db1 in user-name mode under the approved request\n%s", r)
	}
	// scp passes under the request.
	if r := e.client(t, "alice").Run(t, "scp", local, "db1:"+remote); r.Code != 0 {
		t.Errorf("alice: scp to db1 under the approved request\n%s\ngateway:\n%s", r, e.GW.Tail())
	} else if b, err := os.ReadFile(remote); err != nil || string(b) != "payload "+id+"\n" {
		t.Errorf("scp to db1: the file on the target is %q (%v)", b, err)
	}
	// The request covers alice, db1 and root only.
	e.execRefused(t, "the request names db1 only", "alice", "stg1")
	e.execRefused(t, "the request is alice's", "dave", "db1")

	// Deny: a staging request needs one approver; carol may decide it.
	sid := e.request(t, "alice", "stg1", "30m", "TICKET-8 copy test data")
	e.decideRefused(t, "carol", "deny", sid, "--reason is required")
	e.decide(t, "carol", "deny", sid, "request "+sid+" denied", "--reason", "use the anonymised set instead")
	e.execRefused(t, "request denied", "alice", "stg1")
	r = e.gw(t, "bob", "approve", sid)
	if r.Code == 0 || !strings.Contains(r.Stderr, "denied") {
		t.Errorf("bob approves the denied %s: want a refusal naming its state\n%s", sid, r)
	}
	e.execRefused(t, "approve after deny", "alice", "stg1")
	recs := e.auditOfRequest(t, sid, "request.create", "request.deny")
	if n := countType(recs, "request.approve") + countType(recs, "session.start"); n != 0 {
		t.Errorf("the denied request %s has %d approve or session events:\n%s", sid, n, fmtRequestRecords(recs))
	}

	// alice ends her own request; the audit trail of it is complete.
	e.decide(t, "alice", "revoke", id, "request "+id+" revoked", "--reason", "certificates rotated")
	e.execRefused(t, "request revoked", "alice", "db1")
	recs = e.auditOfRequest(t, id, "request.create", "request.approve", "session.start", "session.end", "request.revoke")
	if n := countType(recs, "request.approve"); n != 2 {
		t.Errorf("request %s: want 2 request.approve events (bob, erin), got %d:\n%s", id, n, fmtRequestRecords(recs))
	}
	// The two execs and the scp ran under the request.
	if n := countType(recs, "session.start"); n != 3 {
		t.Errorf("request %s: want 3 session.start events (two execs, the scp), got %d:\n%s", id, n, fmtRequestRecords(recs))
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Type)
		if strings.HasPrefix(r.Type, "session.") && (r.Host != "db1" || r.Person != "alice") {
			t.Errorf("request %s: a session event not of alice on db1: %+v", id, r)
		}
	}
	t.Logf("audit events of request %s: %s", id, strings.Join(types, " "))
	out, errOut, err := testenv.RunTandem(t, e.Bin, "audit", "show", "--config", e.Config, "--request", id)
	if err != nil {
		t.Fatalf("tandem audit show --request %s: %v\n%s", id, err, errOut)
	}
	for _, w := range []string{"request.create", "request.approve", "session.start", "session.end", "request.revoke", "request=" + id} {
		if !strings.Contains(out, w) {
			t.Errorf("tandem audit show --request %s (text) lacks %q:\n%s", id, w, out)
		}
	}
}

// TestRequestsRevokeEndsSession: revoking a request ends a live exec
// session under it at once, with a message that says why.
func TestRequestsRevokeEndsSession(t *testing.T) {
	t.Parallel()
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "db1", Env: "production"}}})
	id := e.request(t, "alice", "db1", "1h", "TICKET-9 long running migration")
	e.decide(t, "bob", "approve", id, "approved")

	run := e.startExec(t, "alice", "db1", "echo started; sleep 60; echo finished")
	if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(run.stdout.String(), "started") }) {
		t.Fatalf("the exec under request %s did not start within 20s\n%s\ngateway:\n%s", id, run, e.GW.Tail())
	}
	start := time.Now()
	r := e.decide(t, "bob", "revoke", id, "request "+id+" revoked; 1 live session(s) ended", "--reason", "migration window closed")
	returned := time.Now()
	if !run.waitExit(20 * time.Second) {
		t.Fatalf("request %s revoked: the exec under it still runs 20s later\n%s\ngateway:\n%s", id, run, e.GW.Tail())
	}
	t.Logf("revoke command took %v; start of the revoke command to the end of the exec: %v; "+
		"revoke command's answer to the end of the exec: %v", returned.Sub(start), run.exitAt.Sub(start), run.exitAt.Sub(returned))
	if d := run.exitAt.Sub(returned); d > 3*time.Second {
		t.Errorf("the exec ended %v after the revoke command answered, want < 3s", d)
	}
	want := "request " + id + " was revoked by bob"
	if !strings.Contains(run.stderr.String(), want) {
		t.Errorf("the ended exec's stderr lacks %q\n%s\nrevoke: %s", want, run, r)
	}
	t.Logf("exec's message: %q", strings.TrimSpace(firstLine(run.stderr.String(), "revoked")))
	if strings.Contains(run.stdout.String(), "finished") || exitCodeOf(run.err) == 0 {
		t.Errorf("the revoked exec must end early and fail\n%s", run)
	}
	e.execRefused(t, "request revoked", "alice", "db1")
	e.auditOfRequest(t, id, "request.create", "request.approve", "session.start", "session.end", "request.revoke")
}

// TestRequestsExpiry: a request's window ends by itself; a live exec under
// it ends with the window, and new work is refused.
func TestRequestsExpiry(t *testing.T) {
	t.Parallel()
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "db1", Env: "production"}}})
	id := e.request(t, "alice", "db1", "3s", "TICKET-10 quick restart")
	e.decide(t, "bob", "approve", id, "approved")
	approved := time.Now()

	run := e.startExec(t, "alice", "db1", "echo started; sleep 60; echo finished")
	e.execOK(t, "alice", "db1")
	if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(run.stdout.String(), "started") }) {
		t.Fatalf("the exec under request %s did not start\n%s\ngateway:\n%s", id, run, e.GW.Tail())
	}
	t.Logf("exec under the 3s request started %v after the approval", time.Since(approved))
	if !run.waitExit(30 * time.Second) {
		t.Fatalf("request %s (3s) expired: the exec under it still runs\n%s\ngateway:\n%s", id, run, e.GW.Tail())
	}
	took := run.exitAt.Sub(approved)
	t.Logf("approval to the end of the exec: %v (window 3s); message %q", took, strings.TrimSpace(firstLine(run.stderr.String(), "expired")))
	if took > 5*time.Second {
		t.Errorf("the exec ended %v after the approval of a 3s request, want ≤ 3s + 2s", took)
	}
	if want := "request " + id + " expired"; !strings.Contains(run.stderr.String(), want) {
		t.Errorf("the ended exec's stderr lacks %q\n%s", want, run)
	}
	if strings.Contains(run.stdout.String(), "finished") || exitCodeOf(run.err) == 0 {
		t.Errorf("the expired exec must end early and fail\n%s", run)
	}
	e.execRefused(t, "request expired", "alice", "db1")
	if r := e.gw(t, "alice", "requests"); strings.Contains(r.Stdout, id) {
		t.Errorf("ssh gw requests lists the expired %s\n%s", id, r)
	}
	e.auditOfRequest(t, id, "request.create", "request.approve", "session.start", "session.end", "request.expired")
}

// exitCodeOf is the exit code in a Wait error: 0 for nil, -1 when unknown.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// ansibleRun is the outcome of one ansible-playbook run.
type ansibleRun struct {
	Output   string
	Code     int
	TimedOut bool
	Took     time.Duration
}

// recapRE matches a host's line in Ansible's PLAY RECAP.
var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// recap returns a host's counters from the PLAY RECAP: ok, changed,
// unreachable, failed; ok is false when the host has no line.
func (a ansibleRun) recap(host string) (counts [4]int, ok bool) {
	for _, m := range recapRE.FindAllStringSubmatch(a.Output, -1) {
		if m[1] != host {
			continue
		}
		for i := range counts {
			counts[i], _ = strconv.Atoi(m[i+2])
		}
		return counts, true
	}
	return counts, false
}

// Ansible settings of a run, as environment variables.
var (
	// ansibleTuned is how TestRequestsAnsible runs Ansible: pipelining
	// on, as the README recommends, so that no module needs a terminal
	// (become through sudo): an approved request covers work without a
	// terminal only. TestRequestsAnsibleDefaults runs Ansible's own
	// defaults (no pipelining: -tt for every module).
	ansibleTuned = []string{"ANSIBLE_PIPELINING=True"}
	// ansibleDefaults are Ansible's own defaults.
	ansibleDefaults = []string{"ANSIBLE_PIPELINING=False", "ANSIBLE_SSH_USETTY=True"}
)

// ansibleSetup is what every playbook run of a test shares.
type ansibleSetup struct {
	Playbook       string
	Dir            string   // working directory; holds HOME and the local temp dir
	Env            []string // the environment of every run
	WorkDir        string   // where the targets write (on this machine)
	FetchDir       string   // where fetch puts files
	Marker         string   // proves that files come from this test
	InventoryHosts []string
}

// newAnsibleSetup writes an inventory and ansible.cfg that reach hosts as
// root through the gateway in jump mode with person's ssh_config, with host
// key checking on (the known_hosts file has the gateway's @cert-authority
// line, so the targets' host certificates are checked), 5 forks, and no
// SSH connection sharing, so that no ControlMaster outlives the test or
// crosses into another one.
func newAnsibleSetup(t *testing.T, e *rqEnv, person string, hosts []string) *ansibleSetup {
	t.Helper()
	playbook, err := filepath.Abs(filepath.Join("testdata", "ansible", "site.yml"))
	if err != nil {
		t.Fatalf("playbook path: %v", err)
	}
	dir := mkdir(t, e.Dir, "ansible")
	s := &ansibleSetup{
		Playbook:       playbook,
		Dir:            dir,
		WorkDir:        mkdir(t, e.Dir, "target-files"),
		FetchDir:       mkdir(t, dir, "fetched"),
		Marker:         nonce(t),
		InventoryHosts: hosts,
	}
	inv := filepath.Join(dir, "inventory.ini")
	writeTestFile(t, inv, fmt.Sprintf("[targets]\n%s\n\n[targets:vars]\nansible_user=root\nansible_ssh_common_args='-F %s'\nansible_python_interpreter=/usr/bin/python3\n",
		strings.Join(hosts, "\n"), e.client(t, person).ConfigFile))
	localTmp, remoteTmp := mkdir(t, dir, "local-tmp"), filepath.Join(e.Dir, "remote-tmp")
	cfg := filepath.Join(dir, "ansible.cfg")
	writeTestFile(t, cfg, fmt.Sprintf(`[defaults]
inventory = %s
forks = 5
host_key_checking = True
retry_files_enabled = False
local_tmp = %s
remote_tmp = %s
nocolor = True
timeout = 20
deprecation_warnings = False
interpreter_python = /usr/bin/python3

[ssh_connection]
ssh_args = -o ControlMaster=no -o ControlPath=none
retries = 0
`, inv, localTmp, remoteTmp))
	s.Env = append(ansibleEnv(t, dir, cfg, localTmp, remoteTmp), "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_FORKS=5")
	return s
}

// ansibleEnv is the environment of an ansible-playbook run: this
// process's, less a developer's own ANSIBLE_* settings and HOME, plus a
// HOME in dir, the configuration file cfg and the temporary directories.
func ansibleEnv(t *testing.T, dir, cfg, localTmp, remoteTmp string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ANSIBLE_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env,
		"HOME="+mkdir(t, dir, "home"),
		"ANSIBLE_CONFIG="+cfg,
		"ANSIBLE_LOCAL_TEMP="+localTmp,
		"ANSIBLE_REMOTE_TEMP="+remoteTmp,
		"ANSIBLE_NOCOLOR=1",
	)
}

// run runs the playbook with the given settings (environment variables)
// and a 3-minute deadline. ansible-playbook runs in its own process group,
// which is killed at the deadline with every ssh it started.
func (s *ansibleSetup) run(t *testing.T, settings []string) ansibleRun {
	t.Helper()
	return runAnsible(t, s.Dir, append(append([]string{}, s.Env...), settings...),
		"-e", "work_dir="+s.WorkDir, "-e", "fetch_dir="+s.FetchDir, "-e", "marker="+s.Marker, s.Playbook)
}

// runAnsible runs ansible-playbook with args in dir and env, with a
// 3-minute deadline, in its own process group, which is killed at the
// deadline with every ssh it started.
func runAnsible(t *testing.T, dir string, env []string, args ...string) ansibleRun {
	t.Helper()
	bin := testenv.RequireProgram(t, "ansible-playbook")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return testenv.KillGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	// Forked workers may outlive a killed ansible-playbook in its group.
	_ = testenv.KillGroup(cmd)
	return ansibleRun{Output: out.String(), Code: exitCodeOf(err), TimedOut: ctx.Err() != nil, Took: time.Since(start)}
}

// refusedRun checks that a playbook run failed on every host with Tandem's
// refusal and reached no target.
func (s *ansibleSetup) refusedRun(t *testing.T, e *rqEnv, why string, settings []string) {
	t.Helper()
	before := map[string]int{}
	for h, tg := range e.Targets {
		before[h] = tg.AcceptedLogins()
	}
	a := s.run(t, settings)
	t.Logf("%s: ansible-playbook exit %d after %v", why, a.Code, a.Took)
	if a.Code == 0 || a.TimedOut {
		t.Errorf("%s: want the playbook to fail at once (exit %d, timed out %v)\nansible output:\n%s", why, a.Code, a.TimedOut, a.Output)
	}
	const refusal = "non-interactive access needs an approved access request"
	if !strings.Contains(a.Output, refusal) {
		t.Errorf("%s: Ansible's output lacks Tandem's refusal %q\nansible output:\n%s\ngateway:\n%s", why, refusal, a.Output, e.GW.Tail())
	} else {
		t.Logf("%s: %s", why, clipTail(strings.TrimSpace(firstLine(a.Output, refusal)), 400))
	}
	for _, h := range s.InventoryHosts {
		if c, ok := a.recap(h); !ok || c[2]+c[3] == 0 {
			t.Errorf("%s: want %s failed or unreachable in the PLAY RECAP (got %v, found %v)\nansible output:\n%s", why, h, c, ok, a.Output)
		}
		if after := e.Targets[h].AcceptedLogins(); after != before[h] {
			t.Errorf("%s: %s saw %d login(s) from a refused run", why, h, after-before[h])
		}
	}
}

// greenRun runs the playbook under the approved request id and checks that
// every task passed on every host, that the copied, templated and fetched
// files have the right content, that each host's own sshd saw alice's
// certificate logins, and that the audit log has the sessions under id.
func (s *ansibleSetup) greenRun(t *testing.T, e *rqEnv, id string, settings []string) {
	t.Helper()
	a := s.run(t, settings)
	t.Logf("approved: ansible-playbook exit %d after %v", a.Code, a.Took)
	if a.Code != 0 || a.TimedOut {
		t.Fatalf("under the approved request %s the playbook must run green (exit %d, timed out %v)\nansible output:\n%s\ngateway:\n%s",
			id, a.Code, a.TimedOut, a.Output, e.GW.Tail())
	}
	for _, h := range s.InventoryHosts {
		c, ok := a.recap(h)
		// fact gathering and 9 tasks
		if !ok || c[0] < 10 || c[2] != 0 || c[3] != 0 {
			t.Errorf("PLAY RECAP for %s: want ok ≥ 10, unreachable=0, failed=0; got ok=%d changed=%d unreachable=%d failed=%d (found %v)\nansible output:\n%s",
				h, c[0], c[1], c[2], c[3], ok, a.Output)
		}
		t.Logf("PLAY RECAP %s: ok=%d changed=%d unreachable=%d failed=%d", h, c[0], c[1], c[2], c[3])
	}
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatalf("read the kernel release: %v", err)
	}
	for _, h := range s.InventoryHosts {
		checkFile(t, filepath.Join(s.WorkDir, h, "copied.txt"), fmt.Sprintf("copied to %s in run %s\n", h, s.Marker))
		motd := fmt.Sprintf("host: %s\nrun: %s\nkernel: %s\nmanaged through Tandem\n", h, s.Marker, strings.TrimSpace(string(release)))
		checkFile(t, filepath.Join(s.WorkDir, h, "motd"), motd)
		checkFile(t, filepath.Join(s.FetchDir, h+".motd"), motd)
		// Each host's work went to its own sshd, as alice, with the
		// gateway's certificates.
		logins := e.Targets[h].AcceptedCertLogins()
		if len(logins) == 0 {
			t.Errorf("%s's sshd saw no certificate login during the green run", h)
		}
		for _, l := range logins {
			if l.User != "root" || !strings.Contains(l.ID, "person=alice") {
				t.Errorf("%s's sshd saw a login that is not alice as root: %+v", h, l)
			}
		}
		t.Logf("%s's sshd saw %d certificate logins", h, len(logins))
	}
	recs := e.auditOfRequest(t, id, "request.create", "request.approve", "session.start", "session.end")
	perHost := map[string]map[string]int{}
	for _, r := range recs {
		if r.Type == "session.start" {
			if perHost[r.Host] == nil {
				perHost[r.Host] = map[string]int{}
			}
			perHost[r.Host][r.Attrs["action"]]++
		}
	}
	for _, h := range s.InventoryHosts {
		if perHost[h]["exec"] == 0 || perHost[h]["sftp"] == 0 {
			t.Errorf("audit of request %s: want exec and sftp sessions on %s, got %v", id, h, perHost[h])
		}
	}
	t.Logf("sessions under request %s by host and action: %v", id, perHost)
}

// TestRequestsAnsible runs a real playbook against two production hosts
// (two sshds, on 127.0.0.1 and 127.0.0.2) through the gateway in jump
// mode: refused without a request and before the approval, green once a
// colleague approved one, refused again after the revocation.
func TestRequestsAnsible(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ansible-playbook")
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{
		{Name: "db1", Env: "production", Listen: "127.0.0.1"},
		{Name: "db2", Env: "production", Listen: "127.0.0.2"},
	}})
	s := newAnsibleSetup(t, e, "alice", []string{"db1", "db2"})

	s.refusedRun(t, e, "before any request", ansibleTuned)
	id := e.request(t, "alice", "db1,db2", "1h", "TICKET-7 deploy config")
	s.refusedRun(t, e, "request not yet approved", ansibleTuned)
	e.decide(t, "bob", "approve", id, "request "+id+" approved: alice may use root on db1, db2 until")
	s.greenRun(t, e, id, ansibleTuned)
	e.decide(t, "bob", "revoke", id, "request "+id+" revoked", "--reason", "deploy finished")
	s.refusedRun(t, e, "request revoked", ansibleTuned)
}

// TestRequestsAcrossNodes: two gateways on one PostgreSQL state store. A
// request made and approved through node b lets Ansible through node a;
// revoked through b, the next run through a is refused.
func TestRequestsAcrossNodes(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ansible-playbook")
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "db1", Env: "production"}}, TwoNodes: true})
	b := e.nodeB(t)
	s := newAnsibleSetup(t, e, "alice", []string{"db1"}) // Ansible goes through node a
	id := b.request(t, "alice", "db1", "1h", "TICKET-9 deploy through the other node")
	b.decide(t, "bob", "approve", id, "request "+id+" approved")
	s.greenRun(t, e, id, ansibleTuned)
	b.decide(t, "bob", "revoke", id, "request "+id+" revoked", "--reason", "done")
	s.refusedRun(t, e, "request revoked on the other node", ansibleTuned)
}

// TestRequestsAnsibleDefaults runs the playbook with Ansible's own
// defaults — no pipelining, `ssh -tt` for every module. An approved request
// covers work without a terminal only: a terminal under a request would be
// interactive root work without the second person M6 demands. So under a
// plain request the run fails and Tandem names the fix; under a request
// made with --tty, which the approver accepted with --terminals, it runs
// green, each module's terminal recorded like a four-eyes session.
func TestRequestsAnsibleDefaults(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ansible-playbook")
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "db1", Env: "production"}}, WaitTimeout: 15 * time.Second})
	s := newAnsibleSetup(t, e, "alice", []string{"db1"})
	id := e.request(t, "alice", "db1", "1h", "TICKET-7 deploy config")
	e.decide(t, "bob", "approve", id, "approved")
	a := s.run(t, ansibleDefaults)
	const fix = "covers commands without a terminal only"
	if a.Code == 0 || !strings.Contains(a.Output, fix) || !strings.Contains(a.Output, "pipelining") {
		t.Errorf("Ansible's defaults under a plain request: want a failed run naming %q and pipelining (exit %d)\nansible output:\n%s", fix, a.Code, a.Output)
	}
	e.decide(t, "alice", "revoke", id, "revoked", "--reason", "needs a request with terminals")

	r := e.gw(t, "alice", "request", "--hosts", "db1", "--login", "root", "--for", "1h", "--tty", "--reason", "TICKET-8 Ansible with defaults")
	m := requestIDRE.FindStringSubmatch(r.Stdout)
	if r.Code != 0 || m == nil || !strings.Contains(r.Stdout, "WITH TERMINALS") {
		t.Fatalf("ssh gw request --tty: want a request that says it asks for terminals\n%s", r)
	}
	tty := m[1]
	if l := e.gw(t, "bob", "requests"); !strings.Contains(l.Stdout, "YES") {
		t.Errorf("ssh gw requests does not show the approver that %s asks for terminals:\n%s", tty, l)
	}
	e.decideRefused(t, "bob", "approve", tty, "asks for terminals")
	e.decide(t, "bob", "approve", tty, "WITH TERMINALS", "--terminals")
	s.greenRun(t, e, tty, ansibleDefaults)
	kinds := map[string]int{}
	for _, rec := range e.auditOfRequest(t, tty, "session.start") {
		if rec.Type == "session.start" && rec.Attrs["terminal"] == "true" {
			kinds["terminal"]++
		}
	}
	if kinds["terminal"] == 0 {
		t.Errorf("no session under %s was recorded as a terminal session", tty)
	}
}

// checkFile compares a file's content with want.
func checkFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if string(b) != want {
		t.Errorf("%s: got %q, want %q", path, b, want)
	}
}
