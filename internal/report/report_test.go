package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/audit/audittest"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/vault"
)

var day0 = time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)

type testLog = audittest.Log

// newTestLog is a log of events appended with the typed constructors as
// the gateway writes them, from day0 on.
func newTestLog(t testing.TB, events ...audit.Event) *testLog {
	t.Helper()
	return audittest.New(t, day0, events...)
}

func yes() *bool { b := true; return &b }

// scenario is a four-eyes session with a second person, a session under a
// request ended by a lock, a refusal, an export, a key destruction — and
// globex's and the gateway's own events in between.
func scenario() []audit.Event {
	acme := audit.Target{Person: "alice", Source: "192.0.2.7:5000", Session: "s1", Tenant: "acme", Host: "db1", Login: "root"}
	req := audit.Target{Person: "dave", Source: "192.0.2.8:5000", Session: "s2", Tenant: "acme", Host: "web1", Login: "deploy", Request: "r42"}
	other := audit.Target{Person: "gustav", Source: "198.51.100.9:4000", Session: "g1", Tenant: "globex", Host: "gx1", Login: "root"}
	zero := uint32(0)
	return []audit.Event{
		audit.AuthSuccessEvent{Conn: audit.Conn{Person: "alice"}, Method: "publickey", Key: "SHA256:alice"}.Event(),
		audit.SessionStartEvent{Target: acme, Action: "shell", Mode: "jump", FourEyes: yes()}.Event(),
		audit.SessionStateEvent{State: audit.SessionWaiting, Target: acme, Reason: "waiting for a second person"}.Event(),
		audit.SessionStartEvent{Target: other, Action: "shell", Mode: "user"}.Event(),
		audit.SessionJoinEvent{Target: acme, Participant: "bob", Mode: "peer"}.Event(),
		audit.SessionStateEvent{State: audit.SessionLive, Target: acme, Reason: "bob joined"}.Event(),
		audit.RequestCreateEvent{RequestRef: audit.RequestRef{Conn: audit.Conn{Person: "dave"}, Request: "r42", Tenant: "acme", Hosts: []string{"web1"}, Login: "deploy", Requester: "dave"},
			Duration: time.Hour, Reason: "TICKET-7 deploy"}.Event(),
		audit.RequestApproveEvent{RequestRef: audit.RequestRef{Conn: audit.Conn{Person: "alice"}, Request: "r42", Tenant: "acme", Hosts: []string{"web1"}, Login: "deploy", Requester: "dave"},
			Comment: "fine by me", Approvals: 1, ValidUntil: day0.Add(3 * time.Hour)}.Event(),
		audit.RequestCreateEvent{RequestRef: audit.RequestRef{Conn: audit.Conn{Person: "gustav"}, Request: "g7", Tenant: "globex", Hosts: []string{"gx1"}, Login: "root", Requester: "gustav"},
			Duration: time.Hour, Reason: "globex-secret-purpose"}.Event(),
		audit.SessionStartEvent{Target: req, Action: "exec", Mode: "user", Command: "uptime"}.Event(),
		audit.SessionDeniedEvent{Target: audit.Target{Person: "mallory", Tenant: "acme", Host: "db1", Login: "root"}, Reason: "no grant for root on db1"}.Event(),
		audit.SessionDeniedEvent{Target: audit.Target{Person: "gustav", Tenant: "globex", Host: "gx1", Login: "root"}, Reason: "globex-secret-reason"}.Event(),
		audit.LockEvent{Person: "dave", By: "alice", Reason: "left the company"}.Event(),
		audit.SessionEndEvent{Target: req, Reason: "locked by alice: left the company"}.Event(),
		audit.SessionLeaveEvent{Target: acme, Participant: "bob", Reason: "left"}.Event(),
		audit.SessionEndEvent{Target: acme, Reason: "target closed", ExitStatus: &zero, RecordingSummary: &audit.RecordingSummary{Path: "x", SHA256: strings.Repeat("ab", 32)}}.Event(),
		audit.RecordingExportEvent{Recording: audit.Recording{Person: "rita", Session: "s1", Tenant: "acme", Host: "db1", Owner: "alice"}}.Event(),
		audit.SessionEndEvent{Target: other}.Event(),
		audit.KeyDestroyedEvent{Tenant: "acme", Class: "operational", Day: "2030-03-01", KeyID: "k1", Reason: "operational period ended"}.Event(),
		// A disclosure case about acme whose notice a hold withholds: the
		// gateway's record, never in acme's report.
		audit.DisclosureRequestedEvent{Conn: audit.Conn{Person: "lena"}, DisclosureCase: audit.DisclosureCase{Tenant: "acme", ID: "c1"},
			Scope: "session:s1", LegalBasis: "secret-order", Reason: "secret-investigation", Contact: "notice withheld under legal hold h1"}.Event(),
	}
}

