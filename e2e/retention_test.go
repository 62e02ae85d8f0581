package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// The three tenants of the retention test: one with the default periods
// only, one whose operational data is extended, one under a legal hold.
const (
	plainT    = "mandant-a"
	extendedT = "mandant-b"
	heldT     = "mandant-c"
	// gatewayT holds the events of no tenant (logins).
	gatewayT = "_gateway"
)

// shredEnv is the retention test's setup: a real sshd as the host of each
// tenant, a gateway and every tandem command on a clock the test
// moves by whole days, and an SMTP server that receives the DPO notices.
type shredEnv struct {
	Dir, Config, DataDir string
	GW                   *testenv.Gateway
	Alice                *testenv.Client
	clockFile            string
	mbox                 string
	targetPorts          []int
	// midnight starts the test's day 0 (UTC); the clock is moved to noon
	// of each day, so a run near midnight sees every step on its day.
	midnight time.Time
}

// day is the date of the test's day d, as the vault and the log write it.
func (e *shredEnv) day(d int) string { return e.midnight.AddDate(0, 0, d).Format(time.DateOnly) }

// hostOf is the host name of a tenant's target.
func hostOf(tenant string) string { return "host-" + strings.TrimPrefix(tenant, "mandant-") }

func newShredEnv(t *testing.T) *shredEnv {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	smtpAddr, smtpCA, mbox := testenv.StartSMTP(t)
	e := &shredEnv{Dir: dir, Config: filepath.Join(dir, "tandem.yaml"), DataDir: filepath.Join(dir, "data"),
		clockFile: filepath.Join(dir, "clock-offset"), mbox: mbox, midnight: testenv.Day(0).Time}
	e.setDay(t, 0)
	clockEnv := []string{"TANDEM_TEST_CLOCK_FILE=" + e.clockFile}

	aliceKey, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "target_host", "ecdsa")
	gwPort := testenv.FreePort(t)
	// One sshd per tenant: the configuration refuses one machine reachable
	// under two tenants.
	sshdPorts := map[string]int{}

	cfg := testenv.NewConfig(gwPort, e.DataDir,
		config.Tenant{ID: plainT, Name: "Mandant A"}, config.Tenant{ID: extendedT, Name: "Mandant B"}, config.Tenant{ID: heldT, Name: "Mandant C"})
	cfg.Retention.DPO = config.DPO{To: "dpo@example.org", From: "tandem@example.org",
		SMTP: &config.SMTP{Addr: smtpAddr, CAFile: smtpCA, StartTLS: config.StartTLSRequired}}
	// alice logs in to every tenant's host, reads their recordings and
	// places holds.
	keeper := role("keeper", "root on every tenant's host, reads recordings, places legal holds")
	keeper.Permissions = []string{config.PermissionHold}
	jump := map[string]string{}
	for _, tn := range []string{plainT, extendedT, heldT} {
		keeper.Allow = append(keeper.Allow, config.Rule{Hosts: config.Selector{Tenant: tn}, Logins: root, Read: true, Audit: true})
		sshdPorts[tn] = testenv.FreePort(t)
		cfg.Hosts = append(cfg.Hosts, config.Host{Name: hostOf(tn), Address: fmt.Sprintf("127.0.0.1:%d", sshdPorts[tn]),
			Tenant: tn, Environment: config.Test, HostKey: hostPub})
		jump[hostOf(tn)] = "root"
	}
	cfg.Roles = []config.Role{keeper}
	cfg.Persons = []config.Person{testenv.Person("alice", alicePub, "keeper")}
	writeConfig(t, e.Config, cfg)

	userCA := caPublic(t, bin, e.Config, "user")
	for _, port := range sshdPorts {
		e.targetPorts = append(e.targetPorts, port)
		testenv.StartSSHD(t, testenv.TargetOpts{Port: port, HostKeyFile: hostKey, UserCA: userCA})
	}
	e.GW = testenv.StartGatewayEnv(t, bin, e.Config, gwPort, clockEnv)
	e.Alice = testenv.NewClient(t, mkdir(t, dir, "alice"), testenv.ClientOpts{
		Key: aliceKey, Person: "alice", GatewayPort: gwPort,
		KnownHosts: []string{certAuthorityLine(t, e.GW)}, JumpHosts: jump,
	})
	return e
}

