package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestReportEvidence runs a small scenario on a real gateway — a
// four-eyes session with a second person, a session a lock ends, a
// reload — and then the evidence report of the tenant (issue 21): the
// report holds each fact with the index of its record, `tandem report
// verify` passes with the log's public key and the witness, and fails
// after one record, one proof or one figure of the HTML is changed. The
// page loads in headless Chromium without console messages, and --pdf
// prints the headline figures.
func TestReportEvidence(t *testing.T) {
	t.Parallel()
	chromium := testenv.RequireProgram(t, "chromium")
	testenv.RequireProgram(t, "pdftotext")
	e := newFourEyesEnv(t, feDefaults)

	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	e.run(t, alice, "R", 20, 1, alice, bob)
	alice.send(t, "exit\r")
	if !alice.waitExit(20 * time.Second) {
		e.fail(t, []*feTerm{alice, bob}, "alice's session did not end")
	}

	dave := e.open(t, "dave", e.dest("tst1")...)
	e.run(t, dave, "D", 1, 1, dave)
	if out, errOut, err := e.GW.Run(t, "lock", "dave", "--reason", "report scenario", "--config", e.Config); err != nil {
		t.Fatalf("tandem lock: %v\n%s%s", err, out, errOut)
	}
	if !dave.waitExit(30 * time.Second) {
		e.fail(t, []*feTerm{dave}, "the lock did not end dave's session")
	}
	// The reload gives carol (watcher) audit rights for the tenant, so
	// she can review; it is also a configuration change (config.change).
	editRole(t, e.Config, "watcher", func(r *config.Rule) { r.Audit = true })
	if out, errOut, err := e.GW.Run(t, "reload", "--config", e.Config, "--by", "alice"); err != nil {
		t.Fatalf("tandem reload: %v\n%s%s", err, out, errOut)
	}

	// A spot check: draw both sessions, then carol's verdicts. The draw
	// reaches the log through the store's outbox, so her first try may
	// come before it.
	today := time.Now().UTC().Format(time.DateOnly)
	out, errOut, err := e.GW.Run(t, "review", "sample", "--config", e.Config, "--tenant", tenant, "--period", today, "--count", "5", "--seed", "42")
	if err != nil || !strings.Contains(out, "drawn 2 of 2") || !strings.Contains(out, "ssh -t gw replay "+id) {
		t.Fatalf("tandem review sample: %v\n%s%s", err, out, errOut)
	}
	again, _, _ := e.GW.Run(t, "review", "sample", "--config", e.Config, "--tenant", tenant, "--period", today, "--count", "5", "--seed", "42")
	if again != out {
		t.Errorf("the same seed drew differently:\n%s\n%s", out, again)
	}
	var r testenv.Result
	if !testenv.WaitFor(20*time.Second, func() bool {
		r = e.clients["carol"].SSH(t, "gw", "review", "record", id, "--verdict", "finding", "--note", "no ticket named")
		return r.Code == 0
	}) {
		t.Fatalf("carol's verdict: %s\n%s", r, e.GW.Tail())
	}
	// The draw is in the log now; alice may not judge her own session.
	if r := e.clients["alice"].SSH(t, "gw", "review", "record", id, "--verdict", "ok"); r.Code == 0 || !strings.Contains(r.Stderr, "may not review") {
		t.Errorf("alice reviewed her own session: %s", r)
	}

	dir := mkdir(t, e.Dir, "report")
	html, pdf := filepath.Join(dir, "nord.html"), filepath.Join(dir, "nord.pdf")
	args := []string{"report", "--config", e.Config, "--tenant", tenant, "--from", today, "--to", today, "--out", html, "--pdf", pdf}
	// The gateway signs a checkpoint over the last records within
	// audit.checkpoint_every; until then the report says to wait.
	if !testenv.WaitFor(60*time.Second, func() bool {
		out, errOut, err = e.GW.Run(t, args...)
		return err == nil
	}) {
		t.Fatalf("tandem report: %v\n%s%s", err, out, errOut)
	}
	t.Logf("tandem report:\n%s", out)
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(html); st.Mode().Perm() != 0o600 {
		t.Errorf("report file mode %v, want 0600", st.Mode().Perm())
	}

	// Each fact, with the index of its record.
	for name, re := range map[string]string{
		"the four-eyes session, owner alice, bob's join": `(?s)<td><code>` + id + `</code></td><td>alice</td><td>db1 / root</td>.*bob \(peer\) [^<]*<a class="ref" href="#r\d+">#\d+</a>`,
		"dave's session ended by the lock":               `<td>dave</td><td>tst1</td><td>\S+</td><td>\S+</td><td>[^<]*report scenario[^<]*</td><td><a class="ref" href="#r\d+">`,
		"sessions per host cite records":                 `<td>db1</td><td class="n">1</td><td><a class="ref" href="#r\d+">`,
		"the headline":                                   `<td>Four-eyes sessions</td><td class="n">1</td>`,
		"the appendix":                                   `<tr id="r\d+"><td class="n">\d+</td><td>\S+</td><td>session.join</td><td>alice</td>`,
		"carol's verdict":                                `<td>session</td><td><code>` + id + `</code></td><td>\S+ <a class="ref" href="#r\d+">#\d+</a></td><td>carol: <b>finding</b> \(no ticket named\)`,
	} {
		if !regexp.MustCompile(re).Match(page) {
			t.Errorf("the report lacks %s (%s)", name, re)
		}
	}
	for _, leak := range []string{"<td>config.reload</td>", "<td>lock</td>", "<td>auth.success</td>", "<td>command</td>"} {
		if bytes.Contains(page, []byte(leak)) {
			t.Errorf("the report holds %q, a record without a tenant", leak)
		}
	}

	pub := filepath.Join(dir, "audit.pub")
	key, _, err := e.GW.Run(t, "audit", "pubkey", "--config", e.Config)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, pub, key)
	verify := func(file string) (string, error) {
		o, eo, err := e.GW.Run(t, "report", "verify", file, "--pubkey", pub, "--witness", testenv.WitnessFile(filepath.Join(e.Dir, "data")))
		return o + eo, err
	}
	if o, err := verify(html); err != nil || !strings.Contains(o, "result:        OK") || !strings.Contains(o, "witness:       holds") {
		t.Fatalf("report verify: %v\n%s", err, o)
	}

	for name, change := range map[string]func([]byte) []byte{
		// A record: its type, inside the embedded evidence (the record
		// is a JSON string there, so its quotes are escaped).
		"a record": func(p []byte) []byte {
			return bytes.Replace(p, []byte(`\"type\":\"session.join\"`), []byte(`\"type\":\"session.leave\"`), 1)
		},
		"a proof": func(p []byte) []byte {
			i := bytes.Index(p, []byte(`"path":["`)) + len(`"path":["`)
			q := bytes.Clone(p)
			q[i] = map[bool]byte{true: 'B', false: 'A'}[q[i] == 'A']
			return q
		},
		"a figure": func(p []byte) []byte {
			return bytes.Replace(p, []byte(`<td>Four-eyes sessions</td><td class="n">1</td>`), []byte(`<td>Four-eyes sessions</td><td class="n">0</td>`), 1)
		},
	} {
		bad := change(page)
		if bytes.Equal(bad, page) {
			t.Fatalf("%s: the change changed nothing", name)
		}
		file := filepath.Join(dir, "tampered.html")
		if err := os.WriteFile(file, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := verify(file)
		if err == nil || !strings.Contains(o, "does not verify") {
			t.Errorf("%s changed: verify passed or said no reason: %v\n%s", name, err, o)
		}
		t.Logf("%s changed: %s", name, strings.TrimSpace(o))
	}

	// The page in a browser: no console message (no script, no load the
	// page's policy refuses), and a screenshot with the charts.
	shot := filepath.Join(dir, "nord.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+mkdir(t, dir, "profile"), "--enable-logging=stderr", "--v=0",
		"--window-size=1280,2400", "--screenshot="+shot, "file://"+html)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	logs, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, logs)
	}
	if strings.Contains(string(logs), "CONSOLE") {
		t.Errorf("the page logged to the console:\n%s", logs)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Errorf("no screenshot of the page: %v", err)
	}
	if !bytes.Contains(page, []byte(`<svg`)) || !bytes.Contains(page, []byte(`class="bar"`)) {
		t.Error("the page has no chart")
	}

	// The access report of bob: his join of alice's session, alice as
	// another person.
	art15, errOut, err := e.GW.Run(t, "report", "--config", e.Config, "--person", "bob")
	if err != nil || !strings.Contains(art15, "session.join [joiner]") || !strings.Contains(art15, "person=(another person)") || strings.Contains(art15, "alice") {
		t.Errorf("tandem report --person bob: %v\n%s%s", err, art15, errOut)
	}
	// Both reports and the draw are in the audit log.
	if !testenv.WaitFor(20*time.Second, func() bool {
		o, _, _ := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "report.created,review.sampled")
		return strings.Count(o, "report.created") >= 2 && strings.Count(o, "review.sampled") >= 2
	}) {
		o, _, _ := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "report.created,review.sampled")
		t.Errorf("report.created and review.sampled not in the log:\n%s", o)
	}

	text, err := exec.Command("pdftotext", "-layout", pdf, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	for _, re := range []string{`Evidence report: tenant ` + tenant, `Sessions on the tenant's hosts\s+2`, `Four-eyes sessions\s+1`, `Sessions the gateway ended[^\n]*\s+1`} {
		if !regexp.MustCompile(re).Match(text) {
			t.Errorf("the PDF's text lacks %q:\n%s", re, clipTail(string(text), 3000))
		}
	}
}

