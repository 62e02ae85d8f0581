package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
)

// requestConfig is an estate for access requests: production, staging with
// real data and test hosts, approvers of different reach and an external.
func requestConfig() *config.Config {
	return &config.Config{
		Tenants: []config.Tenant{{ID: "acme"}, {ID: "schule-nord"}},
		Hosts: []config.Host{
			{Name: "db1", Tenant: "acme", Environment: config.Production, Labels: map[string]string{"service": "postgres"}},
			{Name: "db2", Tenant: "acme", Environment: config.Production, Labels: map[string]string{"service": "postgres"}},
			{Name: "web1", Tenant: "acme", Environment: config.Test, Labels: map[string]string{"service": "moodle"}},
			{Name: "stg1", Tenant: "acme", Environment: config.Staging, RealData: true, Labels: map[string]string{"service": "moodle"}},
			{Name: "moodle1", Tenant: "schule-nord", Environment: config.Production, Labels: map[string]string{"service": "moodle"}},
			{Name: "moodle2", Tenant: "schule-nord", Environment: config.Test, Labels: map[string]string{"service": "moodle"}},
			{Name: "odd", Tenant: "acme", Environment: "lab"}, // not a known environment
		},
		Roles: []config.Role{
			{ID: "acme-ops", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root", "deploy"}}}},
			{ID: "db1-only", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"db1"}}, Logins: []string{"postgres"}}}},
			{ID: "db-ops", Allow: []config.Rule{{Hosts: config.Selector{Labels: map[string]string{"service": "postgres"}}, Logins: []string{"postgres"}}}},
			{ID: "db1-approver", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"db1"}}, Approve: true}}},
			{ID: "acme-approver", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Approve: true}}},
			{ID: "ops-no-approve", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root"}, Join: []string{"peer"}}}},
			{ID: "ext", External: true, Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root"}, Approve: true}}},
		},
	}
}

