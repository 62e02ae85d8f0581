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
		{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
	}}
	e := New(cfg)
	aud := &config.Person{ID: "dora", Roles: []string{"auditor-t1"}}
	adm := &config.Person{ID: "alice", Roles: []string{"admin"}}
	// A Config built in code may give an external a read right; the
	// engine still refuses (the config package refuses such a file).
	ext := &config.Person{ID: "xena", Roles: []string{"auditor-t1", "ext"}}
	for _, c := range []struct {
		p    *config.Person
		h    *config.Host
		want bool
	}{{aud, &db1, true}, {aud, &db2, false}, {adm, &db1, false}, {ext, &db1, false}} {
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

func TestJoinFIDO2(t *testing.T) {
	host := config.Host{Name: "db1", Tenant: "t1", Environment: config.Production}
	test := config.Host{Name: "tst1", Tenant: "t1", Environment: config.Test}
	cfg := &config.Config{
		Policy: config.Policy{RequireFIDO2: []string{config.Production}},
		Roles: []config.Role{
			{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}, Join: []string{"peer"}}}},
			{ID: "auditor", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Join: []string{"observer"}}}},
		},
		Hosts: []config.Host{host, test},
	}
	e := New(cfg)
	plain := ecdsaKey(t, "2026-06-01")
	sk := skECDSAKey(t, "2026-06-01")
	for _, c := range []struct {
		name     string
		p        *config.Person
		k        *config.Key
		h        *config.Host
		mode     string
		want     Verdict
		wantMode string
		reason   string
		hint     string
	}{
		{"peer without fido2 denied", person("bob", "admin"), plain, &host, "peer", Deny, "",
			"db1 requires a FIDO2 security key (sk-ecdsa or sk-ed25519) to type in its sessions; you logged in with ecdsa-sha2-nistp256", "join with --observer"},
		{"peer by default without fido2 denied, not downgraded", person("bob", "admin"), plain, &host, "", Deny, "", "requires a FIDO2 security key", ""},
		{"peer without any key denied", person("bob", "admin"), nil, &host, "peer", Deny, "", "you logged in with no key", ""},
		{"peer with fido2 allowed", person("bob", "admin"), sk, &host, "peer", Allow, "peer", "", ""},
		{"peer without fido2 may observe", person("bob", "admin"), plain, &host, "observer", Allow, "observer", "", ""},
		{"observer without fido2 allowed", person("dora", "auditor"), plain, &host, "", Allow, "observer", "", ""},
		{"peer without fido2 on a test host allowed", person("bob", "admin"), plain, &test, "peer", Allow, "peer", "", ""},
		{"no host denied", person("bob", "admin"), sk, nil, "peer", Deny, "", "no longer configured", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := e.Join(JoinRequest{Person: c.p, Key: c.k, Owner: "alice", Host: c.h, Mode: c.mode, Now: testNow})
			if d.Verdict != c.want || d.Mode != c.wantMode {
				t.Fatalf("got %v mode %q (%s), want %v %q", d.Verdict, d.Mode, d.Reason, c.want, c.wantMode)
			}
			if !strings.Contains(d.Reason, c.reason) || !strings.Contains(d.Hint, c.hint) {
				t.Errorf("reason %q / hint %q, want %q / %q", d.Reason, d.Hint, c.reason, c.hint)
			}
		})
	}
}

