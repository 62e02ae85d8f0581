package gateway

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"whoami", []string{"whoami"}, false},
		{"  lock  bob ", []string{"lock", "bob"}, false},
		{`request --reason "ticket 42: fix \"db\""`, []string{"request", "--reason", `ticket 42: fix "db"`}, false},
		{`a 'b c' d`, []string{"a", "b c", "d"}, false},
		{`a''b`, []string{"ab"}, false},
		{`''`, []string{""}, false},
		{`a\ b`, []string{"a b"}, false},
		{`"unterminated`, nil, true},
		{`'unterminated`, nil, true},
		{`trailing\`, nil, true},
		{strings.Repeat("x", maxCommandLine+1), nil, true},
	}
	for _, c := range cases {
		got, err := splitArgs(c.in)
		if (err != nil) != c.err {
			t.Errorf("splitArgs(%q) err = %v, want err %v", c.in, err, c.err)
			continue
		}
		if !c.err && !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"whoami", `a "b c" 'd'`, `x\ y`, `"`, "\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args, err := splitArgs(line)
		if err != nil {
			return
		}
		total := 0
		for _, a := range args {
			total += len(a)
		}
		if total > len(line) {
			t.Fatalf("words longer than the line: %q -> %q", line, args)
		}
	})
}

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
