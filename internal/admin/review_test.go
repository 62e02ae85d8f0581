package admin

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// reviewLog gives g a log with sessions of nord (one of them dora's, one
// she joined), one of sued, a request dora approved, and a draw of them.
func reviewLog(g *fakeGateway) {
	at := func(t audit.Target) audit.Target { t.Tenant, t.Host, t.Login = "nord", "prod1", "root"; return t }
	events := []audit.Event{
		audit.SessionStartEvent{Target: at(audit.Target{Person: "alice", Session: "s-alice", Request: "r-1"}), Action: "exec"}.Event(),
		audit.SessionStartEvent{Target: at(audit.Target{Person: "dora", Session: "s-dora"}), Action: "shell"}.Event(),
		audit.SessionStartEvent{Target: at(audit.Target{Person: "bob", Session: "s-bob"}), Action: "shell"}.Event(),
		audit.SessionJoinEvent{Target: at(audit.Target{Person: "bob", Session: "s-bob"}), Participant: "dora", Mode: "peer"}.Event(),
		audit.SessionStartEvent{Target: audit.Target{Person: "alice", Session: "s-sued", Tenant: "sued", Host: "sued1", Login: "root"}, Action: "shell"}.Event(),
		audit.RequestCreateEvent{RequestRef: audit.RequestRef{Conn: audit.Conn{Person: "alice"}, Request: "r-2", Requester: "alice"}}.Event(),
		audit.RequestApproveEvent{RequestRef: audit.RequestRef{Conn: audit.Conn{Person: "dora"}, Request: "r-2", Requester: "alice"}}.Event(),
		audit.ReviewSampledEvent{Tenant: "nord", Period: "x", Seed: "1", Count: 5, Sessions: "s-alice,s-dora,s-bob", Requests: "r-1,r-2"}.Event(),
		audit.ReviewSampledEvent{Tenant: "sued", Period: "x", Seed: "1", Count: 1, Sessions: "s-sued"}.Event(),
	}
	for i, e := range events {
		g.log = append(g.log, audit.Record{Index: uint64(i), Event: e})
	}
}

// A verdict is recorded only on a drawn item, by a person with audit
// rights for its tenant who took no part in it, and with a valid verdict.
func TestReviewRecord(t *testing.T) {
	g := newFake(t)
	reviewLog(g)
	for _, c := range []struct {
		who, line, want string
	}{
		{"dora", "review record s-nope --verdict ok", "was not drawn"},
		{"dora", "review record s-sued --verdict ok", "may not review items of tenant sued"},
		{"alice", "review record s-alice --verdict ok", "may not review items of tenant nord"},
		{"dora", "review record s-dora --verdict ok", "they are its owner"},
		{"dora", "review record s-bob --verdict ok", "they are its second person"},
		{"dora", "review record r-2 --verdict ok", "they are its approver"},
		{"dora", "review record s-alice --verdict maybe", "--verdict must be ok or finding"},
		{"dora", "review record s-alice --verdict finding", "a finding needs --note"},
		{"dora", "review record s-alice --verdict ok --note " + strings.Repeat("x", MaxNote+1), "longer than"},
		{"dora", "review show s-alice", "usage: review record"},
	} {
		before := len(g.events)
		code, _, errOut := g.run(c.who, c.line)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: %s: status %d, %q; want a refusal with %q", c.who, c.line[:min(len(c.line), 60)], code, errOut, c.want)
		}
		for _, e := range g.events[before:] {
			if e.Type == audit.ReviewVerdict {
				t.Errorf("%s: a refused verdict was recorded", c.line[:min(len(c.line), 60)])
			}
		}
	}
	code, out, errOut := g.run("dora", "review record s-alice --verdict finding --note sudo without a ticket")
	if code != 0 || !strings.Contains(out, "verdict finding on session s-alice of nord recorded") {
		t.Fatalf("%d %s %s", code, out, errOut)
	}
	code, _, errOut = g.run("dora", "review record r-1 --verdict ok")
	if code != 0 {
		t.Fatalf("request verdict: %s", errOut)
	}
	var got []audit.Event
	for _, e := range g.events {
		if e.Type == audit.ReviewVerdict {
			got = append(got, e)
		}
	}
	if len(got) != 2 || got[0].Person != "dora" || got[0].Session != "s-alice" || got[0].Tenant != "nord" ||
		got[0].Attrs[audit.KeyNote] != "sudo without a ticket" || got[1].Request != "r-1" || got[1].Attrs[audit.KeyVerdict] != "ok" {
		t.Fatalf("verdict events: %+v", got)
	}
}
