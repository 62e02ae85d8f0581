package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// The local state cannot be edited into access (M5, M8). Every row that
// grants or withholds access (requests, their approvals and locks) carries
// an HMAC-SHA256 under the state key, a 32-byte secret kept with the
// gateway's other keys (<data_dir>/keys/state_mac, mode 0600), never in
// the database. The store computes it in the same transaction as every
// write and checks it on every read:
//
//   - a request or approval whose MAC does not verify is treated as absent
//     for granting: GetRequest reports it as a Forgery, ActiveRequests and
//     ListRequests leave it out, an approval does not count;
//   - locks are sealed twice: each row, and the whole table (one MAC over
//     every row, in person order, kept in state_seals). Deleting a lock row
//     cannot be seen on the row, but it breaks the table's seal; then
//     every lock row still counts and Locks reports the table as forged,
//     on which the gateway refuses everybody (lock-down) until an operator
//     has reviewed the locks and re-sealed them (ResealLocks).
//
// The MAC covers a canonical encoding: a version and a label per row kind,
// then every column, each with a type tag and a length, so that no two
// different rows encode the same.
//
// What this does not stop: whoever can read the key (root on the gateway
// host) can forge rows, and whoever keeps an old copy of the database can
// put back an earlier, genuine state (a revoked request as it was while
// approved, the lock table before a lock). The audit log, with its
// off-host witness, is what records what really happened.

// KeyFile is the state key's file name in the key directory.
const KeyFile = "state_mac"

// keySize is the state key's length: 32 bytes for HMAC-SHA256.
const keySize = 32

// sealVersion is part of every MAC; a change of the encoding bumps it.
const sealVersion = "tandem-state-v1"

// Row kinds, the domain separation between the tables.
const (
	kindRequest  = "request"
	kindApproval = "approval"
	kindLock     = "lock"
	kindLockSet  = "lockset"
)

// sealsSchema is migration 7: a MAC column on every sealed table, and the
// seal of the lock table as a whole. Rows from before it have no MAC; the
// process that creates the state key seals them (see Open).
const sealsSchema = `ALTER TABLE requests ADD COLUMN mac BLOB;
	ALTER TABLE request_approvals ADD COLUMN mac BLOB;
	ALTER TABLE locks ADD COLUMN mac BLOB;
	CREATE TABLE state_seals (
		name TEXT PRIMARY KEY NOT NULL, -- locks
		mac  BLOB NOT NULL
	);`

// ErrForged is the error of a row or table that failed its integrity
// check; a *Forgery wraps it (errors.Is(err, ErrForged)).
var ErrForged = errors.New("failed its integrity check")

// ErrNoKey is returned by every operation on sealed state by a store opened
// without the state key.
var ErrNoKey = errors.New("the state key is not loaded: only processes with access to the gateway's key directory may read or change locks and requests")

// Forgery describes a row, or the lock table, that failed its integrity
// check.
type Forgery struct {
	Table string // requests, request_approvals, locks
	Row   string // the row: a request id, "<request>/<approver>", a person; "*" for the whole table
	What  string // what failed
}

func (f *Forgery) Error() string {
	switch f.Table {
	case "requests":
		return fmt.Sprintf("request %s %s (%s); it was not honoured", f.Row, ErrForged, f.What)
	case "locks":
		if f.Row == "*" {
			return fmt.Sprintf("the lock table %s (%s): every person counts as locked until an operator "+
				"reviews the locks (`tandem locks`) and re-seals them (`tandem locks --reseal`)", ErrForged, f.What)
		}
		return fmt.Sprintf("the lock of %s %s (%s)", f.Row, ErrForged, f.What)
	case "freezes":
		if f.Row == "*" {
			return fmt.Sprintf("the freeze table %s (%s): every host counts as frozen until an operator "+
				"reviews the freezes (`tandem freezes`) and re-seals them (`tandem freezes --reseal`)", ErrForged, f.What)
		}
		return fmt.Sprintf("the freeze %s %s (%s); it counts as a forged table", f.Row, ErrForged, f.What)
	}
	return fmt.Sprintf("%s row %s %s (%s)", f.Table, f.Row, ErrForged, f.What)
}

func (f *Forgery) Unwrap() error { return ErrForged }

// Option configures Open.
type Option func(*options)

type options struct {
	keyDir   string
	reporter func(Forgery)
}

