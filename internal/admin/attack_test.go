package admin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// TestApproveTerminalsAfterTheRight: a request that asks for terminals
// tells only a person who may decide it that approving needs --terminals.
// Anybody else — a person without the approve right, an external, a
// locked approver, the requester — gets the policy's refusal, which names
// neither the requester nor the request's hosts.
func TestApproveTerminalsAfterTheRight(t *testing.T) {
	g := newFake(t)
	code, out, errOut := g.run("alice", "request --hosts prod1 --login root --for 1h --tty --reason ticket 42 migrate the db")
	if code != 0 {
		t.Fatalf("request: %d %s %s", code, out, errOut)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	g.locks["carol"] = store.Lock{Person: "carol", Reason: "laptop stolen"}
	for _, c := range []struct{ person, want string }{
		{"bob", "may not approve requests for prod1"},
		{"eve", "external experts never approve access requests"},
		{"carol", "locked"},
		{"alice", "you cannot approve your own request"},
	} {
		code, out, errOut := g.run(c.person, "approve "+id)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "asks for terminals") {
			t.Errorf("%s: approve %s: %d %q %q, want the refusal %q", c.person, id, code, out, errOut, c.want)
		}
	}
	delete(g.locks, "carol")
	if code, _, errOut := g.run("carol", "approve "+id); code != 1 || !strings.Contains(errOut, "approve with:  ssh gw approve "+id+" --terminals") {
		t.Fatalf("carol without --terminals: %d %q", code, errOut)
	}
	if code, out, errOut := g.run("carol", "approve "+id+" --terminals"); code != 0 || !strings.Contains(out, "WITH TERMINALS") {
		t.Fatalf("carol with --terminals: %d %q %q", code, out, errOut)
	}
}

// TestLockedCallerRunsNothing: a person locked after their connection
// opened (the gateway closes it within evictFlush) runs no command in the
// meantime, not even one that only reads, and the refusal is audited with
// the command line.
func TestLockedCallerRunsNothing(t *testing.T) {
	g := newFake(t)
	for _, p := range []string{"carol", "dora"} {
		g.locks[p] = store.Lock{Person: p, Reason: "laptop stolen"}
	}
	// carol leads (reads recordings, decides requests), dora audits.
	lines := map[string][]string{
		"carol": {"recordings", "export 0123", "replay 0123", "requests", "sessions", "whoami"},
		"dora":  {"audit show", "review record 0123 --verdict ok"},
	}
	for person, ls := range lines {
		for _, line := range ls {
			before := len(g.events)
			code, out, errOut := g.run(person, line)
			if code != 1 || out != "" || !strings.Contains(errOut, "your account is locked: laptop stolen") {
				t.Errorf("locked %s: %s: %d %q %q", person, line, code, out, errOut)
			}
			if got := g.events[before:]; len(got) != 1 || got[0].Type != audit.Command || got[0].Attrs["command"] != line {
				t.Errorf("locked %s: %s: audited %+v", person, line, got)
			}
		}
	}
}

// TestEveryLineAudited: a line the gateway does not understand — an
// unknown command, an unterminated quote, a NUL, a line over the cap — is
// recorded as sent before it is refused, and refused when the audit log
// is unavailable.
func TestEveryLineAudited(t *testing.T) {
	g := newFake(t)
	for _, line := range []string{"shell", "lock 'bob", "whoami\x00x", "app\u0430ove 1", strings.Repeat("a", maxCommandLine+1), "--bogus"} {
		before := len(g.events)
		if code, _, errOut := g.run("alice", line); code != 2 {
			t.Errorf("%.40q: exit %d %q, want 2", line, code, errOut)
		}
		if got := g.events[before:]; len(got) != 1 || got[0].Type != audit.Command || got[0].Attrs["command"] != line {
			t.Errorf("%.40q: audited %+v", line, got)
		}
	}
	g.auditErr = errors.New("disk full")
	if code, _, errOut := g.run("alice", "shell"); code != 1 || !strings.Contains(errOut, "the audit log is unavailable") {
		t.Errorf("without the audit log: %d %q", code, errOut)
	}
}

