package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// reports collects what a store reports.
type reports struct {
	mu sync.Mutex
	fs []Forgery
}

func (r *reports) add(f Forgery) { r.mu.Lock(); r.fs = append(r.fs, f); r.mu.Unlock() }
func (r *reports) all() []Forgery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Forgery(nil), r.fs...)
}

// openReported opens a keyed store at path with a reporter.
func openReported(t *testing.T, path target) (*Store, *reports) {
	t.Helper()
	r := &reports{}
	s, err := openAt(path, keyed(path), WithReporter(r.add))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, r
}

func TestStateKeyCreatedOnceWithMode0600(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		s, err := openAt(path, keyed(path))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		kp := filepath.Join(path.keys, KeyFile)
		fi, err := os.Stat(kp)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() != keySize {
			t.Errorf("key file: mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), keySize)
		}
		first, _ := os.ReadFile(kp)
		s, err = openAt(path, keyed(path))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if again, _ := os.ReadFile(kp); !bytes.Equal(first, again) {
			t.Error("the key was replaced on the second open")
		}
		if err := os.WriteFile(kp, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openAt(path, keyed(path)); err == nil || !strings.Contains(err.Error(), "refusing to replace") {
			t.Errorf("a damaged key was accepted or replaced: %v", err)
		}
		if b, _ := os.ReadFile(kp); string(b) != "short" {
			t.Error("the damaged key file was overwritten")
		}
	})
}

func TestWithoutKeySealedStateIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s := mustOpen(t, bk.fresh(t))
		checks := map[string]error{
			"Lock":           s.Lock(ctx, Lock{Person: "bob", Created: t0}),
			"Locks":          second(s.Locks(ctx, t0)),
			"CreateRequest":  second(s.CreateRequest(ctx, newRequest("alice", t0))),
			"GetRequest":     second(s.GetRequest(ctx, "00000000")),
			"ActiveRequests": second(s.ActiveRequests(ctx, "alice", t0)),
			"ListRequests":   second(s.ListRequests(ctx, RequestFilter{})),
		}
		_, err := s.Unlock(ctx, "bob", "x")
		checks["Unlock"] = err
		for name, err := range checks {
			if !errors.Is(err, ErrNoKey) {
				t.Errorf("%s without the key: %v, want ErrNoKey", name, err)
			}
		}
		// The outbox is not sealed: the recording reader queues events without the key.
		if err := s.QueueAudit(ctx, t0, []byte(`{}`)); err != nil {
			t.Errorf("QueueAudit without the key: %v", err)
		}
	})
}

func second[T any](_ T, err error) error { return err }

// approvedRequest stores a request approved by bob, so that every column
// holds a value.
func approvedRequest(t *testing.T, s *Store) Request {
	t.Helper()
	r := newRequest("alice", t0)
	r.TTY = true
	r = mustCreate(t, s, r)
	got, err := s.Approve(context.Background(), r.ID, Approval{By: "bob", At: t0.Add(time.Minute), Comment: "ok"}, 1)
	if err != nil || got.State != RequestApproved {
		t.Fatalf("Approve: %+v, %v", got, err)
	}
	return got
}