// ErrKeyElsewhere is the error of opening a database sealed under a state
// key that the key directory does not hold: it is another gateway's (one
// sharing the database) or was lost. Creating a key there would reseal
// every row under a second key, and every other gateway would find the
// whole state forged (locked down); the operator copies the key instead.
var ErrKeyElsewhere = errors.New("the state database is sealed with a state key this gateway does not have")

// WithKeyDir loads the state key from dir (the gateway's key directory),
// creating it if it does not exist yet. A process that writes locks or
// requests needs it; see Open.
func WithKeyDir(dir string) Option { return func(o *options) { o.keyDir = dir } }

// WithReporter has report called once per forged row (per row and stored
// MAC, for the life of the Store) when a read finds one; the gateway
// audits it. report must not call back into the store.
func WithReporter(report func(Forgery)) Option { return func(o *options) { o.reporter = report } }

// sealer computes and checks MACs, and reports forgeries once.
type sealer struct {
	key    []byte
	report func(Forgery)

	mu   sync.Mutex
	seen map[string]bool
}

// field is one column's value in the canonical encoding.
type field struct {
	tag byte // s: text, i: integer, n: NULL integer, b: boolean, m: a MAC
	b   []byte
}

func str(s string) field { return field{'s', []byte(s)} }
func num(n int64) field  { return field{'i', binary.BigEndian.AppendUint64(nil, uint64(n))} }
func blob(b []byte) field {
	return field{'m', b}
}
func nullNum(n sql.NullInt64) field {
	if !n.Valid {
		return field{'n', nil}
	}
	return num(n.Int64)
}
func boolean(v bool) field {
	if v {
		return field{'b', []byte{1}}
	}
	return field{'b', []byte{0}}
}

