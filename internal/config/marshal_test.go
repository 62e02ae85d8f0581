package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// withoutPlaces returns a copy of c without what Parse derives from the
// file's text (lines, the raw bytes, the key index), so that two parses
// of different texts compare by content.
func withoutPlaces(c *Config) Config {
	d := *c
	d.raw, d.byKey = nil, nil
	d.Tenants = append([]Tenant(nil), c.Tenants...)
	for i := range d.Tenants {
		d.Tenants[i].Line = 0
	}
	d.Persons = append([]Person(nil), c.Persons...)
	for i := range d.Persons {
		p := &d.Persons[i]
		p.Line = 0
		p.Keys = append([]Key(nil), p.Keys...)
		for j := range p.Keys {
			p.Keys[j].Line = 0
		}
	}
	d.Roles = append([]Role(nil), c.Roles...)
	for i := range d.Roles {
		r := &d.Roles[i]
		r.Line = 0
		r.Allow = append([]Rule(nil), r.Allow...)
		for j := range r.Allow {
			r.Allow[j].Line = 0
		}
	}
	d.Hosts = append([]Host(nil), c.Hosts...)
	for i := range d.Hosts {
		d.Hosts[i].Line = 0
	}
	return d
}

// TestMarshalRoundTrip: what Marshal writes, Parse reads back to the same
// configuration (marshal → parse → equal), for a complete file and for
// configurations built in code, where every field left zero must come
// back as its default.
func TestMarshalRoundTrip(t *testing.T) {
	example, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := newKeys(t)
	day := Date{time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)}
	built := func(edit func(*Config)) *Config {
		c := &Config{
			Gateway: Gateway{Listen: "127.0.0.1:2200", DataDir: "/var/lib/tandem"},
			Tenants: []Tenant{{ID: "t1", Name: "T1"}},
			Persons: []Person{{ID: "alice", Name: "Alice", Email: "alice@example.org", Roles: []string{"admin"},
				Keys:        []Key{{Key: k.k1, Added: day}},
				Obligations: Obligations{ConfidentialitySigned: day, TrainingValidUntil: Date{time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)}}}},
			Roles: []Role{{ID: "admin", Allow: []Rule{{Hosts: Selector{Tenant: "t1"}, Logins: []string{"root"}}}}},
			Hosts: []Host{{Name: "db1", Address: "127.0.0.1:22", Tenant: "t1", Environment: Test, HostKey: k.hk}},
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	tests := []struct {
		name string
		in   *Config
		// check looks at the parsed result of a configuration built in
		// code, which Parse completes with defaults.
		check func(t *testing.T, got *Config)
	}{
		{name: "example file", in: example},
		{name: "built in code: defaults fill what is left out", in: built(nil), check: func(t *testing.T, got *Config) {
			if got.Gateway.CertValidity.Duration != DefaultCertValidity || got.Policy.WaitTimeout.Duration != DefaultWaitTimeout ||
				got.Gateway.MaxConnections != DefaultMaxConnections || got.Persons[0].Account != AccountPersonal {
				t.Errorf("defaults not filled: %+v %+v", got.Gateway, got.Policy)
			}
		}},
		{name: "built in code: settings, lists and maps", in: built(func(c *Config) {
			c.Gateway.KeepAlive = Duration{90 * time.Second}
			c.Gateway.Limits = Limits{FailuresPerSource: 100, Block: Duration{15 * time.Minute}}
			c.Policy.Grace = Duration{3 * time.Second}
			c.Policy.RequireFIDO2 = []string{Production}
			c.Policy.Approvers = map[string]int{Production: 2}
			c.Roles[0].Permissions = []string{PermissionLock}
			c.Roles[0].Allow[0].Join = []string{JoinPeer, JoinObserver}
			c.Roles = append(c.Roles, Role{ID: "ext", External: true, Allow: []Rule{{Hosts: Selector{Environment: Test}, Logins: []string{"root"}, Forward: []string{"localhost:80"}}}})
			c.Persons[0].Obligations.ContractUntil = day
			c.Hosts[0].Environment, c.Hosts[0].RealData = Staging, true
			c.Hosts[0].Labels = map[string]string{"role": "db"}
		}), check: func(t *testing.T, got *Config) {
			if got.Gateway.KeepAlive.Duration != 90*time.Second || got.Gateway.Limits.FailuresPerSource != 100 ||
				got.Policy.Approvers[Production] != 2 || got.Policy.Approvers[Test] != DefaultApprovers ||
				!got.Roles[1].External || got.Roles[1].Allow[0].Forward[0] != "localhost:80" || !got.Hosts[0].RealData {
				t.Errorf("settings lost: %+v", got)
			}
		}},
		{name: "built in code: an explicit empty list stays empty", in: built(func(c *Config) {
			c.Gateway.Names = []string{"gw.example.org"}
			c.Gateway.EnvAllow = []string{}
		}), check: func(t *testing.T, got *Config) {
			if len(got.Gateway.EnvAllow) != 0 || got.Gateway.EnvAllow == nil {
				t.Errorf("env_allow: [] became %q", got.Gateway.EnvAllow)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, err := Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse("/etc/tandem/tandem.yaml", text)
			if err != nil {
				t.Fatalf("Parse of what Marshal wrote: %v\n%s", err, text)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			// A parsed configuration is complete: written again and read
			// again, it must not change.
			want := got
			if tc.check == nil {
				want = tc.in
			}
			again, err := Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(want.Path, again)
			if err != nil {
				t.Fatalf("second Parse: %v\n%s", err, again)
			}
			if !reflect.DeepEqual(withoutPlaces(back), withoutPlaces(want)) {
				t.Errorf("round trip changed the configuration\nwrote:\n%s\nwant %+v\ngot  %+v", again, withoutPlaces(want), withoutPlaces(back))
			}
			if strings.Contains(string(text), ": 0s") || strings.Contains(string(text), "line:") {
				t.Errorf("Marshal wrote a zero duration or a line number:\n%s", text)
			}
		})
	}
}

// TestMarshalExampleReadable: the example file written back keeps one
// value per line in block style, with keys on one line, so that a test
// can find a line in it.
func TestMarshalExampleReadable(t *testing.T) {
	raw, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("testdata/example.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	text, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Persons {
		for _, k := range p.Keys {
			if !strings.Contains(string(text), "key: "+k.Key+"\n") && !strings.Contains(string(text), "key: '"+k.Key+"'\n") &&
				!strings.Contains(string(text), "key: \""+k.Key+"\"\n") {
				t.Errorf("key of %s is not on one line:\n%s", p.ID, text)
			}
		}
	}
}