// Every column of a request is covered: changing any one by hand makes the
// request fail its check, and it is then neither returned nor active.
func TestRequestTamperedColumnIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		r := approvedRequest(t, s)
		db := raw(t, path)
		now := t0.Add(2 * time.Minute)
		if a, err := s.ActiveRequests(ctx, "alice", now); err != nil || len(a) != 1 {
			t.Fatalf("genuine request: %+v, %v", a, err)
		}
		edits := map[string]string{
			"id":              `'0badf00d'`,
			"requester":       `'mallory'`,
			"hosts_json":      `'["db1","db2","db3"]'`,
			"selector":        `'*'`,
			"login":           `'root'`,
			"duration_ns":     `duration_ns * 10`,
			"reason":          `'other'`,
			"tty":             `0`,
			"state":           `'open'`,
			"created_ns":      `created_ns + 1`,
			"decided_ns":      `decided_ns + 1`,
			"decided_by":      `'carol'`,
			"decision_reason": `'x'`,
			"valid_from_ns":   `valid_from_ns - 1`,
			"valid_until_ns":  `valid_until_ns + 3600000000000`,
			"mac":             `zeroblob(32)`,
		}
		for col, expr := range edits {
			t.Run(col, func(t *testing.T) {
				var (
					before any
					id     = r.ID
				)
				if err := db.QueryRow(`SELECT `+col+` FROM requests WHERE id = ?`, r.ID).Scan(&before); err != nil {
					t.Fatal(err)
				}
				exec(t, db, `UPDATE requests SET `+col+` = `+expr+` WHERE id = ?`, r.ID)
				if col == "id" {
					id = "0badf00d"
				}
				defer exec(t, db, `UPDATE requests SET `+col+` = ? WHERE id = ?`, before, id)
				got, err := s.GetRequest(ctx, id)
				if got != nil || !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), "was not honoured") {
					t.Errorf("GetRequest after editing %s = %+v, %v; want a forgery", col, got, err)
				}
				for _, who := range []string{"alice", "mallory"} {
					if a, _ := s.ActiveRequests(ctx, who, now); len(a) != 0 {
						t.Errorf("after editing %s, %s has active requests %+v", col, who, a)
					}
				}
				if l, err := s.ListRequests(ctx, RequestFilter{}); err != nil || len(l) != 0 {
					t.Errorf("ListRequests after editing %s = %+v, %v", col, l, err)
				}
			})
		}
		if a, err := s.ActiveRequests(ctx, "alice", now); err != nil || len(a) != 1 {
			t.Errorf("restored request: %+v, %v", a, err)
		}
		// Reported once per row and stored MAC: the row under its own id, under
		// the id it was renamed to, and with its MAC replaced.
		if got := rep.all(); len(got) != 3 {
			t.Errorf("reports = %+v, want 3", got)
		}
	})
}

// UPDATE requests SET state='approved' with a window: the edited request
// does not grant anything, the forgery is reported once, not on every read,
// and it cannot be approved, denied or revoked either.
func TestRequestEditedToApprovedIsNotActive(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		r := mustCreate(t, s, newRequest("alice", t0))
		db := raw(t, path)
		exec(t, db, `UPDATE requests SET state = 'approved', decided_by = 'bob', decided_ns = ?, valid_from_ns = ?, valid_until_ns = ?
			WHERE id = ?`, t0.UnixNano(), t0.UnixNano(), t0.Add(time.Hour).UnixNano(), r.ID)
		now := t0.Add(time.Minute)
		for range 3 {
			a, err := s.ActiveRequests(ctx, "alice", now)
			if len(a) != 0 || !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), "request "+r.ID+" failed its integrity check") {
				t.Fatalf("ActiveRequests = %+v, %v; want none and a forgery", a, err)
			}
		}
		if got := rep.all(); len(got) != 1 || got[0].Table != "requests" || got[0].Row != r.ID {
			t.Errorf("reports = %+v, want one for request %s", got, r.ID)
		}
		if _, err := s.Revoke(ctx, r.ID, "bob", "x", now); !errors.Is(err, ErrForged) {
			t.Errorf("Revoke of a forged request: %v", err)
		}
		if _, err := s.Approve(ctx, r.ID, Approval{By: "carol", At: now}, 1); !errors.Is(err, ErrForged) {
			t.Errorf("Approve of a forged request: %v", err)
		}
	})
}

