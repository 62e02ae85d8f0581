package admin

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

// TestReload: a person with the permission configure reloads as
// themselves and sees what changed; others are refused and nothing is
// reloaded.
func TestReload(t *testing.T) {
	cases := []struct {
		name, person, line string
		status             int
		out, stderr        string
	}{
		{"configure permission", "dora", "reload", 0,
			"configuration reloaded: 3 change(s), recorded as yours\n  modify audit audit: checkpoint_events, witness_file\n" +
				"  create host web\\x1b[2J9\n  delete person bob\n", ""},
		{"lock is not configure", "carol", "reload", 1, "", "carol may not reload the configuration: no role of theirs has the permission configure"},
		{"no permission", "alice", "reload", 1, "", "alice may not reload the configuration"},
		{"external", "eve", "reload", 1, "", "external experts never reload the configuration"},
		{"arguments", "dora", "reload now", 1, "", "takes no arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFake(t)
			g.changes = []config.Change{
				{Kind: config.Modified, Entity: "audit", ID: "audit", Old: map[string]string{"checkpoint_events": "1000"},
					New: map[string]string{"checkpoint_events": "10", "witness_file": `"/w"`}},
				{Kind: config.Created, Entity: "host", ID: "web\x1b[2J9"},
				{Kind: config.Deleted, Entity: "person", ID: "bob"},
			}
			code, out, errOut := g.run(c.person, c.line)
			if code != c.status || out != c.out || !strings.Contains(errOut, c.stderr) {
				t.Fatalf("%s: exit %d, want %d\nstdout %q\nwant   %q\nstderr %q, want %q", c.line, code, c.status, out, c.out, errOut, c.stderr)
			}
			want := 0
			if c.status == 0 {
				want = 1
			}
			if len(g.reloads) != want || want == 1 && g.reloads[0] != c.person {
				t.Errorf("reloads %q", g.reloads)
			}
		})
	}
}
