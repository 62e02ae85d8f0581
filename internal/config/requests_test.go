package config

import (
	"strings"
	"testing"
	"time"
)

// TestRequestPolicy covers the access-request settings (M8): their
// defaults, and the values validation refuses.
func TestRequestPolicy(t *testing.T) {
	k := newKeys(t)

	c, err := Parse("cfg.yaml", build(k, nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.MaxRequestDuration.Duration != 8*time.Hour {
		t.Errorf("max_request_duration default = %s", c.Policy.MaxRequestDuration)
	}
	for _, env := range []string{Production, Staging, Test} {
		if n := c.Policy.Approvers[env]; n != 1 {
			t.Errorf("approvers[%s] default = %d, want 1", env, n)
		}
	}

	c, err = Parse("cfg.yaml", build(k, nil, "policy:\n  max_request_duration: 2h\n  approvers: {production: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.MaxRequestDuration.Duration != 2*time.Hour {
		t.Errorf("max_request_duration = %s", c.Policy.MaxRequestDuration)
	}
	if got := c.Policy.Approvers; got[Production] != 2 || got[Staging] != 1 || got[Test] != 1 || len(got) != 3 {
		t.Errorf("approvers = %v, want production 2 and the rest 1", got)
	}

	for _, tt := range []struct {
		name, add string
		line      int
		msg       string
	}{
		{"zero duration", "policy:\n  max_request_duration: 0s\n", 22, "max_request_duration must be longer than 0"},
		{"negative duration", "policy:\n  max_request_duration: -1h\n", 22, "max_request_duration must be longer than 0"},
		{"unknown environment", "policy:\n  approvers:\n    prod: 2\n", 23, `approvers: unknown environment "prod"`},
		{"zero approvers", "policy:\n  approvers:\n    staging: 0\n", 23, "staging needs 1 to 5 approvers, not 0"},
		{"too many approvers", "policy:\n  approvers:\n    production: 6\n", 23, "production needs 1 to 5 approvers, not 6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", build(k, nil, tt.add))
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, p := range problems(t, err) {
				if p.Line == tt.line && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want cfg.yaml:%d: ...%s...; got\n%v", tt.line, tt.msg, err)
			}
		})
	}
}