func build(t testing.TB, tl *testLog) []byte {
	t.Helper()
	stated := &Stated{At: "2030-05-02T09:00:00Z", Persons: 1, KeyAges: []PersonKey{{Person: "alice", Type: "ssh-ed25519", Fingerprint: "SHA256:abc", Added: "2030-01-01", AgeDays: 121}}}
	ev, err := Build(Options{AuditDir: tl.Dir, Keys: tl.Keys, Tenant: "acme", From: day0, To: day0, Now: day0.Add(24 * time.Hour), Stated: stated})
	if err != nil {
		t.Fatal(err)
	}
	page, err := Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

func TestReportFigures(t *testing.T) {
	tl := newTestLog(t, scenario()...)
	page := build(t, tl)
	ev, err := Extract(page)
	if err != nil {
		t.Fatal(err)
	}
	f := ev.Figures
	if f.Sessions != 2 || f.FourEyesSessions != 1 || f.Refused != 1 || f.EndedFromOutside != 1 || f.RecordingAccess != 1 || f.RetentionActions != 1 {
		t.Fatalf("figures: %+v", f)
	}
	var s1 Session
	for _, s := range f.SessionList {
		if s.ID == "s1" {
			s1 = s
		}
	}
	if s1.Owner != "alice" || len(s1.Joins) != 1 || s1.Joins[0].Person != "bob" || s1.Joins[0].Left == "" || s1.Live == "" || s1.Exit != "0" {
		t.Fatalf("four-eyes session: %+v", s1)
	}
	if len(f.Requests) != 1 || f.Requests[0].Request != "r42" || f.Requests[0].Requester != "dave" || f.Requests[0].Purpose != "TICKET-7 deploy" ||
		len(f.Requests[0].Decisions) != 1 || f.Requests[0].Decisions[0].By != "alice" || f.Requests[0].Decisions[0].ValidUntil == "" ||
		len(f.Requests[0].Sessions) != 1 || f.Ended[0].Reason != "locked by alice: left the company" {
		t.Fatalf("requests/ended: %+v %+v", f.Requests, f.Ended)
	}
	// Every claim cites records, and every cited record is embedded.
	have := map[uint64]bool{}
	for _, r := range ev.Records {
		have[r.Index] = true
	}
	for _, c := range append(f.SessionsPerDay, f.RefusedByReason...) {
		for _, r := range c.Refs {
			if !have[r] {
				t.Fatalf("%s cites record %d, which is not embedded", c.Label, r)
			}
		}
	}
	for _, want := range []string{"<svg", "Zugangskontrolle", "Trennungsgebot", `href="#r`, "no grant for root on db1",
		`<td>alice</td><td><code>ssh-ed25519 SHA256:abc</code></td><td>2030-01-01</td><td class="n">121</td>`, "Not proven by the\naudit log"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	if c, err := Verify(page, tl.Key, tl.Witness); err != nil || c.Records != len(ev.Records) || !c.Witnessed {
		t.Fatalf("verify: %+v %v", c, err)
	}
}

// Nothing of another tenant, and nothing without a tenant, is in the
// report: not in the page, not in the evidence.
func TestReportHoldsOnlyTheTenant(t *testing.T) {
	tl := newTestLog(t, scenario()...)
	page := build(t, tl)
	// The visible page; the evidence is base64 and ciphertext, in which
	// any short string may turn up by chance: its records are opened below.
	visible, _, _ := bytes.Cut(page, []byte(evidenceOpen))
	for _, leak := range []string{"gustav", "globex", "gx1", "globex-secret-reason", "globex-secret-purpose", "198.51.100.9", "192.0.2.7", "uptime", "SHA256:alice", "fine by me", "disclosure", "lena", "secret-order", "secret-investigation"} {
		if bytes.Contains(visible, []byte(leak)) {
			t.Errorf("the page shows %q", leak)
		}
	}
	ev, _ := Extract(page)
	for _, r := range ev.Records {
		_, e, _, err := audit.OpenDisclosed([]byte(r.Raw), r.Keys)
		if err != nil || e.Tenant != "acme" {
			t.Fatalf("record %d: tenant %q %v", r.Index, e.Tenant, err)
		}
		if e.Source != "" || e.Attrs[audit.KeyCommand] != "" {
			t.Fatalf("record %d discloses more than its admin part: %+v", r.Index, e)
		}
	}
	// A report that slips in a record of globex — genuine, with a valid
	// proof — is refused.
	other := forged(t, tl, func(ev *Evidence) {
		var g audit.Record
		_ = audit.Read(tl.Dir, audit.Filter{Tenant: "globex"}, func(r audit.Record) error { g = r; return nil })
		cp, _ := audit.LatestCheckpoint(tl.Dir)
		paths, err := cp.Prove(tl.Dir, []uint64{g.Index})
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := audit.Disclose(g.Raw, tl.Keys, vault.Admin)
		ev.Records = append(ev.Records, Record{Index: g.Index, Raw: string(g.Raw), Keys: keys, Path: paths[g.Index]})
		sortRecords(ev.Records)
	}, false)
	if _, err := Verify(other, tl.Key, ""); err == nil || !strings.Contains(err.Error(), "not of tenant acme") {
		t.Fatalf("a record of globex passed: %v", err)
	}
}

// forged decodes the page's evidence, changes it, and renders it again
// (rederive: with the figures derived again, as a forger would).
func forged(t *testing.T, tl *testLog, change func(*Evidence), keepFigures bool) []byte {
	t.Helper()
	ev, err := Extract(build(t, tl))
	if err != nil {
		t.Fatal(err)
	}
	change(ev)
	if !keepFigures {
		if opened, err := ev.open(); err == nil {
			ev.Figures = Derive(opened)
		}
	}
	js, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	page, err := Render(ev)
	if err != nil { // a record the renderer cannot open: splice the JSON in by hand
		page = build(t, tl)
		old, _ := Extract(page)
		oldJS, _ := json.Marshal(old)
		page = bytes.Replace(page, oldJS, js, 1)
	}
	return page
}

func sortRecords(rs []Record) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Index < rs[j-1].Index; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// Verify fails after one record, one proof, one figure or one line of the
// page is changed, and with a key that did not sign.
func TestReportVerifyCatchesTampering(t *testing.T) {
	tl := newTestLog(t, scenario()...)
	page := build(t, tl)
	if _, err := Verify(page, tl.Key, tl.Witness); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		page []byte
		want string
	}{
		"a figure in the page": {
			bytes.Replace(page, []byte(`<td>Four-eyes sessions</td><td class="n">1</td>`), []byte(`<td>Four-eyes sessions</td><td class="n">2</td>`), 1),
			"not what the evidence renders to"},
		"a figure in the evidence and the page": {forged(t, tl, func(ev *Evidence) { ev.Figures.FourEyesSessions = 2 }, true), "figures are not what the records give"},
		"a record": {forged(t, tl, func(ev *Evidence) {
			r := &ev.Records[0]
			r.Raw = strings.Replace(r.Raw, `"type":"session.start"`, `"type":"session.denied"`, 1)
		}, false), "record"},
		"a proof":                      {forged(t, tl, func(ev *Evidence) { ev.Records[2].Path[0][0] ^= 1 }, false), "inclusion"},
		"a record left out of a count": {forged(t, tl, func(ev *Evidence) { ev.Figures.SessionsPerDay[0].Refs = ev.Figures.SessionsPerDay[0].Refs[1:] }, true), "figures"},
		"a subkey": {forged(t, tl, func(ev *Evidence) {
			for _, r := range ev.Records {
				if k := r.Keys[vault.Admin]; k != nil {
					k[0] ^= 1
					return
				}
			}
		}, false), "does not open"},
		"the checkpoint": {forged(t, tl, func(ev *Evidence) {
			ev.Checkpoint = strings.Replace(ev.Checkpoint, "\n\n", "\nx\n\n", 1)
		}, false), "checkpoint"},
	}
	for name, c := range cases {
		if bytes.Equal(c.page, page) {
			t.Fatalf("%s: the change did not change the page", name)
		}
		_, err := Verify(c.page, tl.Key, "")
		t.Logf("%s: %v", name, err)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: verify said %v, want an error with %q", name, err, c.want)
		}
	}
	stranger, _, _ := audit.GenerateSigningKey("tandem/audit")
	if _, err := Verify(page, stranger.Verifier(), ""); err == nil {
		t.Error("a key that did not sign the checkpoint verified the report")
	}
	empty := filepath.Join(t.TempDir(), "witness")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(page, tl.Key, empty); err == nil || !strings.Contains(err.Error(), "witness") {
		t.Errorf("a witness without the checkpoint: %v", err)
	}
}