// setDay moves every tandem process of the test to noon of day d. The
// offset file is replaced by a rename, so no process reads half of it.
// The processes re-read it every 50 ms; waiting a few times that lets the
// running gateway follow before the next step.
func (e *shredEnv) setDay(t *testing.T, d int) {
	t.Helper()
	offset := time.Until(e.midnight.Add(12*time.Hour).AddDate(0, 0, d))
	tmp := e.clockFile + ".new"
	writeTestFile(t, tmp, offset.String())
	if err := os.Rename(tmp, e.clockFile); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
}

// tandem runs a tandem command on the test's clock and fails the test if
// it fails.
func (e *shredEnv) tandem(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := e.GW.Run(t, append(args, "--config", e.Config)...)
	if err != nil {
		t.Fatalf("tandem %s: %v\nstdout: %s\nstderr: %s\ngateway:\n%s", strings.Join(args, " "), err, out, errOut, e.GW.Tail())
	}
	return out
}

// session runs one exec session on tenant's host that prints marker.
func (e *shredEnv) session(t *testing.T, tenant, command, marker string) {
	t.Helper()
	r := e.Alice.SSH(t, hostOf(tenant), command)
	if r.Code != 0 || !strings.Contains(r.Stdout, marker) {
		t.Fatalf("session on %s: %s\ngateway:\n%s", hostOf(tenant), r, e.GW.Tail())
	}
}

// show runs `tandem audit show --json` with filter flags.
func (e *shredEnv) show(t *testing.T, filter ...string) []shownEvent {
	t.Helper()
	return shownEvents(t, e.tandem(t, append([]string{"audit", "show", "--json"}, filter...)...))
}

// starts returns the session.start records of tenant on day (YYYY-MM-DD,
// by the records' clear time), in log order.
func (e *shredEnv) starts(t *testing.T, tenant, day string) []shownEvent {
	t.Helper()
	var out []shownEvent
	for _, r := range e.show(t, "--tenant", tenant, "--type", "session.start") {
		if r.Time.UTC().Format(time.DateOnly) == day {
			out = append(out, r)
		}
	}
	return out
}

// destroyedLine matches a destruction `tandem retention run` reports.
var destroyedLine = regexp.MustCompile(`(?m)^destroyed (\S+) (\S+) (\S+): `)

// retentionRun runs `tandem retention run`, waits (bounded) until the
// gateway has appended every key.destroyed event it queued, and returns
// the destructions as "tenant class day", sorted.
func (e *shredEnv) retentionRun(t *testing.T) []string {
	t.Helper()
	before := len(e.show(t, "--type", "key.destroyed"))
	out := e.tandem(t, "retention", "run")
	var got []string
	for _, m := range destroyedLine.FindAllStringSubmatch(out, -1) {
		got = append(got, m[2]+" "+m[1]+" "+m[3])
	}
	slices.Sort(got)
	var n int
	if !testenv.WaitFor(10*time.Second, func() bool {
		n = len(e.show(t, "--type", "key.destroyed"))
		return n >= before+len(got)
	}) {
		t.Fatalf("retention run destroyed %d keys, but the log holds %d new key.destroyed events after 10s\nrun: %s\ngateway:\n%s",
			len(got), n-before, out, e.GW.Tail())
	}
	return got
}

