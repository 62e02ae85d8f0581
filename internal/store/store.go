// Package store keeps Tandem's persistent state: locks (M5), access
// requests and approvals (M8), the audit outbox, blocks, retention state
// and freezes. It runs on an embedded SQLite database (modernc.org/sqlite,
// pure Go; the default, one node) or on PostgreSQL (jackc/pgx, for several
// gateways sharing one state; see postgres.go). dialect.go holds every
// difference between the two.
//
// Several gateway processes may open the same file: SQLite's WAL mode lets
// them read while one writes, every write transaction begins IMMEDIATE (takes
// the write lock at once, so two writers never deadlock on a lock upgrade) and
// a busy timeout makes a writer wait for another instead of failing with
// SQLITE_BUSY. A generation counter, bumped in the same transaction as every
// change, lets the gateways poll cheaply for changes; on PostgreSQL the same
// transaction also sends a NOTIFY, so the others poll at once (Changes).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// migrations are applied in order, each in its own transaction; the schema
// version is the number applied so far. Never edit an applied migration, only
// append new ones.
var migrations = []string{
	// 1: person locks and the change counter.
	`CREATE TABLE locks (
		person     TEXT PRIMARY KEY NOT NULL,
		reason     TEXT NOT NULL,
		locked_by  TEXT NOT NULL,
		created_ns INTEGER NOT NULL, -- unix nanoseconds, UTC
		until_ns   INTEGER           -- unix nanoseconds; NULL: until unlocked
	);
	CREATE TABLE generation (
		id    INTEGER PRIMARY KEY CHECK (id = 1),
		value INTEGER NOT NULL
	);
	INSERT INTO generation (id, value) VALUES (1, 0);`,
	// 2: lock and unlock events waiting to be written to the audit log.
	// Any process may lock (the CLI too), but only the gateway writes the
	// audit log; it drains this table.
	`CREATE TABLE lock_events (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		at_ns     INTEGER NOT NULL,
		kind      TEXT NOT NULL,     -- lock | unlock
		person    TEXT NOT NULL,
		reason    TEXT NOT NULL,
		actor     TEXT NOT NULL,
		until_ns  INTEGER,
		audited   INTEGER NOT NULL DEFAULT 0
	);`,
	// 3: access requests for non-interactive work (M8); see requests.go.
	requestsSchema,
	outboxSchema,
	// 5: whether a request asks for commands with a terminal (M6/M8).
	requestsTTY,
	// 6: which generation each running gateway has applied; see acks.go.
	acksSchema,
	// 7: MACs on requests, approvals and locks; see seal.go.
	sealsSchema,
	// 8: blocks after failed logins and unblocks; see blocks.go.
	blocksSchema,
	// 9: legal holds, retention extensions, audited key destructions and
	// DPO notices; see retention.go.
	retentionSchema,
	// 10: freezes of hosts, tenants and labels (M27); see freezes.go.
	freezesSchema,
	// 11: the nodes of a cluster witnessing each other's logs; see cosign.go.
	cosignSchema,
	// 12: the cluster-wide registry of shared sessions; see cluster.go.
	clusterSchema,
	// 13: recordings on shared storage; see recordings.go.
	recordingsSchema,
	// 14: the KEK check of the recordings' key copies; see recordings.go.
	recordingKEKSchema,
}

// Store is an open state database. It is safe for concurrent use.
type Store struct {
	db   conn
	seal *sealer   // nil without the state key: sealed state is refused
	pg   *pgListen // PostgreSQL only: how to listen for other nodes' changes
}