func TestRequestRules(t *testing.T) {
	key := ecdsaKey(t, "2026-06-01")
	hosts := func(e *Engine, names string) []*config.Host {
		if names == "" {
			return nil
		}
		var out []*config.Host
		for _, n := range strings.Split(names, ",") {
			found := false
			for i := range e.cfg.Hosts {
				if e.cfg.Hosts[i].Name == n {
					out = append(out, &e.cfg.Hosts[i])
					found = true
				}
			}
			if !found {
				t.Fatalf("test host %q not configured", n)
			}
		}
		return out
	}
	const goodReason = "vacuum after import, TICKET-42"
	skKey := skECDSAKey(t, "2026-06-01")
	requireFIDO2 := func(c *config.Config) { c.Policy.RequireFIDO2 = []string{config.Production} }

	type row struct {
		name      string
		cfg       func(*config.Config)
		op        string // "check" (CheckRequest) or "decide" (CanDecide)
		person    *config.Person
		hosts     string
		login     string        // check
		d         time.Duration // check; 0 means 1h unless zeroD
		zeroD     bool
		reason    *string     // check; nil: goodReason
		requester string      // decide
		key       *config.Key // nil: an ECDSA key
		noKey     bool        // no key at all
		lock      string
		want      Verdict
		substr    string // in Reason (Deny) or in a Warning (Allow)
	}
	str := func(s string) *string { return &s }
	rows := []row{
		// Creating a request.
		{name: "request: allowed", op: "check", person: person("alice", "acme-ops"), hosts: "db1,db2", login: "root", want: Allow},
		{name: "request: no hosts", op: "check", person: person("alice", "acme-ops"), login: "root", want: Deny, substr: "names no host"},
		{name: "request: no login", op: "check", person: person("alice", "acme-ops"), hosts: "db1", want: Deny, substr: "names no login"},
		{name: "request: login lacking on one host", op: "check", person: person("dan", "db1-only"), hosts: "db1,db2", login: "postgres",
			want: Deny, substr: "dan may not log in as postgres on db2"},
		{name: "request: login not granted anywhere", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "postgres",
			want: Deny, substr: "may not log in as postgres on db1"},
		{name: "request: 8h is the default cap", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", d: 8 * time.Hour, want: Allow},
		{name: "request: 8h1m over the cap", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", d: 8*time.Hour + time.Minute,
			want: Deny, substr: "at most 8h0m0s"},
		{name: "request: custom cap", op: "check", cfg: func(c *config.Config) { c.Policy.MaxRequestDuration.Duration = 2 * time.Hour },
			person: person("alice", "acme-ops"), hosts: "db1", login: "root", d: 3 * time.Hour, want: Deny, substr: "at most 2h0m0s"},
		{name: "request: custom cap, inside", op: "check", cfg: func(c *config.Config) { c.Policy.MaxRequestDuration.Duration = 2 * time.Hour },
			person: person("alice", "acme-ops"), hosts: "db1", login: "root", d: 2 * time.Hour, want: Allow},
		{name: "request: zero duration", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", zeroD: true,
			want: Deny, substr: "longer than 0"},
		{name: "request: negative duration", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", d: -time.Hour,
			want: Deny, substr: "longer than 0"},
		{name: "request: empty reason", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", reason: str("   "),
			want: Deny, substr: "reason must say"},
		{name: "request: short reason", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", reason: str("fix stuff"),
			want: Deny, substr: "reason must say"},
		{name: "request: reason of ten characters", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", reason: str("TICKET-123"), want: Allow},
		{name: "request: multi-line reason", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", reason: str("backup\nrm -rf / please"),
			want: Deny, substr: "one line"},
		{name: "request: locked requester", op: "check", person: person("alice", "acme-ops"), hosts: "db1", login: "root", lock: "left the company",
			want: Deny, substr: "locked"},
		{name: "request: external on four-eyes host", op: "check", person: person("xena", "ext"), hosts: "db1", login: "root",
			want: Deny, substr: "external experts never request access: they work only under supervision, in a session an employee joins"},
		{name: "request: external on test host", op: "check", person: person("xena", "ext"), hosts: "web1", login: "root",
			want: Deny, substr: "external experts never request access"},
		{name: "request: external with an employee role too", op: "check", person: person("xena", "ext", "acme-ops"), hosts: "web1", login: "root",
			want: Deny, substr: "external experts never request access"},
		{name: "request: employee on test host", op: "check", person: person("alice", "acme-ops"), hosts: "web1", login: "root",
			want: Allow, substr: "web1 does not need a request"},
		{name: "request: non-four-eyes host warns", op: "check", person: person("alice", "acme-ops"), hosts: "db1,web1", login: "root",
			want: Allow, substr: "web1 does not need a request"},

		// Deciding a request.
		{name: "decide: approver covers all", op: "decide", person: person("bob", "acme-approver"), hosts: "db1,db2,stg1", requester: "alice", want: Allow},
		{name: "decide: self-approval", op: "decide", person: person("bob", "acme-approver", "acme-ops"), hosts: "db1", requester: "bob",
			want: Deny, substr: "you cannot approve your own request"},
		{name: "decide: scope not covered", op: "decide", person: person("carl", "db1-approver"), hosts: "db1,db2", requester: "alice",
			want: Deny, substr: "carl may not approve requests for db2"},
		{name: "decide: scope covered exactly", op: "decide", person: person("carl", "db1-approver"), hosts: "db1", requester: "alice", want: Allow},
		{name: "decide: external approver", op: "decide", person: person("xena", "ext"), hosts: "db1", requester: "alice",
			want: Deny, substr: "external experts never approve"},
		{name: "decide: external with an employee role too", op: "decide", person: person("xena", "ext", "acme-approver"), hosts: "db1", requester: "alice",
			want: Deny, substr: "external experts never approve"},
		{name: "decide: logins but no approve flag", op: "decide", person: person("dora", "ops-no-approve"), hosts: "db1", requester: "alice",
			want: Deny, substr: "dora may not approve requests for db1"},
		{name: "decide: other tenant", op: "decide", person: person("bob", "acme-approver"), hosts: "moodle1", requester: "alice",
			want: Deny, substr: "may not approve requests for moodle1"},
		{name: "decide: locked approver", op: "decide", person: person("bob", "acme-approver"), hosts: "db1", requester: "alice", lock: "suspicious logins",
			want: Deny, substr: "locked"},
		{name: "decide: obligations lapsed", op: "decide", person: func() *config.Person {
			p := person("bob", "acme-approver")
			p.Obligations.TrainingValidUntil = date("2026-01-01")
			return p
		}(), hosts: "db1", requester: "alice", want: Deny, substr: "training"},
		{name: "decide: fido2 host, approver without fido2 key", op: "decide", cfg: requireFIDO2, person: person("bob", "acme-approver"), hosts: "web1,db1", requester: "alice",
			want: Deny, substr: "db1 requires a FIDO2 security key (sk-ecdsa or sk-ed25519) to approve its requests; you logged in with ecdsa-sha2-nistp256"},
		{name: "decide: fido2 host, approver with fido2 key", op: "decide", cfg: requireFIDO2, person: person("bob", "acme-approver"), key: skKey, hosts: "web1,db1", requester: "alice", want: Allow},
		{name: "decide: fido2 host, no key fails closed", op: "decide", cfg: requireFIDO2, person: person("bob", "acme-approver"), noKey: true, hosts: "db1", requester: "alice",
			want: Deny, substr: "you logged in with no key"},
		{name: "decide: fido2 only for production, test host without", op: "decide", cfg: requireFIDO2, person: person("bob", "acme-approver"), hosts: "web1", requester: "alice", want: Allow},
		{name: "decide: no hosts", op: "decide", person: person("bob", "acme-approver"), requester: "alice", want: Deny, substr: "names no host"},
		{name: "decide: unknown person", op: "decide", hosts: "db1", requester: "alice", want: Deny, substr: "unknown person"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c := requestConfig()
			if r.cfg != nil {
				r.cfg(c)
			}
			e := New(c)
			k := key
			if r.key != nil {
				k = r.key
			}
			if r.noKey {
				k = nil
			}
			var d Decision
			switch r.op {
			case "check":
				dur := r.d
				if dur == 0 && !r.zeroD {
					dur = time.Hour
				}
				reason := goodReason
				if r.reason != nil {
					reason = *r.reason
				}
				d = e.CheckRequest(r.person, k, hosts(e, r.hosts), r.login, dur, reason, testNow, r.lock)
			case "decide":
				d = e.CanDecide(r.person, k, r.requester, hosts(e, r.hosts), testNow, r.lock)
			default:
				t.Fatalf("unknown op %q", r.op)
			}
			if d.Verdict != r.want {
				t.Fatalf("verdict %v (%q), want %v", d.Verdict, d.Reason, r.want)
			}
			if strings.ContainsAny(d.Reason, "\r\n") {
				t.Errorf("reason spans lines: %q", d.Reason)
			}
			if r.want == Deny {
				if d.Reason == "" || !strings.Contains(d.Reason, r.substr) {
					t.Errorf("reason %q lacks %q", d.Reason, r.substr)
				}
				return
			}
			if d.Reason != "" {
				t.Errorf("Allow with reason %q", d.Reason)
			}
			found := r.substr == ""
			for _, w := range d.Warnings {
				found = found || strings.Contains(w, r.substr)
			}
			if !found {
				t.Errorf("warnings %q lack %q", d.Warnings, r.substr)
			}
			if r.substr == "" && len(d.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", d.Warnings)
			}
		})
	}
}

func TestApproversNeeded(t *testing.T) {
	for _, tt := range []struct {
		name      string
		approvers map[string]int
		hosts     []string
		want      int
	}{
		{"unset: one", nil, []string{"db1", "web1"}, 1},
		{"production needs two", map[string]int{"production": 2}, []string{"db1"}, 2},
		{"maximum over hosts", map[string]int{"production": 2, "staging": 3, "test": 1}, []string{"db1", "stg1", "web1"}, 3},
		{"test only", map[string]int{"production": 2}, []string{"web1", "moodle2"}, 1},
		{"unknown environment takes the largest", map[string]int{"production": 4, "test": 1}, []string{"web1", "odd"}, 4},
		{"zero entry reads as one", map[string]int{"production": 0}, []string{"db1"}, 1},
		{"no hosts", map[string]int{"production": 2}, nil, 1},
	} {
		c := requestConfig()
		c.Policy.Approvers = tt.approvers
		e := New(c)
		var hs []*config.Host
		for _, n := range tt.hosts {
			for i := range c.Hosts {
				if c.Hosts[i].Name == n {
					hs = append(hs, &c.Hosts[i])
				}
			}
		}
		if got := e.ApproversNeeded(hs); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	from := testNow
	w := RequestWindow{ID: "0a1b2c3d", Requester: "alice", Hosts: []string{"db1", "db2"}, Login: "postgres",
		From: from, Until: from.Add(2 * time.Hour), Approved: true}
	edit := func(f func(*RequestWindow)) RequestWindow {
		c := w
		c.Hosts = slices.Clone(w.Hosts)
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name   string
		w      RequestWindow
		person string
		host   string
		login  string
		now    time.Time
		want   bool
	}{
		{"inside the window", w, "alice", "db2", "postgres", from.Add(time.Hour), true},
		{"at the start", w, "alice", "db1", "postgres", from, true},
		{"just before the end", w, "alice", "db1", "postgres", from.Add(2*time.Hour - time.Nanosecond), true},
		{"expired: at the end", w, "alice", "db1", "postgres", from.Add(2 * time.Hour), false},
		{"expired: later", w, "alice", "db1", "postgres", from.Add(24 * time.Hour), false},
		{"before the window", w, "alice", "db1", "postgres", from.Add(-time.Second), false},
		{"not yet approved", edit(func(w *RequestWindow) { w.Approved = false }), "alice", "db1", "postgres", from.Add(time.Hour), false},
		{"not yet approved: no window", RequestWindow{Requester: "alice", Hosts: []string{"db1"}, Login: "postgres"}, "alice", "db1", "postgres", from, false},
		{"someone else's request", w, "bob", "db1", "postgres", from.Add(time.Hour), false},
		{"host not in request", w, "alice", "db3", "postgres", from.Add(time.Hour), false},
		{"other login", w, "alice", "db1", "root", from.Add(time.Hour), false},
		{"empty person and login", edit(func(w *RequestWindow) { w.Requester, w.Login = "", "" }), "", "db1", "", from.Add(time.Hour), false},
	} {
		if got := covers(tt.w, tt.person, tt.host, tt.login, tt.now); got != tt.want {
			t.Errorf("%s: covers = %v, want %v", tt.name, got, tt.want)
		}
	}

	// coveringWindow picks the first window that covers the work, or with
	// preferTTY the first that also grants terminals.
	other := edit(func(w *RequestWindow) { w.ID, w.Login = "ffff0000", "root" })
	tty := edit(func(w *RequestWindow) { w.ID, w.TTY = "ffff0002", true })
	second := edit(func(w *RequestWindow) { w.ID = "ffff0001" })
	alice := &config.Person{ID: "alice"}
	at := from.Add(time.Minute)
	for _, tt := range []struct {
		name      string
		ws        []RequestWindow
		login     string
		preferTTY bool
		want      string // "": none covers
	}{
		{"skips a window for another login", []RequestWindow{other, w}, "postgres", false, w.ID},
		{"first of two that cover", []RequestWindow{w, second}, "postgres", false, w.ID},
		{"none covers the login", []RequestWindow{other, w}, "deploy", false, ""},
		{"no windows", nil, "postgres", false, ""},
		{"terminals preferred over an earlier plain window", []RequestWindow{w, tty}, "postgres", true, tty.ID},
		{"plain window when none grants terminals", []RequestWindow{w, second}, "postgres", true, w.ID},
		{"without preference the first wins", []RequestWindow{w, tty}, "postgres", false, w.ID},
	} {
		r := Request{Person: alice, Host: &config.Host{Name: "db2"}, Login: tt.login, Now: at, Requests: tt.ws}
		got, ok := coveringWindow(r, tt.preferTTY)
		if tt.want == "" {
			if ok {
				t.Errorf("%s: coveringWindow = %q, want none", tt.name, got.ID)
			}
		} else if !ok || got.ID != tt.want {
			t.Errorf("%s: coveringWindow = %q, %v; want %q", tt.name, got.ID, ok, tt.want)
		}
	}
}

func TestResolveHosts(t *testing.T) {
	e := New(requestConfig())
	for _, tt := range []struct {
		selector string
		want     []string // nil: an error is expected
		err      string   // substring of the error
	}{
		{selector: "db1", want: []string{"db1"}},
		{selector: "db2, db1", want: []string{"db1", "db2"}},
		{selector: "db*", want: []string{"db1", "db2"}},
		{selector: "moodle?,web1", want: []string{"moodle1", "moodle2", "web1"}},
		{selector: "tenant=schule-nord", want: []string{"moodle1", "moodle2"}},
		{selector: "environment=production", want: []string{"db1", "db2", "moodle1"}},
		{selector: "tenant=acme,environment=production", want: []string{"db1", "db2"}},
		{selector: "label:service=moodle", want: []string{"moodle1", "moodle2", "stg1", "web1"}},
		{selector: "label:service=moodle,tenant=schule-nord,environment=test", want: []string{"moodle2"}},
		{selector: "*,tenant=acme,label:service=postgres", want: []string{"db1", "db2"}},
		{selector: "tenant = acme , environment = test", want: []string{"web1"}},
		{selector: "", err: "empty host selector"},
		{selector: "  ", err: "empty host selector"},
		{selector: "db1,,db2", err: "empty term"},
		{selector: "db1,", err: "empty term"},
		{selector: "db[", err: "not a host name or glob"},
		{selector: "db 1", err: "not a host name or glob"},
		{selector: "nosuch", err: `no host is named "nosuch"`},
		{selector: "db1,nosuch", err: `no host is named "nosuch"`},
		{selector: "zz*", err: "selects no host"},
		{selector: "tenant=globex", err: "selects no host"},
		{selector: "tenant=acme,environment=production,label:service=moodle", err: "selects no host"},
		{selector: "environment=prod", err: `environment "prod" is not one of`},
		{selector: "owner=alice", err: "unknown selector term"},
		{selector: "tenant=", err: "no valid value"},
		{selector: "label:=x", err: "names no label"},
		{selector: "tenant=acme,tenant=schule-nord", err: "tenant= given twice"},
		{selector: "label:a=1,label:a=2", err: "given twice"},
		{selector: "db1,db1", err: "named twice"},
		{selector: strings.Repeat("a", maxSelectorLen+1), err: "longer than"},
	} {
		hs, err := e.ResolveHosts(tt.selector)
		if tt.want == nil {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want one containing %q", tt.selector, err, tt.err)
			}
			if hs != nil {
				t.Errorf("%q: hosts returned with an error", tt.selector)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.selector, err)
			continue
		}
		var names []string
		for _, h := range hs {
			names = append(names, h.Name)
		}
		if !slices.Equal(names, tt.want) {
			t.Errorf("%q: %v, want %v", tt.selector, names, tt.want)
		}
	}
}

func TestMaxRequestDuration(t *testing.T) {
	if d := New(nil).MaxRequestDuration(); d != 8*time.Hour {
		t.Errorf("default = %s", d)
	}
	c := requestConfig()
	c.Policy.MaxRequestDuration.Duration = 90 * time.Minute
	if d := New(c).MaxRequestDuration(); d != 90*time.Minute {
		t.Errorf("configured = %s", d)
	}
}

// FuzzResolveHosts feeds arbitrary selector text. It must never panic; a
// result is never empty, holds only configured hosts, sorted and without
// repeats, and naming those hosts by name resolves to the same set.
func FuzzResolveHosts(f *testing.F) {
	for _, s := range []string{"db1", "db*,web1", "tenant=acme", "environment=production,label:service=moodle",
		"", ",", "db[", "label:=", "a=b=c", "tenant=acme,tenant=acme", "\x00", "*", "[!d]*", `\*`} {
		f.Add(s)
	}
	c := requestConfig()
	e := New(c)
	f.Fuzz(func(t *testing.T, selector string) {
		hs, err := e.ResolveHosts(selector)
		if err != nil {
			if hs != nil {
				t.Fatalf("%q: hosts with error", selector)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("%q: error spans lines: %q", selector, err)
			}
			return
		}
		if len(hs) == 0 {
			t.Fatalf("%q: empty result without error", selector)
		}
		names := make([]string, len(hs))
		for i, h := range hs {
			if !e.hostExists(h.Name) {
				t.Fatalf("%q: unconfigured host %q", selector, h.Name)
			}
			names[i] = h.Name
		}
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("%q: result %v not sorted or repeats", selector, names)
		}
		again, err := e.ResolveHosts(strings.Join(names, ","))
		if err != nil || len(again) != len(hs) {
			t.Fatalf("%q: re-resolving %v: %d hosts, %v", selector, names, len(again), err)
		}
	})
}

