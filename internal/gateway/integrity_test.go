package gateway

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// rawState opens the rig's state.db with plain SQL, as someone editing it
// by hand on the gateway host would.
func (r *rig) rawState(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(filepath.Join(r.dir, "data", "state.db"))+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rawExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// forgedEvent returns the first state.forged event of table, if any.
func (r *rig) forgedEvent(table string) (audit.Event, bool) {
	for _, e := range r.sink.Events() {
		if e.Type == audit.StateForged && e.Attrs["table"] == table {
			return e, true
		}
	}
	return audit.Event{}, false
}

// A request edited into "approved" in state.db opens nothing on a
// production host; the person is told and the refusal is audited (M8).
func TestRequestEditedInStateDBIsRefused(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	now := time.Now()
	req, err := r.srv.store.CreateRequest(context.Background(), store.Request{Requester: "alice", Hosts: []string{"prod1"},
		Selector: "prod1", Login: "root", Duration: time.Hour, Reason: "INC-1", Created: now})
	if err != nil {
		t.Fatal(err)
	}
	db := r.rawState(t)
	rawExec(t, db, `UPDATE requests SET state = 'approved', decided_by = 'bob', decided_ns = ?, valid_from_ns = ?, valid_until_ns = ?
		WHERE id = ?`, now.UnixNano(), now.Add(-time.Minute).UnixNano(), now.Add(time.Hour).UnixNano(), req.ID)

	c := r.goClient(t, "root%prod1", aliceKey)
	code, out := c.run("echo forged")
	if code == 0 || strings.Contains(out, "forged\n") {
		t.Fatalf("exec under a request edited into approved ran: %d %q", code, out)
	}
	if !strings.Contains(out, "request "+req.ID+" failed its integrity check") || !strings.Contains(out, "not honoured") {
		t.Errorf("the refusal does not say why: %q", out)
	}
	r.waitEvents(t, audit.StateForged, 1)
	if e, ok := r.forgedEvent("requests"); !ok || e.Request != req.ID || e.Attrs["row"] != req.ID {
		t.Errorf("state.forged event: %+v, %v", e, ok)
	}
	// Asked again, the refusal stands and is not audited again.
	if code, _ := c.run("echo forged"); code == 0 {
		t.Fatal("second exec ran")
	}
	n := 0
	for _, e := range r.sink.Events() {
		if e.Type == audit.StateForged {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d state.forged events, want one per row", n)
	}
}

// A lock deleted from state.db unlocks nobody: the gateway locks everybody
// until an operator re-seals the table (M5).
func TestLockDeletedInStateDBLocksEverybody(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	_, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub, "carol": carolPub})
	ctx := context.Background()
	if err := r.srv.lockPerson(ctx, "carol", "test", "stolen laptop", time.Time{}); err != nil {
		t.Fatal(err)
	}
	alice := r.goClient(t, "root%db1", aliceKey)
	ended := alice.stall(t, "sleep 30")
	r.waitEvents(t, audit.SessionStart, 1)

	db := r.rawState(t)
	rawExec(t, db, `DELETE FROM locks WHERE person = 'carol'`)
	rawExec(t, db, `UPDATE generation SET value = value + 1`) // so that the gateway reads at once
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatal("a session goes on 2 s after the lock table was forged")
	}
	r.waitEvents(t, audit.StateForged, 1)
	if e, ok := r.forgedEvent("locks"); !ok || e.Attrs["row"] != "*" {
		t.Errorf("state.forged event: %+v, %v", e, ok)
	}
	if why := r.srv.lockReason("carol"); !strings.Contains(why, "integrity check") {
		t.Errorf("carol after her lock was deleted: %q", why)
	}
	if why := r.srv.lockReason("alice"); why == "" {
		t.Error("alice is not locked out during the lock-down")
	}

	// The operator reviews and accepts the table; the lock-down lifts.
	if _, err := r.srv.store.ResealLocks(ctx, "local:root", time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for r.srv.lockReason("alice") != "" {
		if time.Now().After(deadline) {
			t.Fatal("the lock-down stays after the re-seal")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := r.goClient(t, "root%db1", aliceKey).run("echo back"); code != 0 {
		t.Errorf("alice after the re-seal: %d %q", code, out)
	}
}