// Open opens the SQLite database at path, creating it (mode 0600, in a
// directory created with mode 0700 if missing) and bringing its schema up
// to date. It refuses a database whose schema is newer than this program
// knows. OpenPostgres is the same for a PostgreSQL database.
//
// Locks and requests are sealed with the state key (see seal.go): only a
// store opened WithKeyDir reads or changes them; without it those
// operations fail with ErrNoKey. The first process that opens a store with
// a key directory holding no key yet creates the key and seals the rows
// already stored.
//
// An existing directory keeps its mode: the path may sit in a directory the
// operator manages (such as a systemd StateDirectory), and changing its mode
// behind their back would surprise more than it protects. The database file
// itself is always set to 0600.
func Open(path string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: resolve %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	// Create the file ourselves so that it never exists with wider permissions;
	// SQLite gives the -wal and -shm files the mode of the database file.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", abs, err)
	}
	err = f.Chmod(0o600) // an older file may have been created wider
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store: set mode of %s: %w", abs, err)
	}

	sdb, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s := &Store{db: conn{sdb, sqliteDialect}}
	if err := s.migrateRetrying(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: %s: %w", abs, err)
	}
	if err := s.setUp(context.Background(), opts); err != nil {
		sdb.Close()
		return nil, err
	}
	return s, nil
}

// setUp loads the state key when opts ask for it, on a migrated database.
func (s *Store) setUp(ctx context.Context, opts []Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.keyDir == "" {
		return nil
	}
	if err := s.loadKey(ctx, o.keyDir, o.reporter); err != nil {
		return fmt.Errorf("store: %w", s.unavailable(err))
	}
	if err := s.sealNewSets(ctx); err != nil {
		return fmt.Errorf("store: %w", s.unavailable(err))
	}
	return nil
}

// isBusy reports SQLITE_BUSY (primary result code 5, any extended code).
func isBusy(err error) bool {
	var se interface{ Code() int }
	return errors.As(err, &se) && se.Code()&0xff == 5
}

// migrateRetrying runs migrate, retrying while another process holds the
// database: when several gateways open a new file at once, one of them
// switches it to WAL, and SQLite answers the others SQLITE_BUSY without
// calling the busy handler. Bounded to about five seconds.
func (s *Store) migrateRetrying(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		err := s.migrate(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
	}
}

