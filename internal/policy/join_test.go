package policy

import (
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
)

func TestJoin(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ok := config.Obligations{
		ConfidentialitySigned: config.Date{Time: now.AddDate(0, -1, 0)},
		TrainingValidUntil:    config.Date{Time: now.AddDate(1, 0, 0)},
		ContractUntil:         config.Date{Time: now.AddDate(1, 0, 0)},
		NDASigned:             config.Date{Time: now.AddDate(0, -1, 0)},
	}
	host := config.Host{Name: "db1", Tenant: "t1", Environment: config.Production}
	cfg := &config.Config{
		Roles: []config.Role{
			{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}, Join: []string{"peer"}}}},
			{ID: "auditor", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"*"}}, Join: []string{"observer"}}}},
			{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Join: []string{"peer"}}}},
			{ID: "other", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t2"}, Join: []string{"peer"}}}},
		},
		Hosts: []config.Host{host},
	}
	mk := func(id string, roles ...string) *config.Person {
		return &config.Person{ID: id, Name: id, Roles: roles, Obligations: ok}
	}
	k := ecdsaKey(t, now.AddDate(0, 0, -10).Format(time.DateOnly))
	e := New(cfg)
	cases := []struct {
		name     string
		p        *config.Person
		mode     string
		verdict  Verdict
		wantMode string
		external bool
		reason   string
	}{
		{"peer by default", mk("bob", "admin"), "", Allow, "peer", false, ""},
		{"peer may observe", mk("bob", "admin"), "observer", Allow, "observer", false, ""},
		{"observer only", mk("dora", "auditor"), "", Allow, "observer", false, ""},
		{"observer asks peer", mk("dora", "auditor"), "peer", Deny, "", false, "only as observer"},
		{"self join", mk("alice", "admin"), "", Deny, "", false, "own session"},
		{"no join grant", mk("eve", "other"), "", Deny, "", false, "may not join"},
		{"external flagged", mk("xena", "ext"), "", Allow, "peer", true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Join(JoinRequest{Person: c.p, Key: k, Owner: "alice", Host: &host, Mode: c.mode, Now: now})
			if d.Verdict != c.verdict || d.Mode != c.wantMode || d.External != c.external {
				t.Fatalf("got %v mode %q external %v (%s), want %v %q %v", d.Verdict, d.Mode, d.External, d.Reason, c.verdict, c.wantMode, c.external)
			}
			if c.reason != "" && !strings.Contains(d.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, c.reason)
			}
		})
	}
	locked := e.Join(JoinRequest{Person: mk("bob", "admin"), Key: k, Owner: "alice", Host: &host, Now: now, Lock: "left"})
	if locked.Verdict != Deny {
		t.Error("a locked person may join")
	}
}

func TestMayRead(t *testing.T) {
	db1 := config.Host{Name: "db1", Tenant: "t1", Environment: config.Production}
	db2 := config.Host{Name: "db2", Tenant: "t2", Environment: config.Production}
	cfg := &config.Config{Roles: []config.Role{
		{ID: "auditor-t1", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Read: true}}},
		{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"*"}}, Logins: []string{"root"}}}},
	}}
	e := New(cfg)
	aud := &config.Person{ID: "dora", Roles: []string{"auditor-t1"}}
	adm := &config.Person{ID: "alice", Roles: []string{"admin"}}
	for _, c := range []struct {
		p    *config.Person
		h    *config.Host
		want bool
	}{{aud, &db1, true}, {aud, &db2, false}, {adm, &db1, false}} {
		if got := e.MayRead(c.p, c.h); got != c.want {
			t.Errorf("MayRead(%s, %s) = %v, want %v", c.p.ID, c.h.Name, got, c.want)
		}
	}
}

func TestRequireFIDO2(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	prod := config.Host{Name: "db1", Tenant: "t1", Environment: config.Production}
	test := config.Host{Name: "t1", Tenant: "t1", Environment: config.Test}
	cfg := &config.Config{
		Policy: config.Policy{RequireFIDO2: []string{config.Production}},
		Roles:  []config.Role{{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}}},
		Hosts:  []config.Host{prod, test},
	}
	p := &config.Person{ID: "alice", Name: "Alice", Roles: []string{"admin"}, Obligations: goodObligations()}
	k := ecdsaKey(t, now.AddDate(0, 0, -10).Format(time.DateOnly))
	e := New(cfg)
	d := e.Authorize(Request{Person: p, Key: k, Host: &prod, Login: "root", Action: ActionShell, Now: now})
	if d.Verdict != Deny || !strings.Contains(d.Reason, "FIDO2") {
		t.Errorf("plain key on production: %v %q", d.Verdict, d.Reason)
	}
	d = e.Authorize(Request{Person: p, Key: k, Host: &test, Login: "root", Action: ActionShell, Now: now})
	if d.Verdict != Allow {
		t.Errorf("plain key on test: %v %q", d.Verdict, d.Reason)
	}
	sk := &config.Key{Key: "sk-ecdsa-sha2-nistp256@openssh.com AAAA", Added: k.Added}
	if !isFIDO2(sk) || isFIDO2(k) {
		t.Error("isFIDO2 misclassifies keys")
	}
}
