package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func openTemp(t *testing.T, b backend) (*Store, target) {
	t.Helper()
	path := b.fresh(t)
	s, err := openAt(path, keyed(path))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustLock(t *testing.T, s *Store, l Lock) {
	t.Helper()
	if err := s.Lock(context.Background(), l); err != nil {
		t.Fatalf("Lock(%+v): %v", l, err)
	}
}

func mustGeneration(t *testing.T, s *Store) int64 {
	t.Helper()
	g, err := s.Generation(context.Background())
	if err != nil {
		t.Fatalf("Generation: %v", err)
	}
	return g
}

func sameLock(a, b Lock) bool {
	return a.Person == b.Person && a.Reason == b.Reason && a.By == b.By &&
		a.Created.Equal(b.Created) && a.Until.Equal(b.Until)
}

func TestReopenKeepsLocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, err := openAt(path, keyed(path))
		if err != nil {
			t.Fatal(err)
		}
		forever := Lock{Person: "alice", Reason: "left the company", By: "bob", Created: t0}
		timed := Lock{Person: "carol", Reason: "suspicious logins", By: "bob", Created: t0, Until: t0.Add(time.Hour)}
		mustLock(t, s, forever)
		mustLock(t, s, timed)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s, err = openAt(path, keyed(path))
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s.Close()
		locks, err := s.Locks(ctx, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(locks) != 2 || !sameLock(locks["alice"], forever) || !sameLock(locks["carol"], timed) {
			t.Fatalf("after reopen: %+v", locks)
		}
		if locks["alice"].Created.Location() != time.UTC {
			t.Errorf("times not in UTC: %v", locks["alice"].Created.Location())
		}
		if g := mustGeneration(t, s); g != 2 {
			t.Errorf("generation after reopen = %d, want 2", g)
		}
	})
}

func TestLockExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)
		l := Lock{Person: "alice", Reason: "r", By: "bob", Created: t0, Until: t0.Add(time.Minute)}
		mustLock(t, s, l)

		tests := []struct {
			name   string
			now    time.Time
			active bool
		}{
			{"before creation", t0.Add(-time.Hour), true},
			{"at creation", t0, true},
			{"just before end", t0.Add(time.Minute - time.Nanosecond), true},
			{"at end", t0.Add(time.Minute), false},
			{"after end", t0.Add(time.Hour), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.LockOf(ctx, "alice", tt.now)
				if err != nil {
					t.Fatal(err)
				}
				if (got != nil) != tt.active {
					t.Fatalf("LockOf at %v = %+v, want active %v", tt.now, got, tt.active)
				}
				if got != nil && !sameLock(*got, l) {
					t.Errorf("LockOf = %+v, want %+v", *got, l)
				}
				if a := l.Active(tt.now); a != tt.active {
					t.Errorf("Active = %v, want %v", a, tt.active)
				}
				locks, err := s.Locks(ctx, tt.now)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := locks["alice"]; ok != tt.active {
					t.Errorf("Locks contains alice: %v, want %v", ok, tt.active)
				}
			})
		}
	})
}

func TestLockReplacesAndUnlock(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)
		if g := mustGeneration(t, s); g != 0 {
			t.Fatalf("fresh generation = %d", g)
		}
		mustLock(t, s, Lock{Person: "alice", Reason: "first", By: "bob", Created: t0, Until: t0.Add(time.Minute)})
		second := Lock{Person: "alice", Reason: "second", By: "dave", Created: t0.Add(time.Second)}
		mustLock(t, s, second)
		if g := mustGeneration(t, s); g != 2 {
			t.Errorf("generation after two locks = %d, want 2", g)
		}
		got, err := s.LockOf(ctx, "alice", t0.Add(time.Hour))
		if err != nil || got == nil || !sameLock(*got, second) {
			t.Fatalf("LockOf after replace = %+v, %v; want %+v", got, err, second)
		}

		removed, err := s.Unlock(ctx, "alice", "test")
		if err != nil || !removed {
			t.Fatalf("Unlock = %v, %v; want true", removed, err)
		}
		if g := mustGeneration(t, s); g != 3 {
			t.Errorf("generation after unlock = %d, want 3", g)
		}
		if got, err := s.LockOf(ctx, "alice", t0); err != nil || got != nil {
			t.Fatalf("LockOf after unlock = %+v, %v", got, err)
		}
		removed, err = s.Unlock(ctx, "alice", "test")
		if err != nil || removed {
			t.Fatalf("second Unlock = %v, %v; want false", removed, err)
		}
		if g := mustGeneration(t, s); g != 3 {
			t.Errorf("generation moved on an unlock that changed nothing: %d", g)
		}
	})
}

