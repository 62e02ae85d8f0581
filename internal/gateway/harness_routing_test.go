package gateway_test

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// TestHarnessRouting: the three ways in reach the right place, and an
// exec session passes stdout, stderr and the exit status through unchanged.
func TestHarnessRouting(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, person, dest, command string
		stdout, stderr              string // exact, when the target runs the command
		contains                    string // in stdout, for gateway commands
		status                      int
		target                      string // the host whose target must see the login
	}{
		{name: "user-name mode", person: "alice", dest: "root%db1", command: "echo out-ok; echo err-ok >&2; exit 7",
			stdout: "out-ok\n", stderr: "err-ok\n", status: 7, target: "db1"},
		{name: "jump mode", person: "alice", dest: "root@db1", command: "echo jump-ok; echo jump-err >&2",
			stdout: "jump-ok\n", stderr: "jump-err\n", status: 0, target: "db1"},
		{name: "another host and login", person: "dave", dest: "deploy%web1", command: "printf 'a\\nb'; exit 3",
			stdout: "a\nb", status: 3, target: "web1"},
		{name: "jump to another host", person: "dave", dest: "deploy@web1", command: "exit 0", target: "web1"},
		{name: "whoami", person: "alice", dest: "gw", command: "whoami", contains: "alice"},
		{name: "whoami lists the reachable hosts", person: "dave", dest: "gw", command: "whoami", contains: "web1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before int
			if tc.target != "" {
				before = len(h.targets[tc.target].accepted())
			}
			stdout, stderr, status := h.run(t, tc.person, tc.dest, tc.command)
			if status != tc.status {
				t.Fatalf("status %d, want %d; stdout %q, stderr %q", status, tc.status, stdout, stderr)
			}
			if tc.contains != "" {
				if !strings.Contains(stdout, tc.contains) {
					t.Fatalf("stdout %q lacks %q; stderr %q", stdout, tc.contains, stderr)
				}
				return
			}
			if stdout != tc.stdout || stderr != tc.stderr {
				t.Fatalf("stdout %q, stderr %q; want %q, %q", stdout, stderr, tc.stdout, tc.stderr)
			}
			ids := h.targets[tc.target].accepted()
			if len(ids) != before+1 || !strings.Contains(ids[len(ids)-1], "person="+tc.person) {
				t.Fatalf("target %s accepted %q, want one more certificate for %s", tc.target, ids, tc.person)
			}
		})
	}

	// Every session that reached a target is audited from start to end,
	// with its exit status.
	es := h.events(t)
	starts := map[string]audit.Event{}
	for _, e := range es {
		if e.Type == audit.SessionStart {
			starts[e.Session] = e
		}
	}
	if len(starts) != 4 {
		t.Fatalf("%d session.start events, want 4:%s", len(starts), types(es))
	}
	for id, s := range starts {
		h.waitEvent(t, 0, "session.end of "+id, func(e audit.Event) bool {
			return e.Type == audit.SessionEnd && e.Session == id && e.Person == s.Person && e.Host == s.Host
		})
	}
	h.waitEvent(t, 0, "command whoami", func(e audit.Event) bool {
		return e.Type == audit.Command && e.Person == "alice" && strings.Contains(e.Attrs["command"], "whoami")
	})
}
