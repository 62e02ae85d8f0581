package policy

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

func TestFrozen(t *testing.T) {
	cfg := testConfig()
	host, tenant, label := Freeze{ID: "h", Kind: FreezeHost, Value: "db1"}, Freeze{ID: "t", Kind: FreezeTenant, Value: "globex"},
		Freeze{ID: "l", Kind: FreezeLabel, Value: "tier=gold"}
	for _, tc := range []struct {
		name    string
		host    *config.Host
		freezes []Freeze
		want    string // the id of the freeze that selects the host; "" none
	}{
		{"no freezes", cfg.Host("db1"), nil, ""},
		{"host by name", cfg.Host("db1"), []Freeze{host}, "h"},
		{"another host's name", cfg.Host("web1"), []Freeze{host}, ""},
		{"tenant", cfg.Host("app1"), []Freeze{tenant}, "t"},
		{"another tenant", cfg.Host("db1"), []Freeze{tenant}, ""},
		{"label", cfg.Host("db2"), []Freeze{label}, "l"},
		{"label with another value", cfg.Host("db1"), []Freeze{{ID: "l", Kind: FreezeLabel, Value: "role=web"}}, ""},
		{"label key the host lacks", cfg.Host("web1"), []Freeze{label}, ""},
		{"label without =", cfg.Host("db1"), []Freeze{{ID: "l", Kind: FreezeLabel, Value: "role"}}, ""},
		{"first match wins", cfg.Host("db2"), []Freeze{label, tenant}, "l"},
		{"all (forged table)", cfg.Host("web1"), []Freeze{{ID: "*", Kind: FreezeAll}}, "*"},
		{"unknown kind selects all", cfg.Host("web1"), []Freeze{{ID: "x", Kind: "zone"}}, "x"},
		{"nil host is frozen by any freeze", nil, []Freeze{host}, "h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := Frozen(tc.host, tc.freezes)
			if ok != (tc.want != "") || f.ID != tc.want {
				t.Fatalf("Frozen = %q %v, want %q", f.ID, ok, tc.want)
			}
		})
	}
}