// A request row inserted by hand, approved and in its window, grants
// nothing.
func TestInsertedRequestIsNotActive(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		db := raw(t, path)
		exec(t, db, `INSERT INTO requests (id, requester, hosts_json, selector, login, duration_ns, reason, state, created_ns,
			decided_ns, decided_by, valid_from_ns, valid_until_ns) VALUES ('deadbeef', 'alice', '["db1"]', 'db1', 'root', ?, 'x',
			'approved', ?, ?, 'bob', ?, ?)`, int64(time.Hour), t0.UnixNano(), t0.UnixNano(), t0.UnixNano(), t0.Add(time.Hour).UnixNano())
		if a, err := s.ActiveRequests(ctx, "alice", t0.Add(time.Minute)); len(a) != 0 || !errors.Is(err, ErrForged) {
			t.Errorf("ActiveRequests = %+v, %v", a, err)
		}
		if got := rep.all(); len(got) != 1 || got[0].What != "no MAC" {
			t.Errorf("reports = %+v", got)
		}
	})
}

// An approval inserted by hand counts for nothing: with two approvals
// needed, one forged and one genuine leave the request open.
func TestInsertedApprovalIsNotCounted(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		r := mustCreate(t, s, newRequest("alice", t0))
		db := raw(t, path)
		exec(t, db, `INSERT INTO request_approvals (request_id, approver, at_ns, comment) VALUES (?, 'mallory', ?, 'sure')`,
			r.ID, t0.UnixNano())
		if got := mustGet(t, s, r.ID); len(got.Approvals) != 0 {
			t.Errorf("forged approval listed: %+v", got.Approvals)
		}
		got, err := s.Approve(ctx, r.ID, Approval{By: "bob", At: t0.Add(time.Minute)}, 2)
		if err != nil || got.State != RequestOpen || len(got.Approvals) != 1 {
			t.Errorf("Approve after a forged approval = %+v, %v; want open with one approval", got, err)
		}
		// A genuine approval whose comment is changed by hand no longer counts either.
		exec(t, db, `UPDATE request_approvals SET comment = 'edited' WHERE approver = 'bob'`)
		if got := mustGet(t, s, r.ID); len(got.Approvals) != 0 {
			t.Errorf("edited approval listed: %+v", got.Approvals)
		}
		if len(rep.all()) != 2 {
			t.Errorf("reports = %+v, want the forged and the edited approval", rep.all())
		}
	})
}

// Every column of a lock is covered; an edited lock still locks, and the
// table is reported as forged so that the gateway locks everybody.
func TestLockTamperedColumnFailsClosed(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, _ := openReported(t, path)
		mustLock(t, s, Lock{Person: "bob", Reason: "stolen laptop", By: "alice", Created: t0, Until: t0.Add(time.Hour)})
		db := raw(t, path)
		edits := map[string]string{
			"person":     `'carol'`,
			"reason":     `'x'`,
			"locked_by":  `'mallory'`,
			"created_ns": `created_ns + 1`,
			"until_ns":   `until_ns - 3599000000000`, // ends one second after t0
		}
		for col, expr := range edits {
			t.Run(col, func(t *testing.T) {
				var before any
				if err := db.QueryRow(`SELECT ` + col + ` FROM locks`).Scan(&before); err != nil {
					t.Fatal(err)
				}
				exec(t, db, `UPDATE locks SET `+col+` = `+expr)
				defer exec(t, db, `UPDATE locks SET `+col+` = ?`, before)
				locks, err := s.Locks(ctx, t0)
				var f *Forgery
				if !errors.As(err, &f) || f.Row != "*" || len(locks) != 1 {
					t.Errorf("Locks after editing %s = %+v, %v; want the row and a table forgery", col, locks, err)
				}
				if err := s.Lock(ctx, Lock{Person: "dave", Created: t0}); !errors.Is(err, ErrForged) {
					t.Errorf("Lock on a forged table: %v", err)
				}
			})
		}
		if locks, err := s.Locks(ctx, t0); err != nil || len(locks) != 1 {
			t.Errorf("restored: %+v, %v", locks, err)
		}
		// Only the MAC column changed: the content is genuine, the table's seal
		// holds, nothing is forged for enforcement.
		exec(t, db, `UPDATE locks SET mac = zeroblob(32)`)
		if locks, err := s.Locks(ctx, t0); err != nil || len(locks) != 1 {
			t.Errorf("after changing only the row's MAC: %+v, %v", locks, err)
		}
	})
}