func TestMayLock(t *testing.T) {
	cfg := &config.Config{Roles: []config.Role{
		{ID: "locker", Permissions: []string{config.PermissionLock}, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
		{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
		{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
	}}
	e := New(cfg)
	k := ecdsaKey(t, "2026-06-01")
	lapsed := person("lena", "locker")
	lapsed.Obligations.TrainingValidUntil = date("2026-01-01")
	for _, c := range []struct {
		name   string
		p      *config.Person
		lock   string
		want   Verdict
		reason string
	}{
		{"lock permission", person("lena", "locker"), "", Allow, ""},
		{"lock permission among other roles", person("lena", "admin", "locker"), "", Allow, ""},
		{"no lock permission", person("alice", "admin"), "", Deny, "alice may not lock or unlock persons: no role of theirs has the permission lock"},
		{"external with lock permission", person("xena", "ext", "locker"), "", Deny, "external experts never lock or unlock persons"},
		{"locked locker", person("lena", "locker"), "left the company", Deny, "your account is locked"},
		{"obligations lapsed", lapsed, "", Deny, "training expired"},
		{"unknown person", nil, "", Deny, "unknown person"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := e.MayLock(c.p, k, testNow, c.lock)
			if d.Verdict != c.want || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("got %v %q, want %v %q", d.Verdict, d.Reason, c.want, c.reason)
			}
			if c.want == Allow && d.Reason != "" {
				t.Errorf("Allow with reason %q", d.Reason)
			}
		})
	}
}

// TestLockedDeniedEverywhere: a lock (M5) refuses every kind of decision,
// whatever else the person may do.
func TestLockedDeniedEverywhere(t *testing.T) {
	c := requestConfig()
	c.Roles = append(c.Roles, config.Role{ID: "all", Permissions: []string{config.PermissionLock}, Allow: []config.Rule{
		{Hosts: config.Selector{Names: []string{"*"}}, Logins: []string{"root"}, Join: []string{"peer"}, Approve: true, Read: true}}})
	e := New(c)
	k := ecdsaKey(t, "2026-06-01")
	p := person("lena", "all")
	var db1, web1 *config.Host
	for i := range c.Hosts {
		switch c.Hosts[i].Name {
		case "db1":
			db1 = &c.Hosts[i]
		case "web1":
			web1 = &c.Hosts[i]
		}
	}
	const lock = "suspected key theft"
	window := RequestWindow{ID: "r1", Requester: "lena", Hosts: []string{"db1"}, Login: "root",
		From: testNow.Add(-time.Hour), Until: testNow.Add(time.Hour), Approved: true, TTY: true}
	decisions := map[string]func(lock string) Decision{
		"authorize test shell": func(lock string) Decision {
			return e.Authorize(Request{Person: p, Key: k, Host: web1, Login: "root", Action: ActionShell, PTY: true, Now: testNow, Lock: lock})
		},
		"authorize exec under request": func(lock string) Decision {
			return e.Authorize(Request{Person: p, Key: k, Host: db1, Login: "root", Action: ActionExec, PTY: true, Now: testNow, Lock: lock, Requests: []RequestWindow{window}})
		},
		"join": func(lock string) Decision {
			return e.Join(JoinRequest{Person: p, Key: k, Owner: "alice", Host: db1, Now: testNow, Lock: lock}).Decision
		},
		"decide": func(lock string) Decision {
			return e.CanDecide(p, k, "alice", []*config.Host{db1}, testNow, lock)
		},
		"request": func(lock string) Decision {
			return e.CheckRequest(p, k, []*config.Host{db1}, "root", time.Hour, "TICKET-1 rotate keys", testNow, lock)
		},
		"lock": func(lock string) Decision { return e.MayLock(p, k, testNow, lock) },
	}
	for name, decide := range decisions {
		if d := decide(""); d.Verdict != Allow {
			t.Errorf("%s unlocked: %v %q, want allow", name, d.Verdict, d.Reason)
		}
		if d := decide(lock); d.Verdict != Deny || d.Reason != "your account is locked: "+lock || d.Request != "" || d.Terminal {
			t.Errorf("%s locked: %+v, want a deny naming the lock", name, d)
		}
	}
}

func TestMayListSession(t *testing.T) {
	cfg := &config.Config{
		Roles: []config.Role{
			{ID: "admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}, Join: []string{"peer"}}}},
			{ID: "auditor", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Join: []string{"observer"}}}},
			{ID: "login-only", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}},
			{ID: "other", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "t2"}, Join: []string{"peer"}}}},
		},
	}
	e := New(cfg)
	h := &config.Host{Name: "db1", Tenant: "t1", Environment: config.Production}
	p := func(id string, roles ...string) *config.Person { return &config.Person{ID: id, Roles: roles} }
	tests := []struct {
		name   string
		person *config.Person
		owner  string
		host   *config.Host
		want   bool
	}{
		{"owner without any join right", p("olga", "login-only"), "olga", h, true},
		{"owner of a session on a removed host", p("olga"), "olga", nil, true},
		{"peer on the host", p("alice", "admin"), "olga", h, true},
		{"observer on the host", p("dora", "auditor"), "olga", h, true},
		{"a login is no join right", p("lena", "login-only"), "olga", h, false},
		{"join right elsewhere only", p("otto", "other"), "olga", h, false},
		{"no host: only the owner", p("alice", "admin"), "olga", nil, false},
		{"empty id owns nothing", p("", "login-only"), "", h, false},
		{"nobody", nil, "olga", h, false},
	}
	for _, tc := range tests {
		if got := e.MayListSession(tc.person, tc.owner, tc.host); got != tc.want {
			t.Errorf("%s: MayListSession = %v, want %v", tc.name, got, tc.want)
		}
	}
}