func TestAuthorizeFrozen(t *testing.T) {
	cfg := testConfig()
	cfg.Roles = append(cfg.Roles,
		config.Role{ID: "responder", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root"}, Incident: true}}},
		config.Role{ID: "ext-incident", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root"}, Incident: true}}})
	e := New(cfg)
	frozen := []Freeze{{ID: "f1", Kind: FreezeTenant, Value: "acme", Reason: "CVE-2026-1 on acme"}}
	for _, tc := range []struct {
		name    string
		person  *config.Person
		host    string
		action  Action
		pty     bool
		freezes []Freeze
		want    Verdict
		reason  string
	}{
		{"not frozen: test host alone", person("alice", "acme-admin"), "web1", ActionShell, true, nil, Allow, ""},
		{"frozen: shell refused with the reason", person("alice", "acme-admin"), "web1", ActionShell, true, frozen, Deny, "web1 is frozen (tenant acme): CVE-2026-1 on acme"},
		{"frozen: exec refused", person("alice", "acme-admin"), "web1", ActionExec, false, frozen, Deny, "is frozen"},
		{"frozen: sftp refused", person("alice", "acme-admin"), "web1", ActionSFTP, false, frozen, Deny, "is frozen"},
		{"frozen: four-eyes host refused", person("alice", "acme-admin"), "db1", ActionShell, true, frozen, Deny, "db1 is frozen"},
		{"incident: terminal session needs a second person even on a test host", person("ivan", "responder"), "web1", ActionShell, true, frozen, NeedsSecondPerson, "incident session"},
		{"incident: on a four-eyes host too", person("ivan", "responder"), "db1", ActionShell, true, frozen, NeedsSecondPerson, "incident session"},
		{"incident: command with a terminal is interactive", person("ivan", "responder"), "db1", ActionExec, true, frozen, NeedsSecondPerson, "incident session"},
		{"incident: no terminal, no incident session", person("ivan", "responder"), "web1", ActionExec, false, frozen, Deny, "is frozen"},
		{"incident: no forward", person("ivan", "responder"), "web1", ActionShell, false, frozen, Deny, "is frozen"},
		{"incident grant elsewhere does not count", person("ivan", "responder", "globex-deploy"), "lab-1", ActionShell, true,
			[]Freeze{{Kind: FreezeHost, Value: "lab-1", Reason: "r"}}, Deny, "lab-1 is frozen"},
		{"external with an incident flag", person("xena", "ext-incident"), "web1", ActionShell, true, frozen, Deny, "is frozen"},
		{"no grant: no word of the freeze", person("tom", "tester"), "db1", ActionShell, true, frozen, Deny, "has no access"},
		{"lock before freeze", person("alice", "acme-admin"), "web1", ActionShell, true, frozen, Deny, "locked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Request{Person: tc.person, Host: cfg.Host(tc.host), Login: "root", Action: tc.action, PTY: tc.pty, Now: testNow, Freezes: tc.freezes}
			if tc.name == "lock before freeze" {
				r.Lock = "locked: laptop lost"
			}
			d := e.Authorize(r)
			if d.Verdict != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Authorize = %v %q, want %v %q", d.Verdict, d.Reason, tc.want, tc.reason)
			}
		})
	}
	// A forward on a frozen host is refused, also for an incident holder.
	cfg.Roles[len(cfg.Roles)-2].Allow[0].Forward = []string{"localhost:5432"}
	e = New(cfg)
	d := e.Authorize(Request{Person: person("ivan", "responder"), Host: cfg.Host("web1"), Login: "root", Action: ActionForward,
		ForwardTo: "localhost:5432", Now: testNow, Freezes: frozen})
	if d.Verdict != Deny || !strings.Contains(d.Reason, "is frozen") {
		t.Fatalf("forward: %v %q", d.Verdict, d.Reason)
	}

	// Jump: refused to the frozen host unless an incident session may follow.
	if d := e.MayJump(person("alice", "acme-admin"), nil, cfg.Host("web1"), testNow, "", frozen); d.Verdict != Deny || !strings.Contains(d.Reason, "CVE-2026-1") {
		t.Errorf("jump: %v %q", d.Verdict, d.Reason)
	}
	if d := e.MayJump(person("ivan", "responder"), nil, cfg.Host("web1"), testNow, "", frozen); d.Verdict != Allow {
		t.Errorf("incident jump: %v %q", d.Verdict, d.Reason)
	}

	// Join: only an incident holder's session on a frozen host.
	cfg.Persons = []config.Person{*person("ivan", "responder"), *person("alice", "acme-admin")}
	cfg.Roles = append(cfg.Roles, config.Role{ID: "peer", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Join: []string{config.JoinPeer}}}})
	e = New(cfg)
	j := JoinRequest{Person: person("paula", "peer"), Host: cfg.Host("web1"), Now: testNow, Freezes: frozen}
	j.Owner = "alice"
	if d := e.Join(j); d.Verdict != Deny || !strings.Contains(d.Reason, "is frozen") {
		t.Errorf("join a frozen host's session: %v %q", d.Verdict, d.Reason)
	}
	j.Owner = "ivan"
	if d := e.Join(j); d.Verdict != Allow {
		t.Errorf("join an incident session: %v %q", d.Verdict, d.Reason)
	}

	// Live sessions: only an incident session with its second person stays.
	for _, tc := range []struct {
		name     string
		owner    *config.Person
		fourEyes bool
		ends     bool
	}{
		{"ordinary session ends", person("alice", "acme-admin"), true, true},
		{"incident holder alone ends", person("ivan", "responder"), false, true},
		{"incident four-eyes session stays", person("ivan", "responder"), true, false},
	} {
		why := e.SurvivesFreeze(tc.owner, cfg.Host("web1"), tc.fourEyes, frozen)
		if (why != "") != tc.ends {
			t.Errorf("%s: SurvivesFreeze = %q", tc.name, why)
		}
	}
	if why := e.SurvivesFreeze(person("alice", "acme-admin"), cfg.Host("app1"), false, frozen); why != "" {
		t.Errorf("unfrozen host: %q", why)
	}
}

func TestMayFreeze(t *testing.T) {
	rule := []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}
	e := New(&config.Config{Roles: []config.Role{
		{ID: "sec", Permissions: []string{config.PermissionFreeze}, Allow: rule},
		{ID: "locker", Permissions: []string{config.PermissionLock}, Allow: rule},
		{ID: "ext", External: true, Allow: rule},
	}})
	for _, tc := range []struct {
		p      *config.Person
		want   Verdict
		reason string
	}{
		{person("sina", "sec"), Allow, ""},
		{person("lena", "locker"), Deny, "lena may not freeze or unfreeze: no role of theirs has the permission freeze"},
		{person("xena", "ext", "sec"), Deny, "external experts never freeze or unfreeze"},
		{nil, Deny, "only a configured person"},
	} {
		if d := e.MayFreeze(tc.p); d.Verdict != tc.want || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("MayFreeze(%v) = %v %q, want %v %q", tc.p, d.Verdict, d.Reason, tc.want, tc.reason)
		}
	}
}