// verify runs `tandem audit verify` and `--deep`, fails the test unless
// both say OK, and returns the shredded parts --deep reports as "tenant
// class day", sorted.
func (e *shredEnv) verify(t *testing.T) []string {
	t.Helper()
	if out := e.tandem(t, "audit", "verify"); !strings.Contains(out, "result:          OK") {
		t.Fatalf("audit verify:\n%s", out)
	}
	out := e.tandem(t, "audit", "verify", "--deep")
	if !strings.Contains(out, "result:          OK") {
		t.Fatalf("audit verify --deep:\n%s", out)
	}
	var shredded []string
	for _, m := range regexp.MustCompile(`(?m)^shredded: (\S+) (\S+) (\S+) \(\d+ parts\)$`).FindAllStringSubmatch(out, -1) {
		shredded = append(shredded, m[1]+" "+m[2]+" "+m[3])
	}
	slices.Sort(shredded)
	return shredded
}

// classStatus is one tenant's class in `tandem retention status --json`.
type classStatus struct {
	Keys, Destroyed, Held int
	NextDestruction       string `json:"next_destruction"`
}

// status returns `tandem retention status --json` by "tenant class".
func (e *shredEnv) status(t *testing.T) map[string]classStatus {
	t.Helper()
	var s struct {
		Classes []struct {
			Tenant, Class string
			classStatus
		}
	}
	out := e.tandem(t, "retention", "status", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("retention status --json: %v\n%s", err, out)
	}
	m := map[string]classStatus{}
	for _, c := range s.Classes {
		m[c.Tenant+" "+c.Class] = c.classStatus
	}
	return m
}

// export runs `tandem recording export` of session as alice and returns
// the asciicast, or the error output.
func (e *shredEnv) export(t *testing.T, session string) (cast, stderr string, err error) {
	t.Helper()
	out := filepath.Join(e.Dir, "export-"+nonce(t)+".cast")
	_, stderr, err = e.GW.Run(t, "recording", "export", session, "--as", "alice", "--out", out, "--config", e.Config)
	if b, rerr := os.ReadFile(out); rerr == nil {
		cast = string(b)
	}
	return cast, stderr, err
}

// want fails the test unless got lists exactly the wanted entries.
func want(t *testing.T, what string, got []string, wanted ...string) {
	t.Helper()
	slices.Sort(wanted)
	if !slices.Equal(got, wanted) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, wanted)
	}
}