// Deleting a lock by hand does not unlock: the table fails its check and
// Locks says so, lock and unlock refuse to seal the edit, and only an
// explicit ResealLocks accepts the table again, queuing state.resealed.
func TestDeletedLockFailsClosed(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		mustLock(t, s, Lock{Person: "bob", Reason: "stolen laptop", By: "alice", Created: t0})
		mustLock(t, s, Lock{Person: "carol", Reason: "leave", By: "alice", Created: t0})
		db := raw(t, path)
		exec(t, db, `DELETE FROM locks WHERE person = 'bob'`)

		locks, err := s.Locks(ctx, t0)
		if !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), "every person counts as locked") {
			t.Fatalf("Locks after a deletion = %+v, %v; want a table forgery", locks, err)
		}
		if _, ok := locks["carol"]; !ok {
			t.Errorf("the remaining lock is lost: %+v", locks)
		}
		if l, err := s.LockOf(ctx, "bob", t0); !errors.Is(err, ErrForged) {
			t.Errorf("LockOf(bob) = %+v, %v; want a forgery", l, err)
		}
		if _, err := s.Unlock(ctx, "carol", "local:root"); !errors.Is(err, ErrForged) {
			t.Errorf("Unlock on a forged table: %v", err)
		}
		if got := rep.all(); len(got) != 1 || got[0].Row != "*" {
			t.Errorf("reports = %+v, want the table once", got)
		}
		// Deleting the seal itself, or everything, is no way out either.
		exec(t, db, `DELETE FROM locks`)
		exec(t, db, `DELETE FROM state_seals`)
		if _, err := s.Locks(ctx, t0); !errors.Is(err, ErrForged) {
			t.Errorf("Locks with table and seal deleted: %v", err)
		}

		n, err := s.ResealLocks(ctx, "local:root", t0)
		if err != nil || n != 0 {
			t.Fatalf("ResealLocks = %d, %v", n, err)
		}
		if locks, err := s.Locks(ctx, t0); err != nil || len(locks) != 0 {
			t.Errorf("after reseal: %+v, %v", locks, err)
		}
		es, _ := s.PendingAudit(ctx)
		if len(es) != 1 || !strings.Contains(string(es[0].Event), `"state.resealed"`) ||
			!strings.Contains(string(es[0].Event), `"by":"local:root"`) {
			t.Errorf("outbox after reseal: %+v", es)
		}
	})
}

