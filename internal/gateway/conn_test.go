package gateway

import "testing"

func TestParseUser(t *testing.T) {
	cases := []struct {
		user, login, host string
		routed            bool
	}{
		{"alice", "", "", false},
		{"root%db1", "root", "db1", true},
		{"we%ird%db1", "we%ird", "db1", true},
		{"root%", "root", "", true},
	}
	for _, c := range cases {
		l, h, r := parseUser(c.user)
		if l != c.login || h != c.host || r != c.routed {
			t.Errorf("parseUser(%q) = %q %q %v", c.user, l, h, r)
		}
	}
}