// TestReportRequestAnsible: an access request, its approval and the
// Ansible run under it, and an export of one of the run's recordings,
// as the tenant's evidence report shows them: the requester, the purpose,
// the approver and the window, every session under the request, the
// export with its reader — each citing its records, and the report
// verifies.
func TestReportRequestAnsible(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ansible-playbook")
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "db1", Env: "production"}}})
	s := newAnsibleSetup(t, e, "alice", []string{"db1"})
	id := e.request(t, "alice", "db1", "1h", "TICKET-7 deploy config")
	e.decide(t, "bob", "approve", id, "request "+id+" approved")
	s.greenRun(t, e, id, ansibleTuned)
	recs := e.auditOfRequest(t, id, "request.create", "request.approve", "session.start", "session.end")
	var session string
	for _, r := range recs {
		if r.Type == "session.end" {
			session = r.Session
		}
	}

	// bob (lead) gets the read grant by a reload, and exports one of the
	// run's recordings.
	editRole(t, e.Config, "lead", func(r *config.Rule) { r.Read = true })
	if out, errOut, err := e.GW.Run(t, "reload", "--config", e.Config, "--by", "bob"); err != nil {
		t.Fatalf("tandem reload: %v\n%s%s", err, out, errOut)
	}
	// tandem reload signals the gateway; the reload is done once logged.
	if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(e.GW.Stderr.String(), "configuration reloaded") }) {
		t.Fatalf("the gateway did not reload:\n%s", e.GW.Tail())
	}
	cast := filepath.Join(e.Dir, "export.cast")
	if out, errOut, err := e.GW.Run(t, "recording", "export", "--config", e.Config, "--as", "bob", "--out", cast, session); err != nil {
		t.Fatalf("tandem recording export: %v\n%s%s", err, out, errOut)
	}

	dir := mkdir(t, e.Dir, "report")
	html := filepath.Join(dir, "nord.html")
	today := time.Now().UTC().Format(time.DateOnly)
	var out, errOut string
	var err error
	// The export's event comes through the outbox, and the report needs a
	// checkpoint over it: wait for both.
	if !testenv.WaitFor(60*time.Second, func() bool {
		out, errOut, err = e.GW.Run(t, "report", "--config", e.Config, "--tenant", tenant, "--from", today, "--to", today, "--out", html)
		return err == nil && strings.Contains(out, "recordings:    1 reads and exports")
	}) {
		t.Fatalf("tandem report: %v\n%s%s", err, out, errOut)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	ref := `<a class="ref" href="#r\d+">#\d+</a>`
	for name, re := range map[string]string{
		"the request: requester, hosts, purpose, window": `<td><code>` + id + `</code></td><td>alice</td><td>db1 / root</td><td>TICKET-7 deploy config</td>\s*<td>\S+, 1h0m0s</td>`,
		"the approval by bob, with its validity":         `approve by bob \S+, valid until \S+ ` + ref,
		"the run's session under the request":            `<td>[^<]*` + session + `[^<]*</td><td>(` + ref + ` ?)+</td></tr>`,
		"the export, reader and owner":                   `<td>export</td><td>bob</td><td>local:\S+</td><td><code>` + session + `</code></td><td>alice</td><td>\S+</td><td>` + ref,
	} {
		if !regexp.MustCompile(re).Match(page) {
			t.Errorf("the report lacks %s (%s)", name, re)
		}
	}
	pub := filepath.Join(dir, "audit.pub")
	key, _, err := e.GW.Run(t, "audit", "pubkey", "--config", e.Config)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, pub, key)
	if o, eo, err := e.GW.Run(t, "report", "verify", html, "--pubkey", pub); err != nil || !strings.Contains(o, "result:        OK") {
		t.Fatalf("report verify: %v\n%s%s", err, o, eo)
	}
}

// editRole changes the first rule of a role in the configuration file.
func editRole(t *testing.T, path, role string, edit func(*config.Rule)) {
	t.Helper()
	editConfig(t, path, func(c *config.Config) {
		for i := range c.Roles {
			if c.Roles[i].ID == role {
				edit(&c.Roles[i].Allow[0])
			}
		}
	})
}
