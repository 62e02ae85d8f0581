package policy

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

func TestMayReadAudit(t *testing.T) {
	cfg := &config.Config{
		Hosts: []config.Host{
			{Name: "a-db", Tenant: "ta", Environment: config.Production},
			{Name: "a-web", Tenant: "ta", Environment: config.Test},
			{Name: "b-db", Tenant: "tb", Environment: config.Test},
		},
		Roles: []config.Role{
			{ID: "auditor-a", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "ta"}, Audit: true}}},
			{ID: "auditor-test", Allow: []config.Rule{{Hosts: config.Selector{Environment: config.Test}, Audit: true}}},
			{ID: "auditor-all", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"*"}}, Audit: true}}},
			{ID: "reader-a", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "ta"}, Logins: []string{"root"}, Read: true}}},
			{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "ta"}, Logins: []string{"root"}}}},
		},
	}
	e := New(cfg)
	for _, c := range []struct {
		name   string
		p      *config.Person
		tenant string
		want   bool
	}{
		{"grant for the tenant", person("ann", "auditor-a"), "ta", true},
		{"grant for another tenant", person("ann", "auditor-a"), "tb", false},
		{"selector by environment matches a host of each tenant", person("tom", "auditor-test"), "tb", true},
		{"a matched host makes the whole tenant readable", person("tom", "auditor-test"), "ta", true},
		{"all hosts", person("al", "auditor-all"), "tb", true},
		{"a tenant without hosts is matched by nothing", person("al", "auditor-all"), "tc", false},
		{"events of no tenant are the operator's", person("al", "auditor-all"), "", false},
		{"read: true is not audit", person("rita", "reader-a"), "ta", false},
		{"external never, whatever else", person("xena", "ext", "auditor-all"), "ta", false},
		{"no person", nil, "ta", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := e.MayReadAudit(c.p, c.tenant); got != c.want {
				t.Errorf("MayReadAudit(%s) = %v, want %v", c.tenant, got, c.want)
			}
		})
	}
}

func TestMayConfigure(t *testing.T) {
	cfg := &config.Config{Roles: []config.Role{
		{ID: "ops", Permissions: []string{config.PermissionConfigure}, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
		{ID: "locker", Permissions: []string{config.PermissionLock}, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
		{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
	}}
	e := New(cfg)
	k := ecdsaKey(t, "2026-06-01")
	lapsed := person("otto", "ops")
	lapsed.Obligations.TrainingValidUntil = date("2026-01-01")
	for _, c := range []struct {
		name   string
		p      *config.Person
		lock   string
		want   Verdict
		reason string
	}{
		{"configure permission", person("otto", "ops"), "", Allow, ""},
		{"lock is not configure", person("lena", "locker"), "", Deny, "lena may not reload the configuration: no role of theirs has the permission configure"},
		{"external with configure permission", person("xena", "ext", "ops"), "", Deny, "external experts never reload the configuration"},
		{"locked", person("otto", "ops"), "left", Deny, "your account is locked"},
		{"obligations lapsed", lapsed, "", Deny, "training expired"},
		{"unknown person", nil, "", Deny, "unknown person"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := e.MayConfigure(c.p, k, testNow, c.lock)
			if d.Verdict != c.want || !strings.Contains(d.Reason, c.reason) || (c.want == Allow && d.Reason != "") {
				t.Fatalf("got %v %q, want %v %q", d.Verdict, d.Reason, c.want, c.reason)
			}
		})
	}
}
