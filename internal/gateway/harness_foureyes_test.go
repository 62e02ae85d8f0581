package gateway_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
)

// joinID finds the session id in the owner's waiting notice.
const joinID = `ssh -t gw join ([0-9a-f]+)`

// TestHarnessFourEyes: an interactive session on a production host waits,
// without reaching the target, until a qualified second person joins;
// then it is live, the owner's commands reach the target and both see
// the output; the audit log tells the story in order.
func TestHarnessFourEyes(t *testing.T) {
	for _, dest := range []string{"root%prod1", "root@prod1"} {
		t.Run(dest, func(t *testing.T) {
			h := newHarness(t)
			owner := h.shell(t, "alice", dest)
			id := owner.expect(t, joinID)
			owner.expect(t, "waiting")
			if ids := h.targets["prod1"].accepted(); len(ids) != 0 {
				t.Fatalf("a waiting session reached the target: %q", ids)
			}

			// Who may join finds the session in `ssh gw sessions`; who may
			// not, does not.
			if out, _, _ := h.run(t, "bob", "gw", "sessions"); !strings.Contains(out, id) {
				t.Errorf("bob's session list lacks %s:\n%s", id, out)
			}
			if out, _, _ := h.run(t, "dave", "gw", "sessions"); strings.Contains(out, id) {
				t.Errorf("dave, who may not join, sees %s:\n%s", id, out)
			}

			peer := h.join(t, "bob", id)
			owner.expect(t, "bob joined as peer; the session is live") // input before this is discarded
			owner.send(t, "echo four-$((6*7))-eyes\n")
			owner.expect(t, "four-42-eyes")
			peer.expect(t, "four-42-eyes")
			ids := h.targets["prod1"].accepted()
			if len(ids) != 1 || !strings.Contains(ids[0], "person=alice") {
				t.Fatalf("target accepted %q, want one certificate for alice", ids)
			}

			owner.send(t, "exit\n")
			if st := owner.wait(t); st != 0 {
				t.Errorf("owner's exit status %d, want 0", st)
			}
			peer.wait(t)

			end := h.waitEvent(t, 0, "session.end of "+id, func(e audit.Event) bool {
				return e.Type == audit.SessionEnd && e.Session == id
			})
			if end.Person != "alice" || end.Host != "prod1" {
				t.Errorf("session.end %+v", end)
			}
			var story []string
			for _, e := range h.events(t) {
				if e.Session != id {
					continue
				}
				switch e.Type {
				case audit.SessionWaiting, audit.SessionLive, audit.SessionEnded, audit.SessionEnd:
					story = append(story, string(e.Type))
				case audit.SessionJoin, audit.SessionLeave:
					story = append(story, string(e.Type)+" "+e.Attrs["participant"])
				}
			}
			want := []string{"session.waiting", "session.join bob", "session.live"}
			if len(story) < len(want) || strings.Join(story[:len(want)], ",") != strings.Join(want, ",") ||
				story[len(story)-1] != string(audit.SessionEnd) || !contains(story, "session.ended") {
				t.Errorf("audit story of %s: %q; want it to begin %q and end with session.ended … session.end", id, story, want)
			}
		})
	}
}