// A database from before sealing (schema 6) is sealed once, by the
// process that creates the key, and that is audited with counts. Later, a
// row without a MAC is a forgery, not an old row.
func TestUpgradeSealsExistingRowsOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db := raw(t, fileTarget(path))
	old := &Store{db: db.c}
	exec(t, db, `CREATE TABLE schema_version (version INTEGER NOT NULL)`)
	for i := range 6 {
		if err := old.applyMigration(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, db, `INSERT INTO requests (id, requester, hosts_json, selector, login, duration_ns, reason, state, created_ns,
		decided_ns, decided_by, valid_from_ns, valid_until_ns) VALUES ('0badc0de', 'alice', '["db1"]', 'db1', 'postgres', ?, 'old',
		'approved', ?, ?, 'bob', ?, ?)`, int64(time.Hour), t0.UnixNano(), t0.UnixNano(), t0.UnixNano(), t0.Add(time.Hour).UnixNano())
	exec(t, db, `INSERT INTO request_approvals (request_id, approver, at_ns, comment) VALUES ('0badc0de', 'bob', ?, '')`, t0.UnixNano())
	exec(t, db, `INSERT INTO locks (person, reason, locked_by, created_ns) VALUES ('carol', 'leave', 'alice', ?)`, t0.UnixNano())

	s, rep := openReported(t, fileTarget(path))
	a, err := s.ActiveRequests(ctx, "alice", t0.Add(time.Minute))
	if err != nil || len(a) != 1 || len(a[0].Approvals) != 1 {
		t.Errorf("old request after the upgrade: %+v, %v", a, err)
	}
	if locks, err := s.Locks(ctx, t0); err != nil || len(locks) != 1 {
		t.Errorf("old lock after the upgrade: %+v, %v", locks, err)
	}
	es, _ := s.PendingAudit(ctx)
	if len(es) != 1 {
		t.Fatalf("outbox: %+v", es)
	}
	var ev struct {
		Type  string
		Attrs map[string]string
	}
	if err := json.Unmarshal(es[0].Event, &ev); err != nil || ev.Type != "state.resealed" ||
		ev.Attrs["requests"] != "1" || ev.Attrs["request_approvals"] != "1" || ev.Attrs["locks"] != "1" {
		t.Errorf("resealed event: %s, %v", es[0].Event, err)
	}
	if len(rep.all()) != 0 {
		t.Errorf("reports: %+v", rep.all())
	}
	s.Close()

	// Stripping the MAC off a row afterwards does not get it sealed again.
	exec(t, db, `UPDATE requests SET mac = NULL, valid_until_ns = ?`, t0.Add(48*time.Hour).UnixNano())
	s2, _ := openReported(t, fileTarget(path))
	if a, err := s2.ActiveRequests(ctx, "alice", t0.Add(time.Minute)); len(a) != 0 || !errors.Is(err, ErrForged) {
		t.Errorf("a row stripped of its MAC after the upgrade: %+v, %v", a, err)
	}
	if es, _ := s2.PendingAudit(ctx); len(es) != 1 {
		t.Errorf("sealed a second time: %+v", es)
	}
}

// A new, empty database next to an existing key has no seal on its lock
// table: deleting state.db does not unlock anybody either.
func TestNewDatabaseWithOldKeyFailsClosed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, _ := openReported(t, fileTarget(path))
	mustLock(t, s, Lock{Person: "bob", Reason: "stolen laptop", By: "alice", Created: t0})
	s.Close()
	for _, f := range []string{"state.db", "state.db-wal", "state.db-shm"} {
		os.Remove(filepath.Join(dir, f))
	}
	s, _ = openReported(t, fileTarget(path))
	if _, err := s.Locks(ctx, t0); !errors.Is(err, ErrForged) {
		t.Errorf("Locks on a replaced database: %v", err)
	}
}

// Two processes creating the key at once end up with the same key.
func TestConcurrentKeyCreation(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		var wg sync.WaitGroup
		stores := make([]*Store, 4)
		errs := make([]error, 4)
		for i := range stores {
			wg.Go(func() { stores[i], errs[i] = openAt(path, keyed(path)) })
		}
		wg.Wait()
		for i, s := range stores {
			if errs[i] != nil {
				t.Fatalf("Open %d: %v", i, errs[i])
			}
			defer s.Close()
		}
		for i := range stores {
			if !bytes.Equal(stores[i].seal.key, stores[0].seal.key) {
				t.Errorf("store %d has another key", i)
			}
		}
		mustLock(t, stores[1], Lock{Person: "bob", Created: t0})
		if locks, err := stores[3].Locks(context.Background(), t0); err != nil || len(locks) != 1 {
			t.Errorf("a lock by one process read by another: %+v, %v", locks, err)
		}
	})
}

// The encoding is unambiguous: moving bytes between adjacent fields
// changes the MAC.
func TestMACEncodingIsUnambiguous(t *testing.T) {
	s := &sealer{key: bytes.Repeat([]byte{7}, keySize)}
	a := s.mac(kindLock, str("ab"), str("c"))
	b := s.mac(kindLock, str("a"), str("bc"))
	c := s.mac(kindApproval, str("ab"), str("c"))
	d := s.mac(kindLock, nullNum(sql.NullInt64{}), str(""))
	e := s.mac(kindLock, num(0), str(""))
	if bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(d, e) {
		t.Error("two different encodings share a MAC")
	}
}
