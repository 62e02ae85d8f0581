package admin

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// withLog gives g an audit log: per tenant nord and sued a session start
// and end, events of no tenant, and one event with hostile text in nord.
func withLog(g *fakeGateway) {
	at := g.now.Add(-time.Hour)
	events := []audit.Event{
		{Type: audit.GatewayStart},
		{Type: audit.AuthSuccess, Person: "alice"},
		{Type: audit.SessionStart, Person: "alice", Tenant: "nord", Host: "db1", Session: "s1"},
		{Type: audit.SessionStart, Person: "bob", Tenant: "sued", Host: "sued1", Session: "s2"},
		{Type: audit.SessionEnd, Person: "alice", Tenant: "nord", Host: "db1", Session: "s1"},
		{Type: audit.SessionEnd, Person: "bob", Tenant: "sued", Host: "sued1", Session: "s2"},
		{Type: audit.SessionDenied, Person: "bob", Tenant: "nord", Host: "\x1b[2Jdb1\u202e", Attrs: map[string]string{"reason": "x\u009by"}},
	}
	for i, e := range events {
		e.Time = at.Add(time.Duration(i) * time.Second)
		g.log = append(g.log, audit.Record{Index: uint64(i), Event: e})
	}
}

// TestAuditShow: a person with an audit grant sees the events of their
// tenants only, within the filters; each read is recorded before output.
func TestAuditShow(t *testing.T) {
	cases := []struct {
		name      string
		line      string
		sessions  []string // the sessions of the lines shown, in order
		count     int
		truncated bool
	}{
		{"every event of nord", "audit show", []string{"s1", "s1", "-"}, 3, false},
		{"by type", "audit show --type session.end,session.denied", []string{"s1", "-"}, 2, false},
		{"by person", "audit show --person alice", []string{"s1", "s1"}, 2, false},
		{"another tenant's session shows nothing", "audit show --session s2", nil, 0, false},
		{"limit keeps the most recent", "audit show --limit 1", []string{"-"}, 1, true},
		{"since before the events", "audit show --since 30m", nil, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFake(t)
			withLog(g)
			code, out, errOut := g.run("dora", c.line)
			if code != 0 {
				t.Fatalf("%s: %d %s %s", c.line, code, out, errOut)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if _, after, ok := strings.Cut(l, " session="); ok {
					got = append(got, strings.Fields(after)[0])
				}
			}
			if strings.Join(got, ",") != strings.Join(c.sessions, ",") || strings.Contains(out, "sued") {
				t.Errorf("sessions shown %q, want %q:\n%s", got, c.sessions, out)
			}
			e := g.events[len(g.events)-1]
			if e.Type != audit.AuditRead || e.Person != "dora" || e.Tenant != "" || e.Attrs["tenants"] != "nord" ||
				e.Attrs["count"] != strconv.Itoa(c.count) || (e.Attrs["truncated"] == "true") != c.truncated ||
				!strings.Contains(e.Attrs["filter"], "limit=") {
				t.Errorf("audit.read = %+v", e)
			}
		})
	}
}

// TestAuditShowRefusals: no grant, an external, a bad command line and an
// audit log that refuses the read: nothing is shown.
func TestAuditShowRefusals(t *testing.T) {
	cases := []struct {
		name, person, line, stderr string
		refuse                     audit.Type
	}{
		{"no grant", "alice", "audit show", "alice may read the audit events of no tenant", ""},
		{"read grant is not audit", "carol", "audit show", "carol may read the audit events of no tenant", ""},
		{"external", "eve", "audit show", "eve may read the audit events of no tenant", ""},
		{"no subcommand", "dora", "audit", "usage: audit show", ""},
		{"limit too high", "dora", "audit show --limit 5000", "--limit must be 1 to 1000", ""},
		{"unknown flag", "dora", "audit show --tenant sued", "usage: audit show", ""},
		{"the read is not recorded", "dora", "audit show", "the audit log is unavailable, so it cannot be read either", audit.AuditRead},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFake(t)
			withLog(g)
			g.refuse = c.refuse
			code, out, errOut := g.run(c.person, c.line)
			if code != 1 || !strings.Contains(errOut, c.stderr) || strings.Contains(out, "session=") {
				t.Fatalf("%s: exit %d, stderr %q, want %q\nstdout: %s", c.line, code, errOut, c.stderr, out)
			}
			for _, e := range g.events {
				if e.Type == audit.AuditRead {
					t.Errorf("a refused read was recorded as read: %+v", e)
				}
			}
		})
	}
}

// TestAuditShowEscapes: person-supplied text in events reaches the
// reader's terminal escaped; --json keeps the original bytes.
func TestAuditShowEscapes(t *testing.T) {
	g := newFake(t)
	withLog(g)
	_, out, _ := g.run("dora", "audit show --type session.denied")
	if strings.ContainsAny(out, "\x1b\u009b\u202e") || !strings.Contains(out, `\x1b[2Jdb1\u202e`) {
		t.Fatalf("not escaped: %q", out)
	}
	_, out, _ = g.run("dora", "audit show --type session.denied --json")
	var e struct {
		Index uint64 `json:"index"`
		audit.Event
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Host != "\x1b[2Jdb1\u202e" || e.Index != 6 {
		t.Fatalf("json %q: %+v %v", out, e, err)
	}
}
