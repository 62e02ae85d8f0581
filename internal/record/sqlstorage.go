package record

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"sync"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// ErrUnavailable: shared storage cannot be reached (the database is down,
// restarting or does not answer in time). A recording that cannot start
// refuses its session; one that cannot go on ends it.
var ErrUnavailable = errors.New("the shared recording storage (PostgreSQL) is unavailable")

// SQL keeps recordings in the cluster's PostgreSQL database, so that every
// gateway reads what any of them recorded (recording.storage: store,
// docs/HA.md). The tables are created by the state store's migrations
// (internal/store, migration 13):
//
//	recording_objects        one row per recording or sealed sidecar
//	recording_parts          its bytes: one row per synced flush, in order
//	recording_keys           copies of the data keys (wrapped by the KEK)
//	recording_keys_destroyed the days whose keys were shredded
//	recording_kek            the check value of the cluster's KEK (migration 14;
//	                         kekshare.go)
//
// A part is written when the Writer syncs (every second, and at the end):
// into the spool, synced there, and moved by the uploader (spool.go), or,
// without a spool, straight into the database, durable when its INSERT
// commits, as a file is after fsync; parts
// hold exactly the bytes a file would (ciphertext and the plaintext
// header line without personal data). Rows are never updated, so a
// recording is append-only here too.
type SQL struct {
	db        *sql.DB
	where     string        // "PostgreSQL", for names and errors
	timeout   time.Duration // per statement
	published sync.Map      // "class/tenant/day/id" of keys already copied

	// keysBatch, when set, replaces keysRewrapBatch, and afterBatch runs
	// after each committed batch of a rotation (tests: a rotation
	// interrupted after a batch).
	keysBatch  int
	afterBatch func() error

	// spool, when set (WithSpool), takes the parts first; the uploader
	// moves them to the database (spool.go).
	spool    string
	kick     chan struct{}
	writing  sync.Map        // ids of the objects this process appends to
	upMu     sync.Mutex      // one upload pass at a time; guards uploaded
	uploaded map[int64]int64 // per spooled object, the file offset already in the database
}

// Bounds of the SQL storage.
const (
	// sqlTimeout bounds each statement: a database that hangs fails the
	// recording's start (and so refuses its session), and without a spool
	// its syncs, rather than holding its output.
	sqlTimeout = 5 * time.Second
	// sqlPartMax is the most a recording buffers between syncs before it
	// writes a part anyway: a burst of output costs memory up to this, not
	// up to a second of throughput.
	sqlPartMax = 1 << 20
	// sqlReadBatch is how many bytes of parts one read fetches.
	sqlReadBatch = 4 << 20
	// keysLockKey orders key copies and their destruction (an advisory
	// lock; "tandem" in ASCII, as the state store's keys).
	keysLockKey int64 = 0x74616e64656d03
)

// NewSQL keeps recordings in the PostgreSQL database db, whose schema the
// state store has brought up to date.
func NewSQL(db *sql.DB) *SQL { return &SQL{db: db, where: "PostgreSQL", timeout: sqlTimeout} }

func (s *SQL) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// unavailable wraps a database error so that callers can tell an outage
// (ErrUnavailable) and the message says which storage failed.
func (s *SQL) unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
}

// Name is the object's place as a data directory would hold it, prefixed
// with the storage: "postgres:recordings/acme/2026-03-14/4f2a.rec".
func (s *SQL) Name(ref Ref) string { return "postgres:" + ref.rel() }

func sealedArg(ref Ref) int64 {
	if ref.Sealed {
		return 1
	}
	return 0
}