// dsn builds the driver's connection string. The path goes into a file: URI
// (escaped, so '?' or '#' in a directory name cannot be taken for
// parameters); the driver runs each _pragma on every new connection, which
// matters for busy_timeout and foreign_keys, as both are per connection.
func dsn(abs string) string {
	q := url.Values{}
	// A writer waits up to 15 s for another: a lock or an approval that
	// waits is better than one that fails, and a write transaction holds
	// the lock for milliseconds, so only a machine under heavy load (or
	// the race detector) ever comes near it.
	q.Add("_pragma", "busy_timeout(15000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)") // a lock must survive a power cut
	// Deleted rows are overwritten with zeros, not left in free pages:
	// what retention or a drained outbox deletes is gone from the file.
	q.Add("_pragma", "secure_delete(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// migrate applies the migrations not yet recorded in schema_version.
// Every step holds the migration lock (SQLite: the write lock; PostgreSQL:
// an advisory lock), so gateways that start at once on a new database
// apply each migration exactly once, one after the other.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.beginLocked(ctx, migrationLockKey)
	if err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for i := range migrations {
		if err := s.applyMigration(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration applies migration i unless the schema is already past it.
// Reading the version, applying and recording it happen in one transaction
// under the migration lock, so two processes opening a new database at
// once cannot both apply the same migration.
func (s *Store) applyMigration(ctx context.Context, i int) error {
	tx, err := s.db.beginLocked(ctx, migrationLockKey)
	if err != nil {
		return fmt.Errorf("migration %d: begin: %w", i+1, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	var version int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("migration %d: init version: %w", i+1, err)
		}
	case err != nil:
		return fmt.Errorf("migration %d: read version: %w", i+1, err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this program knows (%d)", version, len(migrations))
	}
	if version > i {
		return nil // applied earlier; the deferred rollback ends the read
	}
	if _, err := tx.ExecContext(ctx, s.db.d.ddl(migrations[i])); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, i+1); err != nil {
		return fmt.Errorf("migration %d: set version: %w", i+1, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d: commit: %w", i+1, err)
	}
	return nil
}

// Close closes the database. Listeners started by Changes end with their
// context, not here.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Lock is a lock-out of one person: while it is active the gateway refuses
// the person's logins and ends their sessions (M5).
type Lock struct {
	Person  string    // person id
	Reason  string    // why, for the audit trail and the person's refusal message
	By      string    // person id of whoever set the lock
	Created time.Time // when the lock was set
	Until   time.Time // when it ends by itself; zero: until unlocked
}

// Active reports whether the lock is in force at now.
func (l Lock) Active(now time.Time) bool {
	return l.Until.IsZero() || l.Until.After(now)
}

// Lock stores l, replacing an existing lock of the same person, and bumps the
// generation. Person and Created must be set; times are kept to the
// nanosecond and come back in UTC.
func (s *Store) Lock(ctx context.Context, l Lock) error {
	if l.Person == "" {
		return errors.New("store: lock: empty person")
	}
	if l.Created.IsZero() {
		return fmt.Errorf("store: lock %s: created time not set", l.Person)
	}
	created, err := toNanos(l.Created)
	if err != nil {
		return fmt.Errorf("store: lock %s: created: %w", l.Person, err)
	}
	var until sql.NullInt64
	if !l.Until.IsZero() {
		n, err := toNanos(l.Until)
		if err != nil {
			return fmt.Errorf("store: lock %s: until: %w", l.Person, err)
		}
		until = sql.NullInt64{Int64: n, Valid: true}
	}
	if s.seal == nil {
		return fmt.Errorf("store: lock %s: %w", l.Person, ErrNoKey)
	}
	return s.change(ctx, "lock "+l.Person, func(tx txn) (bool, error) {
		if err := s.checkLocks(ctx, tx); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO locks (person, reason, locked_by, created_ns, until_ns) VALUES (?, ?, ?, ?, ?)
			 ON CONFLICT (person) DO UPDATE SET reason = excluded.reason, locked_by = excluded.locked_by,
			   created_ns = excluded.created_ns, until_ns = excluded.until_ns`,
			l.Person, l.Reason, l.By, created, until)
		if err != nil {
			return false, err
		}
		if _, err := s.sealLocks(ctx, tx); err != nil {
			return false, err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO lock_events (at_ns, kind, person, reason, actor, until_ns) VALUES (?, 'lock', ?, ?, ?, ?)`,
			created, l.Person, l.Reason, l.By, until)
		return true, err
	})
}

// Unlock removes the lock of person and reports whether there was one. A lock
// that has already expired still counts as there (its record is removed).
// The generation is bumped only when something was removed.
// by names who unlocked (a person id, or "local:<user>" for the CLI).
func (s *Store) Unlock(ctx context.Context, person, by string) (bool, error) {
	if s.seal == nil {
		return false, fmt.Errorf("store: unlock %s: %w", person, ErrNoKey)
	}
	var removed bool
	err := s.change(ctx, "unlock "+person, func(tx txn) (bool, error) {
		// A table that fails its check is not changed: sealing it again
		// would accept whatever edit broke it.
		if err := s.checkLocks(ctx, tx); err != nil {
			return false, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE person = ?`, person)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		if removed = n > 0; !removed || err != nil {
			return removed, err
		}
		if _, err := s.sealLocks(ctx, tx); err != nil {
			return false, err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO lock_events (at_ns, kind, person, reason, actor) VALUES (?, 'unlock', ?, '', ?)`,
			time.Now().UnixNano(), person, by)
		return removed, err
	})
	return removed, err
}

// LockEvent is a lock or unlock not yet written to the audit log.
type LockEvent struct {
	ID     int64
	At     time.Time
	Kind   string // lock | unlock
	Person string
	Reason string
	Actor  string
	Until  time.Time // zero: until unlocked
}

// PendingLockEvents returns the lock events the audit log has not taken
// yet, oldest first.
func (s *Store) PendingLockEvents(ctx context.Context) ([]LockEvent, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at_ns, kind, person, reason, actor, until_ns FROM lock_events WHERE audited = 0 ORDER BY id LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("store: pending lock events: %w", err)
	}
	defer rows.Close()
	var out []LockEvent
	for rows.Next() {
		var e LockEvent
		var at int64
		var until sql.NullInt64
		if err := rows.Scan(&e.ID, &at, &e.Kind, &e.Person, &e.Reason, &e.Actor, &until); err != nil {
			return nil, fmt.Errorf("store: pending lock events: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		if until.Valid {
			e.Until = time.Unix(0, until.Int64).UTC()
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkLockEventAudited records that the audit log holds event id.
func (s *Store) MarkLockEventAudited(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE lock_events SET audited = 1 WHERE id = ?`, id); err != nil {
		return fmt.Errorf("store: mark lock event %d: %w", id, err)
	}
	return nil
}

// change runs f in a write transaction and bumps the generation in the same
// transaction when f reports a change, so that a reader who sees the new
// generation also sees the change.
func (s *Store) change(ctx context.Context, what string, f func(txn) (changed bool, err error)) error {
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", what, s.unavailable(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	changed, err := f(tx)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, s.unavailable(err))
	}
	if changed {
		if _, err := tx.ExecContext(ctx, `UPDATE generation SET value = value + 1 WHERE id = 1`); err != nil {
			return fmt.Errorf("store: %s: bump generation: %w", what, s.unavailable(err))
		}
		// Delivered at commit, so a listener that hears it reads the change.
		if err := tx.notify(ctx); err != nil {
			return fmt.Errorf("store: %s: notify: %w", what, s.unavailable(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit: %w", what, s.unavailable(err))
	}
	return nil
}

const lockColumns = `person, reason, locked_by, created_ns, until_ns`

// Locks returns the locks active at now, by person.
//
// When the lock table fails its integrity check (a row deleted, added or
// changed by something other than the store), Locks still returns every
// row it can read as a lock, and a *Forgery for the table (errors.Is
// ErrForged): the caller must then treat every person as locked, since the
// missing lock could be anybody's (fail closed).
func (s *Store) Locks(ctx context.Context, now time.Time) (map[string]Lock, error) {
	n, err := toNanos(now)
	if err != nil {
		return nil, fmt.Errorf("store: locks: now: %w", err)
	}
	if s.seal == nil {
		return nil, fmt.Errorf("store: locks: %w", ErrNoKey)
	}
	// The rows and the table's seal are read in one transaction: read
	// apart, a lock written between the two reads looks like a forged
	// table, and every person would count as locked until the next read.
	tx, err := s.db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: locks: %w", s.unavailable(err))
	}
	ls, bad, err := s.readLocks(ctx, tx)
	_ = tx.Rollback()
	if err != nil {
		return nil, fmt.Errorf("store: locks: %w", s.unavailable(err))
	}
	locks := make(map[string]Lock)
	for _, r := range ls {
		if !r.until.Valid || r.until.Int64 > n {
			locks[r.person] = r.lock()
		}
	}
	if f := tableForgery(bad); f != nil {
		return locks, f
	}
	return locks, nil
}

// LockOf returns the lock of person active at now, or nil if there is none.
// A lock table that fails its integrity check is reported as Locks does
// (a *Forgery), with the person's lock if a row names them.
func (s *Store) LockOf(ctx context.Context, person string, now time.Time) (*Lock, error) {
	locks, err := s.Locks(ctx, now)
	if locks == nil {
		return nil, err
	}
	if l, ok := locks[person]; ok {
		return &l, err
	}
	return nil, err
}

// Generation returns a counter that every change of a lock increases. A
// gateway polls it (a single-row read) and reloads the locks only when it
// moved, also when another process made the change.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM generation WHERE id = 1`).Scan(&g); err != nil {
		return 0, fmt.Errorf("store: generation: %w", s.unavailable(err))
	}
	return g, nil
}

// Unix nanoseconds in an int64 cover the years 1677 to 2262; outside that
// range time.UnixNano is undefined, so such times are refused, not wrapped.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// toNanos converts t to unix nanoseconds, refusing times it cannot represent.
func toNanos(t time.Time) (int64, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("time %s out of range (years 1677 to 2262)", t.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}