// TestHarnessJoinRefusals: who may not join is told why and changes
// nothing, and an observer is no second person: the session keeps
// waiting until a peer joins; then the observer sees what the others see.
func TestHarnessJoinRefusals(t *testing.T) {
	h := newHarness(t, withPerson("erin", time.Now().UTC().AddDate(0, 0, -10), "admin"))
	owner := h.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	for _, tc := range []struct {
		name, person, id, stderr string
	}{
		{"no such session", "bob", "0000000000", "no session 0000000000"},
		{"no join right on the host", "dave", id, "dave may not join sessions on prod1"},
		{"the owner", "alice", id, "you cannot be the second person in your own session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(h.events(t))
			j := h.join(t, tc.person, tc.id)
			j.expect(t, regexp.QuoteMeta(tc.stderr))
			if st := j.wait(t); st != 1 {
				t.Fatalf("status %d, want 1; output %q", st, j.out.String())
			}
			if tc.id != id {
				return // no session: the command event is the record
			}
			// A policy refusal is in the audit log with who asked, for
			// which session and why.
			h.waitEvent(t, from, "session.denied for "+tc.person+"'s join", func(e audit.Event) bool {
				return e.Type == audit.SessionDenied && e.Person == tc.person && e.Session == id &&
					e.Attrs[audit.KeyAction] == "join" && e.Attrs[audit.KeyReason] != ""
			})
		})
	}
	observer := h.join(t, "erin", id, "--observer")
	observer.expect(t, "the session is waiting")
	if ids := h.targets["prod1"].accepted(); len(ids) != 0 {
		t.Fatalf("refused joins or an observer made the session reach the target: %q", ids)
	}
	// Still waiting: a qualified peer can join now.
	peer := h.join(t, "bob", id)
	owner.expect(t, "the session is live")
	owner.send(t, "echo still-$((1+1))\n")
	peer.expect(t, "still-2")
	observer.expect(t, "still-2")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHarnessPausedHoldsSignals: a signal or a break is input too (a
// break reads as NUL or an interrupt on the target's terminal, a signal
// acts on its program), so the owner's client cannot send one to the
// target while the session lacks its second person, any more than it can
// type: while live a signal reaches the shell; paused, it is refused and
// the shell never sees it.
func TestHarnessPausedHoldsSignals(t *testing.T) {
	h := newHarness(t)
	owner, peer, _ := liveWithBob(t, h)
	// The echo of the command shows $((1+1)); only the shell prints 2.
	owner.send(t, "trap 'echo got-$((1+1))-usr1' USR1; echo trap-$((1+1)); while :; do sleep 0.05; done\n")
	owner.expect(t, "trap-2")
	signal := func() bool {
		ok, err := owner.s.SendRequest("signal", true, ssh.Marshal(struct{ Name string }{"USR1"}))
		return ok && err == nil
	}
	if !signal() {
		t.Fatal("a signal while live was refused")
	}
	owner.expect(t, "got-2-usr1")

	peer.c.Close()
	owner.expect(t, "bob left; input paused")
	if signal() {
		t.Error("a signal while paused was accepted")
	}
	if ok, _ := owner.s.SendRequest("break", true, ssh.Marshal(struct{ Ms uint32 }{500})); ok {
		t.Error("a break while paused was accepted")
	}
	time.Sleep(500 * time.Millisecond) // ten turns of the loop, each of which would run the trap
	if n := strings.Count(owner.out.String(), "got-2-usr1"); n != 1 {
		t.Fatalf("the shell ran the trap %d times, want once (the paused signal reached the target)", n)
	}
}

// TestHarnessJoinerToldTheCommand: a command with a terminal on a
// four-eyes host starts as the second person joins, so they cannot have
// watched it typed: their welcome names it, escaped, before its output.
func TestHarnessJoinerToldTheCommand(t *testing.T) {
	h := newHarness(t)
	const command = "true '\x1b]0;pwned\x07'; echo cmd-$((2*21))"
	owner := h.start(t, h.client(t, "alice", "root%prod1"), true, command)
	id := owner.expect(t, joinID)
	peer := h.join(t, "bob", id)
	peer.expect(t, regexp.QuoteMeta(`running the command true '\x1b]0;pwned\x07'; echo cmd-$((2*21));`))
	peer.expect(t, "cmd-42")
	if strings.Contains(peer.out.String(), "\x1b]0;") {
		t.Fatalf("the command reached the joiner's terminal raw: %q", peer.out.String())
	}
	owner.expect(t, "cmd-42")
}

// TestHarnessExternalSupervised (M7): an external expert with a peer's
// join right cannot join while no employee is there as second person, is
// never that person, and types only while one is.
func TestHarnessExternalSupervised(t *testing.T) {
	h := newHarness(t, func(s *spec) {
		s.roles += "  - {id: expert, external: true, allow: [{hosts: {tenant: schule-nord}, join: [peer, observer]}]}\n"
	}, withPerson("erik", time.Now().UTC().AddDate(0, 0, -10), "expert"))
	owner := h.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	alone := h.join(t, "erik", id)
	alone.expect(t, "external participants may join only under supervision")
	if st := alone.wait(t); st != 1 {
		t.Fatalf("erik's lone join: status %d", st)
	}
	if ids := h.targets["prod1"].accepted(); len(ids) != 0 {
		t.Fatalf("an external's join made the session reach the target: %q", ids)
	}

	peer := h.join(t, "bob", id)
	owner.expect(t, "the session is live")
	ext := h.join(t, "erik", id)
	owner.expect(t, `erik joined as peer \(external\)`)
	ext.send(t, "echo erik-$((40+2))\n")
	owner.expect(t, "erik-42")

	peer.c.Close()
	owner.expect(t, "bob left; input paused")
	ext.send(t, "echo erik-$((50+5))\n")
	ext.expect(t, "input is discarded until a second person is present")
	if strings.Contains(owner.out.String(), "erik-55") {
		t.Fatal("the external's input reached the target without a second person")
	}
}