// Create inserts the object's row; a row of the same session makes it
// fs.ErrExist, as O_EXCL does for a file.
func (s *SQL) Create(ref Ref) (Appender, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO recording_objects (sealed, tenant, day, session, created_ns)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id`,
		sealedArg(ref), ref.Tenant, ref.Day, ref.Session, time.Now().UnixNano()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", s.Name(ref), fs.ErrExist)
	}
	if err != nil {
		return nil, s.unavailable("create "+s.Name(ref), err)
	}
	a := &sqlAppender{s: s, id: id, name: s.Name(ref)}
	if s.spool != "" {
		s.writing.Store(id, true)
		if a.sf, err = createSpoolFile(s.spoolPath(id)); err != nil {
			s.writing.Delete(id)
			return nil, err
		}
	}
	return a, nil
}

// sqlAppender buffers what the Writer writes and stores it as one part
// per Sync. What a crash of the process loses is what was written since
// the last Sync: at most a flush interval (one second), as the Writer
// promises; a file loses that much only when the machine crashes.
type sqlAppender struct {
	s       *SQL
	id      int64
	name    string
	seq     int64
	pos     int64
	pending []byte
	closed  bool
	sf      *spoolFile // nil without a spool: parts go straight to the database
}

func (a *sqlAppender) Write(p []byte) (int, error) {
	if a.closed {
		return 0, fmt.Errorf("%s: %w", a.name, fs.ErrClosed)
	}
	a.pending = append(a.pending, p...)
	if len(a.pending) >= sqlPartMax {
		if err := a.store(false, false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (a *sqlAppender) Sync() error { return a.store(true, false) }

func (a *sqlAppender) Close() error {
	if a.closed {
		return nil
	}
	err := a.store(true, true)
	if a.sf != nil {
		if cerr := a.sf.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("record: spool: %w", cerr)
		}
		a.s.writing.Delete(a.id)
		a.s.wake()
	}
	a.closed = true
	a.pending = nil
	return err
}

// store writes what is pending as the next part: into the spool (synced
// when sync is set, the uploader woken), or straight into the database,
// durable when the INSERT returns (a commit). last marks the object's
// last part in the spool, also when nothing is pending.
func (a *sqlAppender) store(sync, last bool) error {
	if len(a.pending) == 0 && !(last && a.sf != nil) {
		return nil
	}
	if a.sf != nil {
		fr := frame{seq: a.seq, pos: a.pos, data: a.pending}
		if last {
			fr.flags = frameClosed
		}
		if err := a.sf.put(fr, sync); err != nil {
			return err
		}
		if sync {
			a.s.wake()
		}
	} else {
		ctx, cancel := a.s.ctx()
		defer cancel()
		if _, err := a.s.db.ExecContext(ctx, `INSERT INTO recording_parts (object, seq, pos, data) VALUES ($1, $2, $3, $4)`,
			a.id, a.seq, a.pos, a.pending); err != nil {
			return a.s.unavailable("store "+a.name, err)
		}
	}
	a.seq++
	a.pos += int64(len(a.pending))
	if cap(a.pending) > 2*DefaultChunkSize {
		a.pending = nil // a quiet recording gives a burst's buffer back
	} else {
		a.pending = a.pending[:0]
	}
	return nil
}

// Open reads the object's part index (sequence, position, length); the
// bytes are fetched as they are read, a batch of parts at a time.
func (s *SQL) Open(ref Ref) (Object, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	name := s.Name(ref)
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM recording_objects WHERE sealed = $1 AND tenant = $2 AND day = $3 AND session = $4`,
		sealedArg(ref), ref.Tenant, ref.Day, ref.Session).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, s.unavailable("open "+name, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, pos, length(data) FROM recording_parts WHERE object = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, s.unavailable("open "+name, err)
	}
	defer rows.Close()
	o := &sqlObject{s: s, id: id, name: name}
	for rows.Next() {
		var p sqlPart
		if err := rows.Scan(&p.seq, &p.pos, &p.n); err != nil {
			return nil, s.unavailable("open "+name, err)
		}
		if p.seq != int64(len(o.parts)) || p.pos != o.size {
			// Parts are inserted in order and never changed: a gap is an
			// edited table. What comes before it is still read.
			break
		}
		o.parts = append(o.parts, p)
		o.size += p.n
	}
	if err := rows.Err(); err != nil {
		return nil, s.unavailable("open "+name, err)
	}
	return o, nil
}

type sqlPart struct{ seq, pos, n int64 }

// sqlObject reads an object's parts as of its Open. It keeps one batch of
// parts in memory (at most sqlReadBatch bytes, or one larger part).
type sqlObject struct {
	s     *SQL
	id    int64
	name  string
	parts []sqlPart
	size  int64

	mu       sync.Mutex
	from, to int    // parts[from:to] are in data
	data     []byte // their bytes, from parts[from].pos
}

func (o *sqlObject) Size() int64  { return o.size }
func (o *sqlObject) Close() error { return nil }

func (o *sqlObject) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", o.name)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= o.size {
			return n, io.EOF
		}
		if err := o.load(at); err != nil {
			return n, err
		}
		base := o.parts[o.from].pos
		n += copy(p[n:], o.data[at-base:])
	}
	return n, nil
}

// load makes sure the part holding byte at is in memory, fetching it and
// the parts after it up to sqlReadBatch bytes.
func (o *sqlObject) load(at int64) error {
	if o.to > o.from && at >= o.parts[o.from].pos && at < o.parts[o.to-1].pos+o.parts[o.to-1].n {
		return nil
	}
	i := sort.Search(len(o.parts), func(i int) bool { return o.parts[i].pos+o.parts[i].n > at })
	j, bytes := i, int64(0)
	for j < len(o.parts) && (j == i || bytes+o.parts[j].n <= sqlReadBatch) {
		bytes += o.parts[j].n
		j++
	}
	ctx, cancel := o.s.ctx()
	defer cancel()
	rows, err := o.s.db.QueryContext(ctx, `SELECT seq, data FROM recording_parts WHERE object = $1 AND seq >= $2 AND seq < $3 ORDER BY seq`,
		o.id, o.parts[i].seq, o.parts[j-1].seq+1)
	if err != nil {
		return o.s.unavailable("read "+o.name, err)
	}
	defer rows.Close()
	data := make([]byte, 0, bytes)
	next := i
	for rows.Next() {
		var seq int64
		var b []byte
		if err := rows.Scan(&seq, &b); err != nil {
			return o.s.unavailable("read "+o.name, err)
		}
		if next >= j || seq != o.parts[next].seq || int64(len(b)) != o.parts[next].n {
			return fmt.Errorf("%s: part %d changed while read: %w", o.name, seq, ErrCorrupt)
		}
		data = append(data, b...)
		next++
	}
	if err := rows.Err(); err != nil {
		return o.s.unavailable("read "+o.name, err)
	}
	if next != j {
		return fmt.Errorf("%s: part %d missing: %w", o.name, o.parts[next].seq, ErrCorrupt)
	}
	o.from, o.to, o.data = i, j, data
	return nil
}

