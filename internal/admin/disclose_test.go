package admin

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"filippo.io/age"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
)

// withDisclosers gives carol and bob the permission disclose and dora
// the permission dpo.
func withDisclosers(g *fakeGateway) {
	g.cfg.Roles = append(g.cfg.Roles,
		config.Role{ID: "legal", Permissions: []string{config.PermissionDisclose}},
		config.Role{ID: "dpo", Permissions: []string{config.PermissionDPO}})
	for i := range g.cfg.Persons {
		switch g.cfg.Persons[i].ID {
		case "carol", "bob":
			g.cfg.Persons[i].Roles = append(g.cfg.Persons[i].Roles, "legal")
		case "dora":
			g.cfg.Persons[i].Roles = append(g.cfg.Persons[i].Roles, "dpo")
		}
	}
	g.eng = policy.New(g.cfg)
}

// syncLog makes the events the fake gateway recorded its audit log, as
// the real log would hold them.
func syncLog(g *fakeGateway) {
	g.log = g.log[:0]
	for i, e := range g.events {
		g.log = append(g.log, audit.Record{Index: uint64(i), Event: e})
	}
}

func TestDiscloseCase(t *testing.T) {
	g := newFake(t)
	withDisclosers(g)
	id, _ := age.GenerateX25519Identity()
	rcpt := id.Recipient().String()
	g.events = append(g.events, audit.SessionStartEvent{Target: audit.Target{Person: "alice", Session: "s-1", Tenant: "nord", Host: "prod1", Login: "root"}, Action: "shell"}.Event())
	syncLog(g)
	req := "disclose request --tenant nord --scope session:s-1 --legal-basis AG-Nord-12-Gs-345/26 --recipient " + rcpt + " --reason investigation 4711"
	for _, c := range []struct{ who, line, want string }{
		{"alice", req, "may not handle disclosure cases"},
		{"carol", strings.Replace(req, "session:s-1", "session:s-9", 1), "no session s-9 of tenant nord"},
		{"carol", strings.Replace(req, "--tenant nord", "--tenant sued", 1), "no session s-1 of tenant sued"},
		{"carol", strings.Replace(req, "--legal-basis AG-Nord-12-Gs-345/26", "", 1), "--legal-basis is required"},
		{"carol", strings.Replace(req, rcpt, "age1notakey", 1), "recipient key"},
		{"carol", strings.Replace(req, "--recipient "+rcpt, "--recipient-key key.asc", 1), "the gateway cannot read your files"},
		{"carol", strings.Replace(req, "--reason", "--no-notify H-1 --reason", 1), "no legal hold H-1 in force"},
	} {
		if code, _, errOut := g.run(c.who, c.line); code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: %s: %d %q, want %q", c.who, c.line[:min(60, len(c.line))], code, errOut, c.want)
		}
	}
	// The key on standard input, bounded.
	stdin := strings.Replace(req, "--recipient "+rcpt, "--recipient-key -", 1)
	withInput := func(in string) (int, string) {
		who := g.as("carol")
		who.Input = strings.NewReader(in)
		var out, errOut bytes.Buffer
		return Run(context.Background(), g, who, stdin, &out, &errOut), out.String() + errOut.String()
	}
	if code, out := withInput(rcpt + "\n"); code != 0 || !strings.Contains(out, "disclosure case") {
		t.Errorf("key on stdin: %d %s", code, out)
	}
	if code, out := withInput(strings.Repeat("x", 70<<10)); code == 0 || !strings.Contains(out, "longer than") {
		t.Errorf("a long stdin: %d %s", code, out)
	}
	if code, _, errOut := g.run("carol", stdin); code == 0 || !strings.Contains(errOut, "there is none") {
		t.Errorf("no stdin: %d %s", code, errOut)
	}
	code, out, errOut := g.run("carol", req)
	if code != 0 {
		t.Fatalf("request: %s", errOut)
	}
	caseID := strings.Fields(out)[2]
	syncLog(g)
	ev := g.events[len(g.events)-1]
	if ev.Type != audit.DisclosureRequested || ev.Person != "carol" || ev.Tenant != "" || ev.Attrs[audit.KeyCaseTenant] != "nord" || ev.Attrs[audit.KeyRecipientKey] != rcpt ||
		!strings.Contains(ev.Attrs[audit.KeyContact], "none configured") {
		t.Fatalf("request event %+v", ev)
	}
	approve := "disclose approve " + caseID
	if code, _, errOut := g.run("carol", approve); code == 0 || !strings.Contains(errOut, "requester of a disclosure case may not approve it") {
		t.Errorf("self-approval: %d %s", code, errOut)
	}
	if code, out, errOut := g.run("bob", approve); code != 0 || !strings.Contains(out, "none by the data protection officer") {
		t.Fatalf("bob's approval: %d %s %s", code, out, errOut)
	}
	syncLog(g)
	if code, _, errOut := g.run("bob", approve); code == 0 || !strings.Contains(errOut, "approved case "+caseID+" already") {
		t.Errorf("bob twice: %d %s", code, errOut)
	}
	if code, out, errOut := g.run("dora", approve); code != 0 || !strings.Contains(out, "the case is approved") {
		t.Fatalf("dora's approval: %d %s %s", code, out, errOut)
	}
	syncLog(g)
	ev = g.events[len(g.events)-1]
	if ev.Type != audit.DisclosureApproved || ev.Person != "dora" || ev.Attrs[audit.KeyDPO] != "true" || ev.Attrs[audit.KeyApprovals] != "2" {
		t.Fatalf("approval event %+v", ev)
	}
	if code, out, _ := g.run("bob", "disclose show "+caseID); code != 0 || !strings.Contains(out, "state: approved") || !strings.Contains(out, "approved by dora (dpo)") {
		t.Errorf("show: %s", out)
	}
}
