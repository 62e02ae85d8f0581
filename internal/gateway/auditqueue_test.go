package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

// holdSink is an audit sink whose appends of chosen types block until
// released, like a log on a hung disk; the rest pass through at once.
type holdSink struct {
	*audit.MemorySink
	mu      sync.Mutex
	types   map[audit.Type]bool
	release chan struct{} // nil while nothing is held
	waiting atomic.Int32  // appends blocked now
}

// hold makes appends of types block until releaseAll.
func (h *holdSink) hold(types ...audit.Type) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.types = map[audit.Type]bool{}
	for _, t := range types {
		h.types[t] = true
	}
	h.release = make(chan struct{})
}

func (h *holdSink) releaseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.release)
	h.release = nil
}

func (h *holdSink) Append(ctx context.Context, e audit.Event) error {
	h.mu.Lock()
	rel := h.release
	held := rel != nil && h.types[e.Type]
	h.mu.Unlock()
	if held {
		h.waiting.Add(1)
		select {
		case <-rel:
		case <-ctx.Done():
		}
		h.waiting.Add(-1)
	}
	return h.MemorySink.Append(ctx, e)
}

// The queue takes events without waiting for the log, appends them in
// order with the times they were added, waits a bounded time at the end,
// and reports a log that does not keep up.
func TestAuditQueueKeepsOrderWhileLogBlocks(t *testing.T) {
	sink := &holdSink{MemorySink: &audit.MemorySink{}}
	sink.hold(audit.SessionJoin, audit.SessionLeave)
	srv := &Server{audit: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	q := newAuditQueue(srv)
	if !q.wait(time.Millisecond) {
		t.Fatal("an empty queue is not idle")
	}
	start := time.Now()
	var added []time.Time
	for i := range 5 {
		q.add(audit.Event{Type: audit.SessionJoin, Session: "s1", Attrs: map[string]string{"n": fmt.Sprint(i)}})
		added = append(added, time.Now())
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("adding to the queue of a blocked log took %v", took)
	}
	if q.wait(50 * time.Millisecond) {
		t.Fatal("wait reported the queue appended while the log blocks")
	}
	select {
	case <-q.Full():
		t.Fatal("Full with 5 events")
	default:
	}
	for range auditQueueMax {
		q.add(audit.Event{Type: audit.SessionLeave, Session: "s1"})
	}
	select {
	case <-q.Full():
	default:
		t.Fatalf("not Full with %d events waiting", auditQueueMax+5)
	}
	sink.releaseAll()
	if !q.wait(5 * time.Second) {
		t.Fatal("queue not appended 5 s after the log was released")
	}
	ev := sink.Events()
	if len(ev) != 5+auditQueueMax {
		t.Fatalf("%d events in the log, want %d", len(ev), 5+auditQueueMax)
	}
	for i := range 5 {
		if ev[i].Type != audit.SessionJoin || ev[i].Attrs["n"] != fmt.Sprint(i) {
			t.Fatalf("event %d: %s %v, want join n=%d", i, ev[i].Type, ev[i].Attrs, i)
		}
		if ev[i].Time.Before(start) || ev[i].Time.After(added[i]) {
			t.Errorf("event %d has time %v, not the time it was added (%v..%v)", i, ev[i].Time, start, added[i])
		}
	}
	srv.wg.Wait() // the drain goroutine is gone
}

// A shared session's hooks run under the session's lock; while the audit
// log blocks, the owner and a joiner still see the output, and once the
// log takes events again every event of the session is there in order,
// session.end last.
func TestSharedSessionOutputWhileAuditBlocks(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	carolKey, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	var sink *holdSink
	r := startRigSink(t, "", func(m audit.Sink) audit.Sink {
		sink = &holdSink{MemorySink: m.(*audit.MemorySink)}
		return sink
	}, nil, map[string]string{"alice": alicePub, "carol": carolPub})
	r.reload(t, "logins: [root]}]}", "logins: [root], join: [peer, observer]}]}")
	t.Cleanup(func() { // before the rig stops: a failed test must not leave appends blocked
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if sink.release != nil {
			close(sink.release)
			sink.release = nil
		}
	})
	dial := func(user, key string) *testenv.Attacker {
		t.Helper()
		signer, err := testenv.ParsePrivateKeyFile(key)
		if err != nil {
			t.Fatal(err)
		}
		a, err := testenv.DialAttacker(t.Context(), testenv.AttackerOpts{
			Addr: fmt.Sprintf("127.0.0.1:%d", r.port), User: user, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	sees := func(who string, s *testenv.AttackSession, text string) {
		t.Helper()
		if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(s.Output.String(), text) }) {
			t.Fatalf("%s did not see %q while the audit log blocks; saw %q", who, text, s.Output.String())
		}
	}

	owner, err := dial("root%db1", aliceKey).Session(testenv.SessionOpts{PTY: true, Exec: "cat", Read: true})
	if err != nil {
		t.Fatal(err)
	}
	r.waitEvents(t, audit.SessionStart, 1)
	var id string
	for _, e := range r.sink.Events() {
		if e.Type == audit.SessionStart {
			id = e.Session
		}
	}
	// session.start is written before the session is registered: wait
	// until join can find it.
	if !testenv.WaitFor(5*time.Second, func() bool { return r.srv.live.sharedByID(id) != nil }) {
		t.Fatalf("session %s never registered", id)
	}
	sink.hold(audit.SessionJoin, audit.SessionLeave, audit.SessionEnded, audit.SessionEnd,
		audit.SessionWaiting, audit.SessionLive, audit.SessionPaused, audit.SessionResumed)

	joiner, err := dial("carol", carolKey).Session(testenv.SessionOpts{PTY: true, Exec: "join " + id + " --observer", Read: true})
	if err != nil {
		t.Fatal(err)
	}
	if !testenv.WaitFor(5*time.Second, func() bool { return sink.waiting.Load() == 1 }) {
		t.Fatalf("session.join never reached the log: %v", r.sink.Types())
	}
	if err := owner.Write("ping-one\n"); err != nil {
		t.Fatal(err)
	}
	sees("the owner", owner, "ping-one")
	sees("the joiner", joiner, "ping-one")

	_ = joiner.Close() // session.leave, queued behind the blocked join
	if err := owner.Write("ping-two\n"); err != nil {
		t.Fatal(err)
	}
	sees("the owner", owner, "ping-two")
	if err := owner.Write("\x04"); err != nil { // cat ends, and with it the session
		t.Fatal(err)
	}
	if _, ok := owner.WaitDone(5 * time.Second); !ok {
		t.Fatalf("the owner's session did not end while the audit log blocks; saw %q", owner.Output.String())
	}
	for _, e := range r.sink.Events() {
		if e.Session == id && e.Type != audit.SessionStart {
			t.Fatalf("%s reached the log while it was held", e.Type)
		}
	}

	released := time.Now()
	sink.releaseAll()
	r.waitEvents(t, audit.SessionEnd, 1)
	var got []audit.Type
	var last time.Time
	for _, e := range r.sink.Events() {
		if e.Session != id {
			continue
		}
		got = append(got, e.Type)
		if e.Time.Before(last) {
			t.Errorf("%s at %v is before the event it follows (%v)", e.Type, e.Time, last)
		}
		last = e.Time
		if e.Type != audit.SessionEnd && e.Time.After(released) {
			t.Errorf("%s has time %v, after the log was released (%v): not the time of its hook", e.Type, e.Time, released)
		}
	}
	want := []audit.Type{audit.SessionStart, audit.SessionJoin, audit.SessionLeave, audit.SessionEnded, audit.SessionEnd}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the session's events: %v, want %v", got, want)
	}
}