func TestLockRejects(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		s, _ := openTemp(t, bk)
		tests := []struct {
			name string
			l    Lock
			want string
		}{
			{"empty person", Lock{Created: t0}, "empty person"},
			{"no created", Lock{Person: "alice"}, "created time not set"},
			{"until out of range", Lock{Person: "alice", Created: t0, Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, "out of range"},
		}
		for _, tt := range tests {
			err := s.Lock(context.Background(), tt.l)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: Lock error = %v, want it to contain %q", tt.name, err, tt.want)
			}
		}
		if g := mustGeneration(t, s); g != 0 {
			t.Errorf("refused locks moved the generation to %d", g)
		}
	})
}

func TestFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "tandem.db") // Open creates state/
	s, err := Open(path, keyed(fileTarget(path)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustLock(t, s, Lock{Person: "alice", Created: t0}) // makes SQLite create the -wal and -shm files
	check := func(p string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	check(filepath.Dir(path), 0o700)
	check(path, 0o600)
	// The handle is still open, so WAL mode keeps both files in place.
	check(path+"-wal", 0o600)
	check(path+"-shm", 0o600)
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // defeat the umask
		t.Fatal(err)
	}
	s, err := Open(path, keyed(fileTarget(path)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTemp(t, backends[0])
	ctx := context.Background()
	for _, tt := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"busy_timeout", "15000"},
		{"foreign_keys", "1"},
		{"secure_delete", "1"},
	} {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
}

func TestPathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir with ? and # and %20", "tandem.db")
	s, err := Open(path, keyed(fileTarget(path)))
	if err != nil {
		t.Fatal(err)
	}
	mustLock(t, s, Lock{Person: "alice", Created: t0})
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
	s, err = Open(path, keyed(fileTarget(path)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l, err := s.LockOf(context.Background(), "alice", t0); err != nil || l == nil {
		t.Fatalf("lock not found after reopen: %v, %v", l, err)
	}
}

func TestMigrationsIdempotentAndNewerRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		for range 3 {
			s, err := openAt(path, keyed(path))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		db := raw(t, path)
		var v int
		if err := db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != len(migrations) {
			t.Errorf("schema version %d, want %d", v, len(migrations))
		}
		var rows int
		if err := db.QueryRow(`SELECT count(*) FROM schema_version`).Scan(&rows); err != nil || rows != 1 {
			t.Errorf("schema_version rows = %d, %v; want 1", rows, err)
		}
		if _, err := db.Exec(`UPDATE schema_version SET version = ?`, len(migrations)+1); err != nil {
			t.Fatal(err)
		}
		if s, err := openAt(path, keyed(path)); err == nil {
			s.Close()
			t.Fatal("Open accepted a schema newer than it knows")
		} else if !strings.Contains(err.Error(), "newer") {
			t.Errorf("unexpected error: %v", err)
		}
	})
}

// Two Store handles on one file stand for two gateway processes sharing it.
func TestTwoHandlesSeeEachOther(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		a, b, _ := openPair(t, bk)

		g0 := mustGeneration(t, b)
		mustLock(t, a, Lock{Person: "alice", Reason: "r", By: "x", Created: t0})
		if g := mustGeneration(t, b); g != g0+1 {
			t.Fatalf("b sees generation %d after a's lock, want %d", g, g0+1)
		}
		if l, err := b.LockOf(ctx, "alice", t0); err != nil || l == nil {
			t.Fatalf("b does not see a's lock: %v, %v", l, err)
		}
		if removed, err := b.Unlock(ctx, "alice", "test"); err != nil || !removed {
			t.Fatalf("b.Unlock = %v, %v", removed, err)
		}
		if g := mustGeneration(t, a); g != g0+2 {
			t.Fatalf("a sees generation %d after b's unlock, want %d", g, g0+2)
		}
		if l, err := a.LockOf(ctx, "alice", t0); err != nil || l != nil {
			t.Fatalf("a still sees the lock b removed: %v, %v", l, err)
		}
	})
}