// TestCryptoShreddingOverDays moves the clock of a gateway and of the
// retention commands through 91 days: sessions of three tenants on day 0
// and day 2 lose, by crypto-shredding, first their source addresses
// (operational, after 3 days), then who did what and the recordings
// (admin and content, after 90 days), class by class and day by day,
// while the log keeps verifying. An extension keeps one tenant's
// addresses longer and notifies the DPO by e-mail; a legal hold keeps
// every key of another until it is released. Nothing a person typed or
// where they came from lies anywhere in data_dir in plaintext, and one
// tenant's key does not open another's data.
func TestCryptoShreddingOverDays(t *testing.T) {
	t.Parallel()
	e := newShredEnv(t)
	tenants := []string{plainT, extendedT, heldT}
	day0, day2 := e.day(0), e.day(2)
	tag := strings.ToUpper(nonce(t))
	// The command computes its marker, so the command line (content, in
	// the log) and the output (content, in the recording) are different
	// strings to look for.
	command := func(tn string, d int) (cmd, marker string) {
		m := fmt.Sprintf("MARKER-%s-%s%d", tag, strings.ToUpper(hostOf(tn)), d)
		return fmt.Sprintf("echo %s-$((%d+1))", m, d), fmt.Sprintf("%s-%d", m, d+1)
	}
	var needles []string

	// Day 0: a session per tenant, the extension of B, the hold on C.
	sessions := map[string]string{} // tenant/day → session id
	runDay := func(d int) {
		for _, tn := range tenants {
			cmd, marker := command(tn, d)
			needles = append(needles, cmd, marker)
			e.session(t, tn, cmd, marker)
			rs := e.starts(t, tn, e.day(d))
			if len(rs) != 1 || rs[0].Session == "" || rs[0].Attrs["command"] != cmd || rs[0].Source == "" {
				t.Fatalf("session.start of %s on %s (the clock should be there): %+v", tn, e.day(d), rs)
			}
			sessions[fmt.Sprintf("%s/%d", tn, d)] = rs[0].Session
			needles = append(needles, rs[0].Source)
			t.Logf("%s day %d: session %s from %s", tn, d, rs[0].Session, rs[0].Source)
		}
	}
	runDay(0)
	ref := "REF-" + tag
	out := e.tandem(t, "retention", "extend", "--tenant", extendedT, "--class", "operational", "--until", e.day(6), "--request-ref", ref, "--by", "alice")
	if !strings.Contains(out, "DPO notice delivered") {
		t.Errorf("retention extend did not deliver the DPO notice:\n%s", out)
	}
	mail, err := os.ReadFile(e.mbox)
	if err != nil {
		t.Fatalf("the SMTP server received no DPO notice: %v", err)
	}
	for _, w := range []string{"To: dpo@example.org", extendedT, ref} {
		if !bytes.Contains(mail, []byte(w)) {
			t.Errorf("DPO notice lacks %q:\n%s", w, mail)
		}
	}
	out = e.tandem(t, "hold", "--tenant", heldT, "--reason", "court order", "--ref", "AZ-"+tag, "--by", "alice")
	m := regexp.MustCompile(`^hold (\S+) placed on tenant`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("tandem hold: unexpected output %q", out)
	}
	holdID := m[1]

	// Day 2: the same sessions again.
	e.setDay(t, 2)
	runDay(2)

	// Day 4: A's day-0 addresses (and the logins' of _gateway) are due;
	// B's are extended, C's held.
	e.setDay(t, 4)
	want(t, "day 4: keys destroyed", e.retentionRun(t),
		plainT+" operational "+day0, gatewayT+" operational "+day0)
	want(t, "day 4: audit verify --deep shredded", e.verify(t),
		plainT+" operational "+day0, gatewayT+" operational "+day0)
	a0 := e.starts(t, plainT, day0)
	if len(a0) != 1 || a0[0].Person != "alice" || a0[0].Session != sessions[plainT+"/0"] || a0[0].Source != "" ||
		!slices.Equal(a0[0].unreadable(), []string{"operational " + day0 + " shredded"}) {
		t.Errorf("day 4: A's day-0 session.start should name alice and its session but not its source (shredded): %+v", a0)
	}
	for _, tn := range tenants {
		for _, d := range []string{day0, day2} {
			if tn == plainT && d == day0 {
				continue
			}
			rs := e.starts(t, tn, d)
			if len(rs) != 1 || rs[0].Source == "" || len(rs[0].Unreadable) != 0 {
				t.Errorf("day 4: %s's session.start of %s should be readable with its source: %+v", tn, d, rs)
			}
		}
	}
	// The running gateway cached the key the run destroyed when it wrote
	// day 0; read through it, A's day-0 source is gone all the same.
	r := e.Alice.SSH(t, "gw", "audit", "show", "--json", "--since", "200h", "--type", "session.start")
	if r.Code != 0 {
		t.Fatalf("day 4: ssh gw audit show: %s", r)
	}
	seen := 0
	for _, rec := range shownEvents(t, r.Stdout) {
		if rec.Session == sessions[plainT+"/0"] {
			seen++
			if rec.Source != "" || rec.Person != "alice" {
				t.Errorf("day 4: the running gateway shows A's day-0 session.start with its source: %+v", rec)
			}
		}
	}
	if seen != 1 {
		t.Errorf("day 4: ssh gw audit show lists A's day-0 session.start %d times:\n%s", seen, r.Stdout)
	}
	// A second run the same day does nothing more.
	want(t, "day 4: second run", e.retentionRun(t))

	// Day 7: the extension is over, so B's addresses of day 0 and day 2
	// go, with everyone's of day 2; C's stay held.
	e.setDay(t, 7)
	want(t, "day 7: keys destroyed", e.retentionRun(t),
		plainT+" operational "+day2, extendedT+" operational "+day0, extendedT+" operational "+day2,
		gatewayT+" operational "+day2)
	if rs := e.starts(t, extendedT, day0); len(rs) != 1 || rs[0].Source != "" || rs[0].Person != "alice" {
		t.Errorf("day 7: B's day-0 session.start should have lost its source only: %+v", rs)
	}
	if rs := e.starts(t, heldT, day0); len(rs) != 1 || rs[0].Source == "" {
		t.Errorf("day 7: C's day-0 session.start should keep its source under the hold: %+v", rs)
	}
	status := e.status(t)
	if c := status[heldT+" operational"]; c.Held != 2 || c.Destroyed != 0 {
		t.Errorf("day 7: retention status of C's operational keys: %+v, want 2 held, none destroyed", c)
	}
	if c := status[extendedT+" operational"]; c.Destroyed != 2 || c.Held != 0 {
		t.Errorf("day 7: retention status of B's operational keys: %+v, want 2 destroyed", c)
	}

	// Day 91: the admin record and the recordings of day 0 are due, but
	// not C's. The log still verifies; day 2 is still readable.
	e.setDay(t, 91)
	var wantDay91 []string
	for _, tn := range []string{plainT, extendedT} {
		wantDay91 = append(wantDay91, tn+" admin "+day0, tn+" content "+day0)
	}
	// The login for `ssh gw audit show` on day 4 left _gateway an
	// operational key of day 4, due on day 8.
	wantDay91 = append(wantDay91, gatewayT+" admin "+day0, gatewayT+" operational "+e.day(4))
	want(t, "day 91: keys destroyed", e.retentionRun(t), wantDay91...)
	shredded := e.verify(t)
	for _, w := range wantDay91 {
		if !slices.Contains(shredded, w) {
			t.Errorf("day 91: audit verify --deep does not report %q shredded: %q", w, shredded)
		}
	}
	for _, s := range shredded {
		if strings.HasPrefix(s, heldT+" ") {
			t.Errorf("day 91: a part of the held tenant is shredded: %s", s)
		}
	}
	if rs := e.starts(t, plainT, day0); len(rs) != 1 || rs[0].Person != "" || rs[0].Session != "" || rs[0].Attrs["command"] != "" {
		t.Errorf("day 91: A's day-0 session.start should keep only its clear fields: %+v", rs)
	}
	if _, stderr, err := e.export(t, sessions[plainT+"/0"]); err == nil || !strings.Contains(stderr, "shredded") {
		t.Errorf("day 91: export of A's day-0 recording: err %v, stderr %q; want a refusal naming the shredding", err, stderr)
	}
	_, marker2 := command(plainT, 2)
	if cast, stderr, err := e.export(t, sessions[plainT+"/2"]); err != nil || !strings.Contains(cast, marker2) {
		t.Errorf("day 91: export of A's day-2 recording: err %v, stderr %q, cast has marker %v", err, stderr, strings.Contains(cast, marker2))
	}
	if rs := e.starts(t, heldT, day0); len(rs) != 1 || rs[0].Person != "alice" || rs[0].Source == "" {
		t.Errorf("day 91: C's day-0 session.start should be whole under the hold: %+v", rs)
	}
	_, markerC0 := command(heldT, 0)
	if cast, stderr, err := e.export(t, sessions[heldT+"/0"]); err != nil || !strings.Contains(cast, markerC0) {
		t.Errorf("day 91: export of C's day-0 recording under the hold: err %v, stderr %q", err, stderr)
	}

	// Released, the hold keeps nothing: C's overdue keys go at once.
	e.tandem(t, "hold", "release", holdID, "--by", "alice")
	want(t, "day 91: keys destroyed after the release", e.retentionRun(t),
		heldT+" operational "+day0, heldT+" operational "+day2, heldT+" admin "+day0, heldT+" content "+day0)
	if sh := e.verify(t); !slices.Contains(sh, heldT+" admin "+day0) || !slices.Contains(sh, heldT+" operational "+day2) {
		t.Errorf("after the release, audit verify --deep does not report C's days shredded: %q", sh)
	}

	e.noPlaintext(t, needles)
	e.foreignKey(t, day2)
}