// mac is HMAC-SHA256 over the version, the kind and the fields, each
// length-prefixed.
func (s *sealer) mac(kind string, fs ...field) []byte {
	h := hmac.New(sha256.New, s.key)
	var n [8]byte
	put := func(tag byte, b []byte) {
		h.Write([]byte{tag})
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put('v', []byte(sealVersion))
	put('k', []byte(kind))
	binary.BigEndian.PutUint64(n[:], uint64(len(fs)))
	h.Write(n[:])
	for _, f := range fs {
		put(f.tag, f.b)
	}
	return h.Sum(nil)
}

// verify checks a stored MAC in constant time. A missing one fails.
func (s *sealer) verify(stored []byte, kind string, fs ...field) bool {
	return len(stored) > 0 && hmac.Equal(stored, s.mac(kind, fs...))
}

// reportOnce hands f to the reporter the first time it is seen with this
// stored MAC, so a poll does not report the same row again and again, but
// a row forged anew is reported anew.
func (s *sealer) reportOnce(f Forgery, stored []byte) {
	if s == nil || s.report == nil {
		return
	}
	k := f.Table + "\x00" + f.Row + "\x00" + f.What + "\x00" + hex.EncodeToString(stored)
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	dup := s.seen[k]
	s.seen[k] = true
	s.mu.Unlock()
	if !dup {
		s.report(f)
	}
}

// requestRow is a requests row as stored.
type requestRow struct {
	id, requester, hosts, selector, login string
	duration                              int64
	reason                                string
	tty                                   bool
	state                                 string
	created                               int64
	decided                               sql.NullInt64
	decidedBy, decisionReason             string
	from, until                           sql.NullInt64
	mac                                   []byte
}

func (r *requestRow) fields() []field {
	return []field{str(r.id), str(r.requester), str(r.hosts), str(r.selector), str(r.login), num(r.duration),
		str(r.reason), boolean(r.tty), str(r.state), num(r.created), nullNum(r.decided), str(r.decidedBy),
		str(r.decisionReason), nullNum(r.from), nullNum(r.until)}
}

func approvalFields(requestID, approver string, at int64, comment string) []field {
	return []field{str(requestID), str(approver), num(at), str(comment)}
}

func lockFields(person, reason, by string, created int64, until sql.NullInt64) []field {
	return []field{str(person), str(reason), str(by), num(created), nullNum(until)}
}

// sealRequest recomputes the MAC of request id from its stored columns.
// Callers have checked the row (getRequest) before changing it, so this
// seals their change, not someone else's edit.
func (s *Store) sealRequest(ctx context.Context, tx txn, id string) error {
	r, err := scanRequestRow(tx.QueryRowContext(ctx, `SELECT `+requestColumns+`, mac FROM requests WHERE id = ?`, id))
	if err != nil {
		return fmt.Errorf("seal request %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE requests SET mac = ? WHERE id = ?`,
		s.seal.mac(kindRequest, r.fields()...), id); err != nil {
		return fmt.Errorf("seal request %s: %w", id, err)
	}
	return nil
}

// lockRow is a locks row as stored.
type lockRow struct {
	person, reason, by string
	created            int64
	until              sql.NullInt64
	mac                []byte
}

func (l *lockRow) fields() []field { return lockFields(l.person, l.reason, l.by, l.created, l.until) }

func (l *lockRow) lock() Lock {
	out := Lock{Person: l.person, Reason: l.reason, By: l.by, Created: time.Unix(0, l.created).UTC()}
	if l.until.Valid {
		out.Until = time.Unix(0, l.until.Int64).UTC()
	}
	return out
}

// readLocks reads every lock row, expired ones too, and checks them and
// the table's seal. It returns the rows and the forgeries found (each
// reported): rows whose own MAC fails, and the table's seal when it does
// not match the rows (a row deleted, added or changed).
func (s *Store) readLocks(ctx context.Context, q querier) ([]lockRow, []Forgery, error) {
	ls, stored, err := loadLocks(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	var bad []Forgery
	for _, l := range ls {
		if !s.seal.verify(l.mac, kindLock, l.fields()...) {
			f := Forgery{Table: "locks", Row: l.person, What: "row MAC"}
			bad = append(bad, f)
			s.seal.reportOnce(f, l.mac)
		}
	}
	if !hmac.Equal(stored, s.lockSetMAC(ls)) {
		what := "table seal does not match the rows (a lock deleted, added or changed)"
		if stored == nil {
			what = "table seal missing"
		}
		f := Forgery{Table: "locks", Row: "*", What: what}
		bad = append(bad, f)
		s.seal.reportOnce(f, stored)
	}
	return ls, bad, nil
}

// loadLocks reads every lock row in person order, and the table's seal
// (nil when there is none), without checking anything.
func loadLocks(ctx context.Context, q querier) ([]lockRow, []byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+lockColumns+`, mac FROM locks ORDER BY person`)
	if err != nil {
		return nil, nil, err
	}
	var ls []lockRow
	for rows.Next() {
		var l lockRow
		if err := rows.Scan(&l.person, &l.reason, &l.by, &l.created, &l.until, &l.mac); err != nil {
			rows.Close()
			return nil, nil, err
		}
		ls = append(ls, l)
	}
	if err := rows.Close(); err != nil {
		return nil, nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	var stored []byte
	srows, err := q.QueryContext(ctx, `SELECT mac FROM state_seals WHERE name = 'locks'`)
	if err != nil {
		return nil, nil, err
	}
	for srows.Next() {
		if err := srows.Scan(&stored); err != nil {
			srows.Close()
			return nil, nil, err
		}
	}
	if err := srows.Close(); err != nil {
		return nil, nil, err
	}
	return ls, stored, nil
}

// lockSetMAC is the seal of the lock table: one MAC over every row's
// content, in person order, so that no row can go missing unnoticed.
func (s *Store) lockSetMAC(ls []lockRow) []byte {
	sort.Slice(ls, func(i, j int) bool { return ls[i].person < ls[j].person })
	macs := make([][]byte, 0, len(ls))
	for _, l := range ls {
		macs = append(macs, s.seal.mac(kindLock, l.fields()...))
	}
	return s.seal.setMAC(kindLockSet, macs)
}

// setMAC seals a table as a whole: one MAC over its rows' MACs, given in
// the table's key order.
func (s *sealer) setMAC(kind string, rowMACs [][]byte) []byte {
	fs := make([]field, 0, len(rowMACs))
	for _, m := range rowMACs {
		fs = append(fs, blob(m))
	}
	return s.mac(kind, fs...)
}

// checkLocks is the first step of every change to the lock table: it
// refuses to change a table that fails its integrity check, as sealing it
// again would accept whatever edit broke it.
func (s *Store) checkLocks(ctx context.Context, tx txn) error {
	_, bad, err := s.readLocks(ctx, tx)
	if err != nil {
		return err
	}
	if f := tableForgery(bad); f != nil {
		return f
	}
	return nil
}

// tableForgery returns the forgery of the lock table's seal among bad, or
// nil. Only that one matters for enforcement: the seal covers every row's
// content, so when it holds, a row whose own MAC fails has had only its MAC
// column changed, and its content is genuine.
func tableForgery(bad []Forgery) *Forgery {
	for i := range bad {
		if bad[i].Row == "*" {
			return &bad[i]
		}
	}
	return nil
}

// sealLocks seals every lock row and the table as they now are.
func (s *Store) sealLocks(ctx context.Context, tx txn) (int, error) {
	ls, _, err := loadLocks(ctx, tx)
	if err != nil {
		return 0, err
	}
	for _, l := range ls {
		if _, err := tx.ExecContext(ctx, `UPDATE locks SET mac = ? WHERE person = ?`,
			s.seal.mac(kindLock, l.fields()...), l.person); err != nil {
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO state_seals (name, mac) VALUES ('locks', ?) ON CONFLICT (name) DO UPDATE SET mac = excluded.mac`,
		s.lockSetMAC(ls)); err != nil {
		return 0, err
	}
	return len(ls), nil
}

// ResealLocks accepts the lock table as it is now: it seals every row and
// the table again, and queues a state.resealed event for the audit log.
// It is the operator's way out of a lock-down after a failed integrity
// check, once they have reviewed the locks (and locked again whoever is
// missing); by names them.
func (s *Store) ResealLocks(ctx context.Context, by string, at time.Time) (int, error) {
	if s.seal == nil {
		return 0, fmt.Errorf("store: reseal locks: %w", ErrNoKey)
	}
	var n int
	err := s.change(ctx, "reseal locks", func(tx txn) (bool, error) {
		_, bad, err := s.readLocks(ctx, tx)
		if err != nil {
			return false, err
		}
		if n, err = s.sealLocks(ctx, tx); err != nil {
			return false, err
		}
		failed := 0
		for _, f := range bad {
			if f.Row != "*" {
				failed++
			}
		}
		return true, queueEvent(ctx, tx, at, audit.StateResealedEvent{By: by, ResealedLocks: &audit.ResealedLocks{
			Table: "locks", Rows: n, RowsFailed: failed, SealFailed: len(bad) > failed}}.Event())
	})
	return n, err
}

// queueEvent puts an audit event in the outbox inside tx (the gateway
// appends it to the audit log).
func queueEvent(ctx context.Context, tx txn, at time.Time, e audit.Event) error {
	e.Time = at.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_outbox (at_ns, event) VALUES (?, ?)`, at.UnixNano(), b)
	return err
}

// loadKey loads the state key from dir. When there is none yet, it
// creates one and, in the same step, seals the rows already stored: the
// rows of a database from before sealing existed (the upgrade), written
// when nobody could have forged a MAC. That happens only here, when the
// key is new, never later: a row without a MAC under an existing key is a
// forgery, not an old row. The key file is linked into place (created
// once, never replaced) before the transaction that sealed the rows
// commits, so a second process either sees the key or waits for the seal.
func (s *Store) loadKey(ctx context.Context, dir string, report func(Forgery)) error {
	path := filepath.Join(dir, KeyFile)
	key, err := readKey(path)
	if err == nil {
		s.seal = &sealer{key: key, report: report}
		return s.checkKey(ctx, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state key: key directory: %w", err)
	}
	key = make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	s.seal = &sealer{key: key, report: report}

	tx, err := s.db.beginWrite(ctx) // the one writer: other openers wait here
	if err != nil {
		return fmt.Errorf("state key: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Another process may have created the key while this one waited.
	if other, err := readKey(path); err == nil {
		s.seal.key = other
		tx.Rollback() //nolint:errcheck // checkKey takes its own transaction
		return s.checkKey(ctx, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// A database sealed under a key: the key is elsewhere (another
	// gateway's key directory), and a new one would re-seal, and so
	// accept, whatever the rows now say.
	if stored, err := keyCheck(ctx, tx); err != nil {
		return fmt.Errorf("state key: %w", err)
	} else if stored != nil {
		return fmt.Errorf("state key: %w: %s does not exist; "+
			"every gateway sharing a database needs the same key: copy it from a gateway that uses this "+
			"database (mode 0600, docs/HA.md), or restore it from the backup", ErrKeyElsewhere, path)
	}
	counts, err := s.sealAll(ctx, tx)
	if err != nil {
		return fmt.Errorf("state key: seal existing rows: %w", err)
	}
	if counts["requests"]+counts["request_approvals"]+counts["locks"] > 0 {
		ev := audit.StateResealedEvent{Reason: "state key created; rows stored before it sealed", SealedRows: &audit.SealedRows{
			Requests: counts["requests"], RequestApprovals: counts["request_approvals"], Locks: counts["locks"]}}
		if err := queueEvent(ctx, tx, time.Now(), ev.Event()); err != nil {
			return fmt.Errorf("state key: %w", err)
		}
	}
	if err := s.putKeyCheck(ctx, tx); err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	if err := writeKeyOnce(dir, path, key); err != nil {
		if errors.Is(err, fs.ErrExist) { // created meanwhile outside the store's lock
			other, rerr := readKey(path)
			if rerr != nil {
				return rerr
			}
			s.seal.key = other
			tx.Rollback() //nolint:errcheck // checkKey takes its own transaction
			return s.checkKey(ctx, path)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state key: commit the seal of existing rows: %w", err)
	}
	return nil
}

// kindKeyCheck labels the MAC that tells which state key sealed a
// database (state_seals row "state_key"): a MAC of nothing under the key.
const kindKeyCheck = "keycheck"

// keyCheck returns the stored key check, nil when there is none.
func keyCheck(ctx context.Context, q querier) ([]byte, error) {
	return sealedSet{table: "state_key"}.storedSeal(ctx, q)
}

// putKeyCheck records that the state is sealed with this store's key.
func (s *Store) putKeyCheck(ctx context.Context, tx txn) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO state_seals (name, mac) VALUES ('state_key', ?)
		ON CONFLICT (name) DO UPDATE SET mac = excluded.mac`, s.seal.mac(kindKeyCheck))
	return err
}

// checkKey refuses a state key other than the one the database is sealed
// with: several gateways on one PostgreSQL database (or a key directory
// and a state database restored from different backups) would otherwise
// each count the others' rows as forged, and lock everybody out. A
// database from before the check learns the key of the first process that
// opens it with one.
func (s *Store) checkKey(ctx context.Context, path string) error {
	stored, err := keyCheck(ctx, s.db)
	if err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	if stored != nil {
		if !hmac.Equal(stored, s.seal.mac(kindKeyCheck)) {
			return fmt.Errorf("state key: %s is not the key this database is sealed with: every gateway "+
				"sharing a database needs the same %s (copy it from a gateway that uses this database)", path, KeyFile)
		}
		return nil
	}
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if stored, err := keyCheck(ctx, tx); err != nil || stored != nil {
		if err != nil {
			return fmt.Errorf("state key: %w", err)
		}
		tx.Rollback() //nolint:errcheck // checked again below, outside
		return s.checkKey(ctx, path)
	}
	if err := s.putKeyCheck(ctx, tx); err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	return tx.Commit()
}

// sealAll seals every request, approval and lock and the lock table, and
// returns how many rows of each it sealed.
func (s *Store) sealAll(ctx context.Context, tx txn) (map[string]int, error) {
	counts := map[string]int{}
	var ids []string
	rows, err := tx.QueryContext(ctx, `SELECT id FROM requests`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := s.sealRequest(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	counts["requests"] = len(ids)

	type approval struct {
		id, by, cmt string
		at          int64
	}
	var as []approval
	rows, err = tx.QueryContext(ctx, `SELECT request_id, approver, at_ns, comment FROM request_approvals`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var a approval
		if err := rows.Scan(&a.id, &a.by, &a.at, &a.cmt); err != nil {
			rows.Close()
			return nil, err
		}
		as = append(as, a)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	for _, a := range as {
		if _, err := tx.ExecContext(ctx, `UPDATE request_approvals SET mac = ? WHERE request_id = ? AND approver = ?`,
			s.seal.mac(kindApproval, approvalFields(a.id, a.by, a.at, a.cmt)...), a.id, a.by); err != nil {
			return nil, err
		}
	}
	counts["request_approvals"] = len(as)

	n, err := s.sealLocks(ctx, tx)
	if err != nil {
		return nil, err
	}
	counts["locks"] = n
	return counts, nil
}

// readKey reads a state key; a file of the wrong size is an error, never
// replaced.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("state key: %w (it is needed to read or change locks and requests; "+
			"run this on the gateway host as the gateway's user)", err)
	}
	if len(b) != keySize {
		return nil, fmt.Errorf("state key %s: %d bytes, want %d (refusing to replace it)", path, len(b), keySize)
	}
	return b, nil
}

// writeKeyOnce puts key at path with mode 0600, never over an existing
// file (fs.ErrExist then): it is written to a temporary file first and
// linked into place, so that nobody reads a half-written key.
func writeKeyOnce(dir, path string, key []byte) error {
	f, err := os.CreateTemp(dir, ".state_mac-*")
	if err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("state key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return fmt.Errorf("state key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("state key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return fmt.Errorf("state key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() //nolint:errcheck // best effort: the link's directory entry
		d.Close()
	}
	return nil
}