func TestMayRevoke(t *testing.T) {
	cfg := requestConfig()
	e := New(cfg)
	key := ecdsaKey(t, "2026-06-01")
	db1, web1 := cfg.Host("db1"), cfg.Host("web1")
	tests := []struct {
		name      string
		person    *config.Person
		requester string
		hosts     []*config.Host
		lock      string
		want      Verdict
		substr    string
	}{
		{"requester revokes their own", person("rita", "db1-only"), "rita", []*config.Host{db1}, "", Allow, ""},
		{"requester without any approve right", person("rita"), "rita", []*config.Host{db1, web1}, "", Allow, ""},
		{"requester whose hosts are gone", person("rita"), "rita", []*config.Host{nil}, "", Allow, ""},
		{"approver for every host", person("anna", "acme-approver"), "rita", []*config.Host{db1, web1}, "", Allow, ""},
		{"approver for part of the hosts", person("anna", "db1-approver"), "rita", []*config.Host{db1, web1}, "", Deny, "may not approve requests for web1"},
		{"no approve right", person("otto", "ops-no-approve"), "rita", []*config.Host{db1}, "", Deny, "may not approve"},
		{"external never", person("xaver", "ext"), "rita", []*config.Host{db1}, "", Deny, "external experts never"},
		{"locked approver", person("anna", "acme-approver"), "rita", []*config.Host{db1}, "gone", Deny, "locked"},
		{"a host no longer configured", person("anna", "acme-approver"), "rita", []*config.Host{db1, nil}, "", Deny, "no longer configured"},
		{"nobody", nil, "rita", []*config.Host{db1}, "", Deny, ""},
		{"empty id is nobody's request", &config.Person{Roles: []string{"acme-approver"}, Obligations: goodObligations()}, "", []*config.Host{db1}, "", Deny, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := e.MayRevoke(tc.person, key, tc.requester, tc.hosts, testNow, tc.lock)
			if d.Verdict != tc.want {
				t.Fatalf("MayRevoke = %v (%q), want %v", d.Verdict, d.Reason, tc.want)
			}
			if !strings.Contains(d.Reason, tc.substr) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.substr)
			}
		})
	}
}
