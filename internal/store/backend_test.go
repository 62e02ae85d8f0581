package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"tandem.dev/tandem/internal/testenv"
)

// The store's tests are one suite run against every backend: each test
// that is not about one database's own details runs as a subtest per
// backend (eachBackend), on a fresh, empty database of it. PostgreSQL is a
// private server on loopback, started once for the package by the first
// test that needs it (testenv.SharedPostgres); each test gets a database
// of its own.

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedPostgres()
	os.Exit(code)
}

// backend is one database the store runs on.
type backend struct {
	name  string
	fresh func(t *testing.T) target
}

var backends = []backend{
	{"sqlite", func(t *testing.T) target {
		dir := t.TempDir()
		return target{file: filepath.Join(dir, "state.db"), keys: filepath.Join(dir, "keys")}
	}},
	{"postgres", func(t *testing.T) target {
		return target{dsn: testenv.SharedPostgres(t).NewDatabase(t), keys: filepath.Join(t.TempDir(), "keys")}
	}},
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// target is one database of a backend, to be opened as often as a test
// likes (several handles stand for several gateways), with its key
// directory.
type target struct {
	file string // SQLite: the file
	dsn  string // PostgreSQL: the connection string
	keys string // the state key's directory
}

func (d target) postgres() bool { return d.dsn != "" }

// openAt opens the database of d.
func openAt(d target, opts ...Option) (*Store, error) {
	if d.postgres() {
		return OpenPostgres(d.dsn, opts...)
	}
	return Open(d.file, opts...)
}

// keyed is the key directory option the tests use.
func keyed(d target) Option { return WithKeyDir(d.keys) }

// rawDB is the same database opened with plain SQL, as someone editing it
// by hand would; statements are written for SQLite and rewritten for the
// backend as the store's own are.
type rawDB struct{ c conn }

func raw(t *testing.T, d target) rawDB {
	t.Helper()
	var (
		db  *sql.DB
		err error
		dl  = sqliteDialect
	)
	if d.postgres() {
		cfg, perr := parsePostgres(d.dsn)
		if perr != nil {
			t.Fatal(perr)
		}
		// No foreign keys here either (triggers off for this session).
		cfg.RuntimeParams["session_replication_role"] = "replica"
		db, dl = openPGX(cfg), postgresDialect
	} else {
		// No foreign keys: whoever edits by hand need not respect them.
		db, err = sql.Open("sqlite", "file:"+filepath.ToSlash(d.file)+"?_pragma=busy_timeout(5000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return rawDB{conn{db, dl}}
}

func (r rawDB) Exec(q string, args ...any) (sql.Result, error) {
	return r.c.ExecContext(context.Background(), r.sql(q), args...)
}

func (r rawDB) QueryRow(q string, args ...any) *sql.Row {
	return r.c.QueryRowContext(context.Background(), r.sql(q), args...)
}

var (
	zeroblob = regexp.MustCompile(`zeroblob\((\d+)\)`)
	hexBlob  = regexp.MustCompile(`x'([0-9a-fA-F]*)'`)
)

// sql rewrites the SQLite blob functions the tests use for PostgreSQL.
func (r rawDB) sql(q string) string {
	if !r.c.d.postgres {
		return q
	}
	q = zeroblob.ReplaceAllString(q, `decode(repeat('00', $1), 'hex')`)
	return hexBlob.ReplaceAllString(q, `decode('$1', 'hex')`)
}

// postgres reports whether the database is PostgreSQL.
func (r rawDB) postgres() bool { return r.c.d.postgres }

func exec(t *testing.T, db rawDB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// fileTarget is the SQLite database at path, with keys/ next to it, for
// the tests of SQLite's own details.
func fileTarget(path string) target {
	return target{file: path, keys: filepath.Join(filepath.Dir(path), "keys")}
}

// mustOpen opens d, closed by the test's cleanup.
func mustOpen(t *testing.T, d target, opts ...Option) *Store {
	t.Helper()
	s, err := openAt(d, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPair opens a fresh database of bk through two handles, which stand
// for two gateways sharing it.
func openPair(t *testing.T, bk backend) (a, b *Store, d target) {
	t.Helper()
	d = bk.fresh(t)
	return mustOpen(t, d, keyed(d)), mustOpen(t, d, keyed(d)), d
}