// List returns tenant's recordings, oldest day first.
func (s *SQL) List(tenant string) ([]Ref, error) {
	if err := checkName("tenant", tenant); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT day, session FROM recording_objects WHERE sealed = 0 AND tenant = $1 ORDER BY day, session`, tenant)
	if err != nil {
		return nil, s.unavailable("list", err)
	}
	defer rows.Close()
	var out []Ref
	for rows.Next() {
		r := Ref{Tenant: tenant}
		if err := rows.Scan(&r.Day, &r.Session); err != nil {
			return nil, s.unavailable("list", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.unavailable("list", err)
	}
	return out, nil
}

// KeyName says where a copy of a key is.
func (s *SQL) KeyName(c vault.Class, tenant, day, id string) string {
	return fmt.Sprintf("postgres:recording_keys/%s/%s/%s/%s", c, tenant, day, id)
}

// PublishKey copies a key once per process and key; the copy is refused
// for a day whose keys were destroyed.
func (s *SQL) PublishKey(c vault.Class, tenant, day, id string, keyFile []byte) error {
	k := string(c) + "/" + tenant + "/" + day + "/" + id
	if _, ok := s.published.Load(k); ok {
		return nil
	}
	err := s.keysTx(func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM recording_keys_destroyed WHERE class = $1 AND tenant = $2 AND day = $3`,
			string(c), tenant, day).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s %s/%s: %w", c, tenant, day, vault.ErrShredded)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO recording_keys (class, tenant, day, id, key_file) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			string(c), tenant, day, id, keyFile)
		return err
	})
	if err != nil {
		return err
	}
	s.published.Store(k, true)
	return nil
}

// SharedKey returns the copy of key id.
func (s *SQL) SharedKey(c vault.Class, tenant, day, id string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var destroyed int
	var raw []byte
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM recording_keys_destroyed WHERE class = $1 AND tenant = $2 AND day = $3),
		(SELECT key_file FROM recording_keys WHERE class = $1 AND tenant = $2 AND day = $3 AND id = $4)`,
		string(c), tenant, day, id).Scan(&destroyed, &raw)
	switch {
	case err != nil:
		return nil, s.unavailable("read "+s.KeyName(c, tenant, day, id), err)
	case destroyed > 0:
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, vault.ErrShredded)
	case raw == nil:
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, vault.ErrNoKey)
	}
	return raw, nil
}

// ShredKeys destroys every copy of the keys of class, tenant and day and
// records the destruction, so that no gateway copies one again. It is the
// vault's shred hook (Vault.AddShredHook) on every gateway and in
// `tandem retention run`: a key destroyed by one gateway's retention job
// is gone from the shared storage at once; each gateway's own copy goes
// when its job runs. Only recordings' classes (content, sealed) have
// copies; the others return at once.
func (s *SQL) ShredKeys(c vault.Class, tenant, day string) error {
	if c != vault.Content && c != vault.Sealed {
		return nil
	}
	return s.keysTx(func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO recording_keys_destroyed (class, tenant, day, at_ns) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			string(c), tenant, day, time.Now().UnixNano()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM recording_keys WHERE class = $1 AND tenant = $2 AND day = $3`, string(c), tenant, day)
		return err
	})
}

// keysTx runs f in a transaction that holds the keys' advisory lock, so
// a copy and a destruction of one day never interleave.
func (s *SQL) keysTx(f func(context.Context, *sql.Tx) error) error {
	return s.keysTxFor(s.timeout, f)
}

// keysTxFor is keysTx with a bound on the whole transaction. An error f
// returns that wraps ErrShredded or is marked decided is about the keys,
// not the database, and is returned as it is.
func (s *SQL) keysTxFor(timeout time.Duration, f func(context.Context, *sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.unavailable("recording keys", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, keysLockKey); err != nil {
		return s.unavailable("recording keys", err)
	}
	if err := f(ctx, tx); err != nil {
		var d decided
		if errors.As(err, &d) {
			return d.error
		}
		if errors.Is(err, vault.ErrShredded) {
			return err
		}
		return s.unavailable("recording keys", err)
	}
	if err := tx.Commit(); err != nil {
		return s.unavailable("recording keys", err)
	}
	return nil
}

// decided marks an error a keys transaction found in the keys themselves
// (a KEK that does not match): keysTxFor returns it unwrapped, rather
// than as the storage being unavailable.
type decided struct{ error }

func (d decided) Unwrap() error { return d.error }
