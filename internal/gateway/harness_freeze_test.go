package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// freeze stores f through the store, as `tandem freeze` does from another
// process, and returns once the gateway has applied it.
func (h *harness) freeze(t *testing.T, f store.Freeze) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ev := audit.FreezeEvent{ID: f.ID, Kind: f.Kind, Value: f.Value, Reason: f.Reason, By: f.By}.Event()
	if !f.Active() {
		ev = audit.UnfreezeEvent{ID: f.ID, Kind: f.Kind, Value: f.Value, By: f.LiftedBy}.Event()
	}
	ev.Time = time.Now()
	if err := h.store.PutFreeze(ctx, f, ev); err != nil {
		t.Fatal(err)
	}
	h.applied(t, ctx, "freeze "+f.ID)
}

// TestHarnessFreeze: freezing a host ends its live sessions, exec and
// interactive, and refuses new ones with the reason (M27); an incident
// session with a second person may still be opened there, and survives;
// unfreezing restores access. The freeze and unfreeze are audited.
func TestHarnessFreeze(t *testing.T) {
	responder := func(s *spec) {
		s.roles += "  - {id: responder, allow: [{hosts: {tenant: schule-nord}, logins: [root], incident: true}]}\n"
	}
	h := newHarness(t, responder, withPerson("ivan", time.Now().UTC().AddDate(0, 0, -10), "responder"))
	exec := running(t, h, "dave", "deploy%web1", false)
	shell := running(t, h, "alice", "root@web1", true)

	const reason = "CVE-2026-1234 in the web stack, INC-77"
	f := store.Freeze{ID: "f1", Kind: store.FreezeHost, Value: "web1", Reason: reason, By: "alice", Created: time.Now()}
	h.freeze(t, f)
	endedBecause(t, h, exec, "dave", "web1 is frozen: "+reason, false)
	endedBecause(t, h, shell, "alice", "web1 is frozen: "+reason, true)
	if out, stderr, st := h.run(t, "bob", "root%db1", "echo open"); st != 0 || !strings.Contains(out, "open") {
		t.Errorf("another host is not frozen: status %d, stdout %q, stderr %q", st, out, stderr)
	}

	// New work there is refused with the reason: a command, a shell.
	if _, stderr, st := h.run(t, "dave", "deploy%web1", "true"); st == 0 || !strings.Contains(stderr, reason) {
		t.Errorf("exec on a frozen host: status %d, stderr %q", st, stderr)
	}
	h.waitEvent(t, 0, "session.denied with the freeze", func(e audit.Event) bool {
		return e.Type == audit.SessionDenied && e.Person == "dave" && strings.Contains(e.Attrs["reason"], reason)
	})
	if _, stderr, st := h.run(t, "ivan", "root%web1", "true"); st == 0 || !strings.Contains(stderr, reason) {
		t.Errorf("incident holder without a terminal: status %d, stderr %q", st, stderr)
	}

	// An incident session: waits for its second person, then runs, and
	// the next poll leaves it alone.
	owner := h.shell(t, "ivan", "root%web1")
	owner.expect(t, "incident session")
	id := owner.expect(t, joinID)
	peer := h.join(t, "bob", id)
	owner.expect(t, "the session is live")
	owner.send(t, "echo up-$((1+1))\n")
	peer.expect(t, "up-2")
	time.Sleep(500 * time.Millisecond) // two polls
	owner.send(t, "echo still-$((2+1))\n")
	owner.expect(t, "still-3")

	// Unfreeze: access is back.
	f.Lifted, f.LiftedBy = time.Now(), "alice"
	h.freeze(t, f)
	if out, stderr, st := h.run(t, "dave", "deploy%web1", "echo back"); st != 0 || !strings.Contains(out, "back") {
		t.Errorf("after unfreeze: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	for _, typ := range []audit.Type{audit.Freeze, audit.Unfreeze} {
		h.waitEvent(t, 0, string(typ), func(e audit.Event) bool { return e.Type == typ && e.Attrs["id"] == "f1" })
	}
}