// TestOpenRequestsCapped: a person cannot bury the other persons' requests
// under their own in the approvers' listing (the store returns at most
// the newest 500): past maxOpenRequests undecided requests of theirs, a
// new one is refused until one is decided or they revoke one.
func TestOpenRequestsCapped(t *testing.T) {
	g := newFake(t)
	first := ""
	for i := range maxOpenRequests {
		id := g.request(t, "ticket 42 migrate the db")
		if i == 0 {
			first = id
		}
	}
	code, out, errOut := g.run("alice", "request --hosts prod1 --login root --for 1h --reason ticket 43 one too many")
	if code != 1 || !strings.Contains(errOut, "undecided requests") || strings.Contains(out, "approve") {
		t.Fatalf("request past the cap: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := g.run("alice", "revoke "+first+" --reason not needed after all"); code != 0 {
		t.Fatalf("revoke: %d %q", code, errOut)
	}
	g.request(t, "ticket 43 after one was revoked")
}

// TestDecisionsOnlyOnOpenRequests: a request is decided once: no approval
// after a denial, a revocation or the end of its window, no denial after
// an approval; an approver of one tenant decides nothing of another's,
// whoever knows the id. Each refusal leaves only the command line in the
// audit log.
func TestDecisionsOnlyOnOpenRequests(t *testing.T) {
	g := newFake(t)
	denied, revoked, expired := requested(t, g), requested(t, g), requested(t, g)
	mustRun := func(person, line string) {
		t.Helper()
		if code, out, errOut := g.run(person, line); code != 0 {
			t.Fatalf("%s: %s: %d %q %q", person, line, code, out, errOut)
		}
	}
	mustRun("carol", "deny "+denied+" --reason no ticket for this")
	mustRun("alice", "revoke "+revoked+" --reason not needed any more")
	mustRun("carol", "approve "+expired)
	g.now = g.now.Add(2 * time.Hour) // past the 1h window
	sued, err := g.st.CreateRequest(context.Background(), store.Request{Requester: "alice", Hosts: []string{"sued1"}, Selector: "sued1",
		Login: "root", Duration: time.Hour, Reason: "ticket 7 of the other tenant", Created: g.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ line, want string }{
		{"approve " + denied, "not open (it is denied)"},
		{"approve " + revoked, "not open (it is revoked)"},
		{"approve " + expired, "not open (it is approved)"},
		{"deny " + expired + " --reason too late now", "not open (it is approved)"},
		{"approve " + sued.ID, "may not approve requests for sued1"},
		{"deny " + sued.ID + " --reason not your tenant", "may not approve requests for sued1"},
		{"revoke " + sued.ID + " --reason not your tenant", "may not approve requests for sued1"},
	} {
		before := len(g.events)
		if code, out, errOut := g.run("carol", c.line); code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("carol: %s: %d %q %q, want %q", c.line, code, out, errOut, c.want)
		}
		for _, e := range g.events[before:] {
			if e.Type != audit.Command {
				t.Errorf("carol: %s: audited %s", c.line, e.Type)
			}
		}
	}
	if r, _ := g.st.GetRequest(context.Background(), sued.ID); r == nil || r.State != store.RequestOpen {
		t.Errorf("the other tenant's request: %+v", r)
	}
}

// TestReplayPausesBounded: replay's pauses are bounded before any
// recording is opened. The replay sleeps between events without watching
// the client, and the connection's slot is held until its commands
// return, so a pause of the client's choosing (--idle-cap 1000h, or a
// speed that is not a number) would hold the slot long after the client
// left.
func TestReplayPausesBounded(t *testing.T) {
	g := newFake(t)
	for _, args := range []string{"--idle-cap 1000h", "--idle-cap 61s", "--idle-cap 0s", "--idle-cap -1s", "--speed NaN", "--speed 0", "--speed -2"} {
		code, _, errOut := g.run("carol", "replay 0123456789 "+args)
		if code != 1 || !strings.Contains(errOut, "usage: replay") {
			t.Errorf("replay %s: %d %q, want the usage", args, code, errOut)
		}
	}
	if code, _, errOut := g.run("carol", "replay 0123456789 --idle-cap 1m --speed 0.5"); code != 1 || !strings.Contains(errOut, "no recording of session 0123456789") {
		t.Errorf("replay within the bounds: %d %q", code, errOut)
	}
}

// TestStoreGoneFailsClosed: with the state store unavailable every request
// command refuses, and nothing but the command line is audited.
func TestStoreGoneFailsClosed(t *testing.T) {
	g := newFake(t)
	id := requested(t, g)
	g.st.Close()
	for _, line := range []string{
		"request --hosts prod1 --login root --for 1h --reason ticket 44 store is gone",
		"requests", "approve " + id, "deny " + id + " --reason store is gone", "revoke " + id + " --reason store is gone",
	} {
		person := "carol"
		if strings.HasPrefix(line, "request") || strings.HasPrefix(line, "revoke") {
			person = "alice"
		}
		before := len(g.events)
		if code, out, errOut := g.run(person, line); code != 1 || out != "" {
			t.Errorf("%s: %s: %d %q %q", person, line, code, out, errOut)
		}
		for _, e := range g.events[before:] {
			if e.Type != audit.Command {
				t.Errorf("%s: %s: audited %s", person, line, e.Type)
			}
		}
	}
	if len(g.ended) != 0 {
		t.Errorf("sessions ended without a stored revocation: %q", g.ended)
	}
}