// noPlaintext fails the test if any file under data_dir holds a needle
// in plaintext, or the loopback address other than in the gateway's and
// the targets' own addresses (configuration, not a person's data: the
// state store names each running gateway by its listen address).
func (e *shredEnv) noPlaintext(t *testing.T, needles []string) {
	t.Helper()
	const loopback = "127.0.0.1"
	allowed := []string{e.GW.Addr}
	for _, port := range e.targetPorts {
		allowed = append(allowed, fmt.Sprintf("%s:%d", loopback, port))
	}
	files := testenv.EachFile(t, e.DataDir, func(p string, _ fs.DirEntry, b []byte) {
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%q is in plaintext in %s", n, p)
			}
		}
		for i := 0; ; i++ {
			j := bytes.Index(b[i:], []byte(loopback))
			if j < 0 {
				break
			}
			i += j
			if !slices.ContainsFunc(allowed, func(a string) bool { return bytes.HasPrefix(b[i:], []byte(a)) && !isDigit(b, i+len(a)) }) {
				t.Errorf("a loopback address is in plaintext in %s at %d: %q", p, i, b[i:min(len(b), i+len(loopback)+8)])
			}
		}
	})
	t.Logf("searched %d files under data_dir for %d markers, command lines and source addresses", files, len(needles))
}

