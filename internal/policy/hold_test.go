package policy

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

func TestMayHold(t *testing.T) {
	rule := []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}
	e := New(&config.Config{Roles: []config.Role{
		{ID: "legal", Permissions: []string{config.PermissionHold}, Allow: rule},
		{ID: "locker", Permissions: []string{config.PermissionLock}, Allow: rule},
		{ID: "admin", Allow: rule},
		{ID: "ext", External: true, Allow: rule},
	}})
	for _, c := range []struct {
		name   string
		p      *config.Person
		want   Verdict
		reason string
	}{
		{"hold permission", person("hanna", "legal"), Allow, ""},
		{"hold permission among other roles", person("hanna", "admin", "legal"), Allow, ""},
		{"lock is not hold", person("lena", "locker"), Deny, "lena may not place or release legal holds: no role of theirs has the permission hold"},
		{"no permission", person("alice", "admin"), Deny, "no role of theirs has the permission hold"},
		{"external with hold permission", person("xena", "ext", "legal"), Deny, "external experts never place or release legal holds"},
		{"unknown person", nil, Deny, "only a configured person"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := e.MayHold(c.p)
			if d.Verdict != c.want || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("got %v %q, want %v %q", d.Verdict, d.Reason, c.want, c.reason)
			}
		})
	}
}