// FuzzExtract: a report file is input from outside (an auditor runs
// verify on what they were sent); no bytes may crash the reader, and
// nothing but a genuine report verifies.
func FuzzExtract(f *testing.F) {
	tl := newTestLog(f, scenario()...)
	page := build(f, tl)
	f.Add(page)
	f.Add([]byte(evidenceOpen + `{"format":1}` + evidenceClose))
	f.Add([]byte(evidenceOpen + `{"format":1,"records":[{"index":0,"record":"{}","path":[]}]}` + evidenceClose))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Extract(b)
		if err != nil {
			return
		}
		if _, err := Verify(b, tl.Key, ""); err == nil && !bytes.Equal(b, page) {
			if again, err := Render(ev); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("a page that is not its own rendering verified")
			}
		}
	})
}

func personConfig_(ids ...string) *config.Config {
	c := &config.Config{}
	for _, id := range ids {
		c.Persons = append(c.Persons, config.Person{ID: id, Name: strings.ToUpper(id), Roles: []string{"admin"}})
	}
	return c
}

// The access report of a person lists every record naming them, in
// whatever role, and names nobody else but the readers of their
// recordings.
func TestPersonReport(t *testing.T) {
	tl := newTestLog(t, scenario()...)
	cfg := personConfig_("alice", "bob", "dave", "rita", "mallory", "gustav")
	get := func(p string) (*PersonReport, string) {
		r, err := BuildPerson(PersonOptions{AuditDir: tl.Dir, Keys: tl.Keys, Config: cfg, Person: p, Now: day0.Add(48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return r, b.String()
	}
	alice, text := get("alice")
	// alice: her login, her session (start, waiting, join, live, leave,
	// end), the lock she made, the export of her recording.
	if alice.Records != 10 || alice.Config == nil || alice.Config.Name != "ALICE" {
		t.Fatalf("alice: %d records, config %+v\n%s", alice.Records, alice.Config, text)
	}
	for _, want := range []string{"[owner]", "participant=(another person)", "reason=(another person) joined", "[locker]", "person=rita", "owner=alice", "source=192.0.2.7:5000"} {
		if !strings.Contains(text, want) {
			t.Errorf("alice's report lacks %q:\n%s", want, text)
		}
	}
	for _, leak := range []string{"bob", "dave", "gustav", "globex", "mallory"} {
		if strings.Contains(text, leak) {
			t.Errorf("alice's report names %q:\n%s", leak, text)
		}
	}
	bob, text := get("bob")
	if bob.Records != 2 || !strings.Contains(text, "[joiner]") || strings.Contains(text, "alice") {
		t.Errorf("bob's report: %d records\n%s", bob.Records, text)
	}
	// rita read alice's recording: in rita's report, alice is another person.
	_, text = get("rita")
	if !strings.Contains(text, "[reader]") || strings.Contains(text, "alice") {
		t.Errorf("rita's report:\n%s", text)
	}
	// dave was locked by alice, and his session ended with alice's name
	// in the reason.
	_, text = get("dave")
	if !strings.Contains(text, "[locked]") || strings.Contains(text, "alice") || !strings.Contains(text, "request=r42") {
		t.Errorf("dave's report:\n%s", text)
	}
	nobody, _ := get("zed")
	if nobody.Config != nil || nobody.Records != 0 {
		t.Errorf("zed: %+v", nobody)
	}
}

// A draw is reproducible from its seed, and the report shows what was
// drawn and the verdicts, citing their records.
func TestSpotChecks(t *testing.T) {
	tl := newTestLog(t, scenario()...)
	draw := func(seed uint64, n int) *Draw {
		d, err := DrawSample(SampleOptions{AuditDir: tl.Dir, Keys: tl.Keys, Tenant: "acme", From: day0, To: day0, Count: n, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Candidates: sessions s1 and s2, and request r42 (s2's).
	if d := draw(7, 10); d.Candidates != 3 || len(d.Items) != 3 {
		t.Fatalf("draw: %+v", d)
	}
	seen := map[string]bool{}
	for seed := uint64(0); seed < 20; seed++ {
		a, b := draw(seed, 1), draw(seed, 1)
		if a.Items[0] != b.Items[0] {
			t.Fatalf("seed %d drew %v and then %v", seed, a.Items, b.Items)
		}
		seen[a.Items[0].ID] = true
	}
	if len(seen) < 2 {
		t.Errorf("twenty seeds drew only %v", seen)
	}
	if _, err := DrawSample(SampleOptions{AuditDir: tl.Dir, Keys: tl.Keys, Tenant: "acme", From: day0, To: day0, Count: 0}); err == nil {
		t.Error("a draw of 0 items was accepted")
	}
	d := draw(7, 2)
	if d.Items[0].Kind != "session" && d.Items[0].Kind != "request" {
		t.Fatalf("%+v", d.Items)
	}
	verdict := func(it Drawn, v, note string) audit.Event {
		e := audit.ReviewVerdictEvent{Conn: audit.Conn{Person: "rita"}, Tenant: "acme", Verdict: v, Note: note}
		if it.Kind == "session" {
			e.Session = it.ID
		} else {
			e.Request = it.ID
		}
		return e.Event()
	}
	events := append(scenario(), d.Event(), verdict(d.Items[0], "finding", "no ticket"), verdict(d.Items[1], "ok", ""))
	tl2 := newTestLog(t, events...)
	page := build(t, tl2)
	ev, err := Extract(page)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Sample{}
	for _, x := range ev.Figures.Samples {
		byID[x.ID] = x
	}
	first, second := byID[d.Items[0].ID], byID[d.Items[1].ID]
	if len(byID) != 2 || len(first.Verdicts) != 1 || first.Verdicts[0].Verdict != "finding" || first.Verdicts[0].Note != "no ticket" ||
		first.Verdicts[0].Reviewer != "rita" || len(second.Verdicts) != 1 || second.Verdicts[0].Verdict != "ok" || first.Ref == 0 {
		t.Fatalf("samples: %+v", ev.Figures.Samples)
	}
	for _, want := range []string{"Spot checks", "<b>finding</b> (no ticket)", "Spot checks drawn"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if _, err := Verify(page, tl2.Key, ""); err != nil {
		t.Fatal(err)
	}
}

// Text persons typed reaches the page escaped: no markup, no bidi or
// control characters raw, and the page still verifies.
func TestReportEscapesPersonText(t *testing.T) {
	hostile := "<script>alert(1)</script>\u202eevil\x1b[31m"
	events := append(scenario(), audit.SessionDeniedEvent{Target: audit.Target{Person: "mallory", Tenant: "acme", Host: "db1", Login: "root"}, Reason: hostile}.Event())
	tl := newTestLog(t, events...)
	page := build(t, tl)
	visible, _, _ := bytes.Cut(page, []byte(evidenceOpen))
	for _, raw := range []string{"<script>alert", "\u202e", "\x1b"} {
		if bytes.Contains(visible, []byte(raw)) {
			t.Errorf("the page holds %q raw", raw)
		}
	}
	if !bytes.Contains(visible, []byte(`&lt;script&gt;alert(1)&lt;/script&gt;\u202eevil\x1b[31m`)) {
		t.Errorf("the reason is not shown escaped:\n%s", visible)
	}
	if _, err := Verify(page, tl.Key, ""); err != nil {
		t.Fatal(err)
	}
}