// isDigit reports whether b has a decimal digit at i.
func isDigit(b []byte, i int) bool { return i < len(b) && b[i] >= '0' && b[i] <= '9' }

// foreignKey puts tenant B's admin key of day in tenant A's place, with
// A's tenant and key id written over B's in the key file, as someone who
// can write the vault would: A's records of that day do not decrypt
// (and are not shown as B's plaintext), and deep verification fails.
func (e *shredEnv) foreignKey(t *testing.T, day string) {
	t.Helper()
	dir := filepath.Join(e.DataDir, "vault", "admin-keys")
	aPath, bPath := filepath.Join(dir, plainT, day+".key"), filepath.Join(dir, extendedT, day+".key")
	aRaw, err := os.ReadFile(aPath)
	if err != nil {
		t.Fatalf("A's admin key of %s: %v", day, err)
	}
	bRaw, err := os.ReadFile(bPath)
	if err != nil {
		t.Fatalf("B's admin key of %s: %v", day, err)
	}
	var aKey, bKey map[string]any
	if json.Unmarshal(aRaw, &aKey) != nil || json.Unmarshal(bRaw, &bKey) != nil {
		t.Fatalf("key files are not JSON:\n%s\n%s", aRaw, bRaw)
	}
	bKey["tenant"], bKey["id"] = aKey["tenant"], aKey["id"]
	forged, err := json.Marshal(bKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, aPath, string(forged))
	defer writeTestFile(t, aPath, string(aRaw))

	rs := e.starts(t, plainT, day)
	if len(rs) != 1 || rs[0].Person != "" || rs[0].Session != "" || rs[0].Attrs["command"] == "" ||
		!slices.Contains(rs[0].unreadable(), "admin "+day+" corrupt") {
		t.Errorf("A's session.start of %s with B's admin key in A's place: want its admin part unreadable (corrupt), its content readable: %+v", day, rs)
	}
	out, _, err := e.GW.Run(t, "audit", "verify", "--deep", "--config", e.Config)
	if err == nil || strings.Contains(out, "result:          OK") {
		t.Errorf("audit verify --deep passes with B's key in A's place:\n%s", out)
	}
}