// Concurrent writers, through one handle and through two, must wait for each
// other instead of failing with SQLITE_BUSY.
func TestConcurrentLocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		a, b, _ := openPair(t, bk)

		const workers, each = 8, 25
		errs := make(chan error, workers*each)
		var wg sync.WaitGroup
		for w := range workers {
			s := a
			if w%2 == 1 {
				s = b
			}
			wg.Go(func() {
				for i := range each {
					p := fmt.Sprintf("p%d-%d", w, i)
					if err := s.Lock(ctx, Lock{Person: p, Reason: "r", By: "x", Created: t0}); err != nil {
						errs <- err
						return
					}
					if _, err := s.Generation(ctx); err != nil {
						errs <- err
						return
					}
					if i%5 == 0 {
						if _, err := s.Unlock(ctx, p, "test"); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		locks, err := a.Locks(ctx, t0)
		if err != nil {
			t.Fatal(err)
		}
		if want := workers * (each - each/5); len(locks) != want {
			t.Errorf("%d locks, want %d", len(locks), want)
		}
		if g, want := mustGeneration(t, b), int64(workers*(each+each/5)); g != want {
			t.Errorf("generation %d, want %d", g, want)
		}
	})
}

// Opening a new file from several handles at once must apply each migration
// exactly once.
func TestConcurrentOpen(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		const n = 4
		stores := make([]*Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { stores[i], errs[i] = openAt(path, keyed(path)) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Errorf("Open %d: %v", i, errs[i])
				continue
			}
			stores[i].Close()
		}
	})
}

func TestToNanos(t *testing.T) {
	for _, tt := range []struct {
		t  time.Time
		ok bool
	}{
		{t0, true},
		{time.Unix(0, 0), true},
		{time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), false},
	} {
		n, err := toNanos(tt.t)
		if (err == nil) != tt.ok {
			t.Errorf("toNanos(%v) error = %v, want ok %v", tt.t, err, tt.ok)
		}
		if err == nil && !time.Unix(0, n).Equal(tt.t) {
			t.Errorf("toNanos(%v) = %d does not round-trip", tt.t, n)
		}
	}
}

func TestLockEventsWaitForTheAuditLog(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s := mustOpen(t, path, keyed(path))
		now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
		if err := s.Lock(ctx, Lock{Person: "bob", Reason: "left the company", By: "alice", Created: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Unlock(ctx, "bob", "carol"); err != nil {
			t.Fatal(err)
		}
		if removed, _ := s.Unlock(ctx, "bob", "carol"); removed {
			t.Fatal("second unlock removed something")
		}
		evs, err := s.PendingLockEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[0].Kind != "lock" || evs[0].Actor != "alice" || evs[0].Reason != "left the company" || evs[1].Kind != "unlock" || evs[1].Actor != "carol" {
			t.Fatalf("pending events: %+v", evs)
		}
		if err := s.MarkLockEventAudited(ctx, evs[0].ID); err != nil {
			t.Fatal(err)
		}
		evs, _ = s.PendingLockEvents(ctx)
		if len(evs) != 1 || evs[0].Kind != "unlock" {
			t.Fatalf("after marking: %+v", evs)
		}
	})
}

func TestAuditOutbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s := mustOpen(t, bk.fresh(t))
		g0, _ := s.Generation(ctx)
		at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
		if err := s.QueueAudit(ctx, at, []byte(`{"type":"recording.export"}`)); err != nil {
			t.Fatal(err)
		}
		if g1, _ := s.Generation(ctx); g1 == g0 {
			t.Error("queueing did not bump the generation")
		}
		es, err := s.PendingAudit(ctx)
		if err != nil || len(es) != 1 || string(es[0].Event) != `{"type":"recording.export"}` || !es[0].At.Equal(at) {
			t.Fatalf("pending = %+v, %v", es, err)
		}
		if err := s.MarkAudited(ctx, es[0].ID); err != nil {
			t.Fatal(err)
		}
		if es, _ := s.PendingAudit(ctx); len(es) != 0 {
			t.Fatalf("still pending after marking: %+v", es)
		}
		// The plaintext copy is gone from the database, not only flagged.
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_outbox`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("outbox rows after marking: %d, %v", n, err)
		}
	})
}
