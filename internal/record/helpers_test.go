package record

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// fakeClock is the injected clock of the tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	dir   string
	v     *Vault
	clock *fakeClock
	st    Storage // Local(dir), or the shared storage of the backend under test
	db    *sql.DB // the database of the postgres backend
	dsn   string  // … and its connection string
	kek   string  // the KEK file
}

// newEnv makes a data directory with a file KEK kept outside it, and
// records into the backend under test (local unless eachStorage runs the
// test on another).
func newEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	kekPath := filepath.Join(root, "kek")
	if err := GenerateFileKEK(kekPath); err != nil {
		t.Fatal(err)
	}
	kek, err := FileKEK(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	v, err := OpenVault(dir, kek)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, v: v, clock: newClock(), st: Local(dir), kek: kekPath}
	if backendNow == "postgres" {
		e.dsn = testenv.SharedPostgres(t).NewDatabase(t)
		e.db = openRecordingDB(t, e.dsn)
		e.st = NewSQL(e.db)
	}
	return e
}

// The record package's tests that are not about files run against every
// storage (eachStorage): the data directory and PostgreSQL, on a private
// server on loopback started once for the package (testenv), a fresh
// database per env.
var backendNow = "local"

func eachStorage(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, b := range []string{"local", "postgres"} {
		t.Run(b, func(t *testing.T) {
			prev := backendNow
			backendNow = b
			defer func() { backendNow = prev }()
			f(t)
		})
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	code := m.Run()
	testenv.StopSharedPostgres()
	os.Exit(code)
}

// recordingDB is a fresh PostgreSQL database with the state store's
// schema, which holds the recording tables.
func recordingDB(t testing.TB) *sql.DB {
	t.Helper()
	return openRecordingDB(t, testenv.SharedPostgres(t).NewDatabase(t))
}

func openRecordingDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	st, err := store.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := st.RecordingDB()
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// refOf parses a recording's or sidecar's name (a path, or a name in
// shared storage) back into its reference.
func refOf(name string) Ref {
	parts := strings.Split(filepath.ToSlash(name), "/")
	if len(parts) < 3 {
		return Ref{}
	}
	file := parts[len(parts)-1]
	r := Ref{Tenant: parts[len(parts)-3], Day: parts[len(parts)-2], Session: strings.TrimSuffix(strings.TrimSuffix(file, fileExt), sealedExt)}
	r.Sealed = strings.HasSuffix(file, sealedExt)
	return r
}

func (e *env) open(name string) (*Reader, error) {
	return OpenIn(e.v, e.st, refOf(name))
}

func (e *env) sealedSummary(name string) (SealedSummary, error) {
	return ReadSealedSummaryIn(e.v, e.st, refOf(name))
}

func (e *env) openSealed(name string) ([]SealedInput, error) {
	return OpenSealedIn(e.v, e.st, refOf(name))
}

// readRaw returns the stored bytes of a recording, as a crash now would
// leave them.
func (e *env) readRaw(name string) ([]byte, error) {
	obj, err := e.st.Open(refOf(name))
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b := make([]byte, obj.Size())
	if _, err := obj.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// writeRaw replaces the stored bytes of a recording, as someone with
// write access to the storage could; it creates the recording if needed.
func (e *env) writeRaw(t testing.TB, name string, data []byte) {
	t.Helper()
	if e.db == nil {
		writeFile(t, name, data)
		return
	}
	ref := refOf(name)
	ctx := context.Background()
	var id int64
	err := e.db.QueryRowContext(ctx, `SELECT id FROM recording_objects WHERE sealed = $1 AND tenant = $2 AND day = $3 AND session = $4`,
		sealedArg(ref), ref.Tenant, ref.Day, ref.Session).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		a, err := e.st.Create(ref)
		must(t, err)
		must(t, a.Close())
		must(t, e.db.QueryRowContext(ctx, `SELECT id FROM recording_objects WHERE sealed = $1 AND tenant = $2 AND day = $3 AND session = $4`,
			sealedArg(ref), ref.Tenant, ref.Day, ref.Session).Scan(&id))
	} else {
		must(t, err)
	}
	_, err = e.db.ExecContext(ctx, `DELETE FROM recording_parts WHERE object = $1`, id)
	must(t, err)
	_, err = e.db.ExecContext(ctx, `INSERT INTO recording_parts (object, seq, pos, data) VALUES ($1, 0, 0, $2)`, id, data)
	must(t, err)
}

func (e *env) meta(session string, kind Kind) Meta {
	return Meta{SessionID: session, Tenant: "acme", Kind: kind, Started: e.clock.Now(),
		Host: "db1", Login: "root", Owner: "alice", Term: "xterm-256color", Cols: 120, Rows: 40}
}

// create starts a writer whose ticker never fires on its own.
func (e *env) create(t testing.TB, m Meta, opt Options) *Writer {
	t.Helper()
	if opt.Now == nil {
		opt.Now = e.clock.Now
	}
	if opt.Tick == nil {
		opt.Tick = make(chan time.Time)
	}
	w, err := Create(e.v, e.st, m, opt)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readAll opens the recording name in e's storage and returns all events
// and the error that ended them.
func readAll(t testing.TB, e *env, name string) ([]Event, error) {
	t.Helper()
	r, err := e.open(name)
	if err != nil {
		return nil, err
	}
	return readEvents(t, r)
}

// readFileEvents is readAll for a recording file read with v.
func readFileEvents(t testing.TB, v *Vault, path string) ([]Event, error) {
	t.Helper()
	r, err := Open(v, path)
	if err != nil {
		return nil, err
	}
	return readEvents(t, r)
}

func readEvents(t testing.TB, r *Reader) ([]Event, error) {
	t.Helper()
	defer r.Close()
	var evs []Event
	for i := 0; i < 1<<20; i++ {
		ev, err := r.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	t.Fatal("too many events")
	return nil, nil
}

// splitFile cuts a recording file into its header line and chunk frames
// (length prefix included).
func splitFile(t testing.TB, data []byte) (header []byte, frames [][]byte) {
	t.Helper()
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		t.Fatal("no header line")
	}
	header, rest := data[:i+1], data[i+1:]
	for len(rest) > 0 {
		if len(rest) < 4 {
			t.Fatalf("trailing %d bytes", len(rest))
		}
		n := int(binary.BigEndian.Uint32(rest)) + 4
		if n > len(rest) {
			t.Fatalf("frame of %d bytes, %d left", n, len(rest))
		}
		frames = append(frames, rest[:n])
		rest = rest[n:]
	}
	return header, frames
}

func join(header []byte, frames ...[]byte) []byte {
	out := bytes.Clone(header)
	for _, f := range frames {
		out = append(out, f...)
	}
	return out
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	must(t, os.WriteFile(path, data, 0o600))
}

// outputText concatenates the data of all output events.
func outputText(evs []Event) string {
	var b bytes.Buffer
	for _, ev := range evs {
		if ev.Type == EvOutput {
			b.Write(ev.Data)
		}
	}
	return b.String()
}

func isErr(err, target error) bool { return errors.Is(err, target) }
