package policy

import (
	"testing"

	"tandem.dev/tandem/internal/config"
)

func TestMayJump(t *testing.T) {
	cfg := testConfig()
	e := New(cfg)
	tests := []struct {
		name   string
		person *config.Person
		host   string
		lock   string
		want   Verdict
	}{
		{"granted", person("alice", "acme-admin"), "db1", "", Allow},
		{"granted on a four-eyes host: Authorize decides the rest", person("alice", "acme-admin"), "stg1", "", Allow},
		{"external with a grant", person("xavier", "ext"), "app1", "", Allow},
		{"no rule matches the host", person("alice", "acme-admin"), "app1", "", Deny},
		{"host's logins exclude every granted login", person("tom", "tester"), "app2", "", Deny},
		{"forward-only role grants no login", person("fred", "fwd"), "db1", "", Deny},
		{"empty selector grants nothing", person("eve", "empty-sel"), "web1", "", Deny},
		{"locked", person("alice", "acme-admin"), "db1", "left the company", Deny},
		{"obligations lapsed", &config.Person{ID: "alice", Roles: []string{"acme-admin"}}, "db1", "", Deny},
		{"unknown host", person("alice", "acme-admin"), "nope", "", Deny},
		{"no person", nil, "db1", "", Deny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := e.MayJump(tc.person, nil, cfg.Host(tc.host), testNow, tc.lock, nil)
			if d.Verdict != tc.want {
				t.Errorf("MayJump = %v (%s), want %v", d.Verdict, d.Reason, tc.want)
			}
			if d.Verdict == Deny && d.Reason == "" {
				t.Error("a denial without a reason")
			}
		})
	}
	// The key is checked too: an expired key cannot open a jump channel.
	old := ecdsaKey(t, "2025-01-01")
	if d := e.MayJump(person("alice", "acme-admin"), old, cfg.Host("db1"), testNow, "", nil); d.Verdict != Deny {
		t.Errorf("expired key: MayJump = %v, want deny", d.Verdict)
	}
}
