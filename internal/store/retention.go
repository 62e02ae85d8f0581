package store

import (
	"context"
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// retentionSchema is migration 9. Legal holds and extensions decide when
// data keys may be destroyed, so they are sealed like locks: each row and
// the table as a whole (a deleted hold would let keys go early). The
// record of audited key destructions is sealed per row: a forged row
// could hide a destruction whose event was lost. Notices are not sealed;
// the audit log holds every extension they are about.
//
// Holds, extensions and destructions are stored as a JSON body under an
// id: they are read whole by the retention job and never queried by
// column, and one sealed form serves all three.
const retentionSchema = `CREATE TABLE retention_holds (
		id   TEXT PRIMARY KEY NOT NULL,
		body BLOB NOT NULL,
		mac  BLOB
	);
	CREATE TABLE retention_extensions (
		id   TEXT PRIMARY KEY NOT NULL,
		body BLOB NOT NULL,
		mac  BLOB
	);
	CREATE TABLE retention_destroyed (
		id   TEXT PRIMARY KEY NOT NULL, -- class/tenant/day
		body BLOB NOT NULL,
		mac  BLOB
	);
	CREATE TABLE retention_notices (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		extension    TEXT NOT NULL,
		tenant       TEXT NOT NULL,
		text         TEXT NOT NULL,
		attempts     INTEGER NOT NULL DEFAULT 0,
		next_ns      INTEGER NOT NULL,
		delivered_ns INTEGER,
		last_error   TEXT NOT NULL DEFAULT '',
		created_ns   INTEGER NOT NULL
	);
	-- The sets start empty and unsealed: an empty seal marks them new
	-- until the first process with the state key seals them (sealNewSets).
	INSERT INTO state_seals (name, mac) VALUES ('retention_holds', x''), ('retention_extensions', x'');`

// sealedSet is one of the retention tables: rows of (id, JSON body, MAC),
// and for a whole set also a seal over every row in state_seals.
type sealedSet struct {
	table, kind string
	whole       bool
}

var (
	holdsSet      = sealedSet{table: "retention_holds", kind: "hold", whole: true}
	extensionsSet = sealedSet{table: "retention_extensions", kind: "extension", whole: true}
	destroyedSet  = sealedSet{table: "retention_destroyed", kind: "destroyed"}
)

type setRow struct {
	id        string
	body, mac []byte // mac: as stored
}

func (t sealedSet) rowMAC(s *sealer, r setRow) []byte { return s.mac(t.kind, str(r.id), blob(r.body)) }

// load reads every row in id order, unchecked.
func (t sealedSet) load(ctx context.Context, q querier) ([]setRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, body, mac FROM `+t.table+` ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []setRow
	for rows.Next() {
		var r setRow
		if err := rows.Scan(&r.id, &r.body, &r.mac); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// setMAC is the seal of the set over rows as they should be sealed.
func (t sealedSet) setMAC(s *sealer, rows []setRow) []byte {
	macs := make([][]byte, 0, len(rows))
	for _, r := range rows {
		macs = append(macs, t.rowMAC(s, r))
	}
	return s.setMAC(t.kind+"set", macs)
}

// read returns the rows whose MAC holds, in id order, and the forgeries
// (each reported): rows that fail (left out), and for a whole set a seal
// that does not match every stored row (a row deleted, added or changed).
func (t sealedSet) read(ctx context.Context, s *Store, q querier) ([]setRow, []Forgery, error) {
	if s.seal == nil {
		return nil, nil, ErrNoKey
	}
	all, err := t.load(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	var good []setRow
	var bad []Forgery
	for _, r := range all {
		if !hmac.Equal(r.mac, t.rowMAC(s.seal, r)) {
			f := Forgery{Table: t.table, Row: r.id, What: "row MAC"}
			bad = append(bad, f)
			s.seal.reportOnce(f, r.mac)
			continue
		}
		good = append(good, r)
	}
	if t.whole {
		stored, err := t.storedSeal(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		if !hmac.Equal(stored, t.setMAC(s.seal, all)) {
			f := Forgery{Table: t.table, Row: "*", What: "table seal does not match the rows (a row deleted, added or changed)"}
			bad = append(bad, f)
			s.seal.reportOnce(f, stored)
		}
	}
	return good, bad, nil
}

func (t sealedSet) storedSeal(ctx context.Context, q querier) ([]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT mac FROM state_seals WHERE name = ?`, t.table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var stored []byte
	for rows.Next() {
		if err := rows.Scan(&stored); err != nil {
			return nil, err
		}
	}
	return stored, rows.Err()
}

// sealNewSets seals the retention sets still marked new by their
// migration, while they are empty (the first process with the state key
// after the upgrade). Afterwards a missing or empty seal is a forgery.
func (s *Store) sealNewSets(ctx context.Context) error {
	for _, t := range []sealedSet{holdsSet, extensionsSet, freezesSet} {
		if _, err := s.db.ExecContext(ctx, `UPDATE state_seals SET mac = ? WHERE name = ? AND length(mac) = 0
			AND NOT EXISTS (SELECT 1 FROM `+t.table+`)`, t.setMAC(s.seal, nil), t.table); err != nil {
			return fmt.Errorf("seal %s: %w", t.table, err)
		}
	}
	return nil
}

// put stores a row (inserting or replacing) and seals it, and the set.
// A whole set that fails its check is not changed: sealing it again would
// accept whatever edit broke it.
func (t sealedSet) put(ctx context.Context, s *Store, tx txn, id string, v any) error {
	if t.whole {
		_, bad, err := t.read(ctx, s, tx)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return &bad[0]
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r := setRow{id: id, body: body}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+t.table+` (id, body, mac) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body, mac = excluded.mac`, id, body, t.rowMAC(s.seal, r)); err != nil {
		return err
	}
	if !t.whole {
		return nil
	}
	all, err := t.load(ctx, tx) // checked before the change
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO state_seals (name, mac) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET mac = excluded.mac`, t.table, t.setMAC(s.seal, all))
	return err
}

// reseal accepts a whole set as it is now: every row and the set's seal
// are sealed again. It returns the rows, how many failed their own MAC
// and whether the set's seal failed, for the audit event.
func (t sealedSet) reseal(ctx context.Context, s *Store, tx txn) (rows, failed int, sealFailed bool, err error) {
	_, bad, err := t.read(ctx, s, tx)
	if err != nil {
		return 0, 0, false, err
	}
	for _, f := range bad {
		if f.Row == "*" {
			sealFailed = true
		} else {
			failed++
		}
	}
	all, err := t.load(ctx, tx)
	if err != nil {
		return 0, 0, false, err
	}
	for _, r := range all {
		if _, err := tx.ExecContext(ctx, `UPDATE `+t.table+` SET mac = ? WHERE id = ?`, t.rowMAC(s.seal, r), r.id); err != nil {
			return 0, 0, false, err
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO state_seals (name, mac) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET mac = excluded.mac`, t.table, t.setMAC(s.seal, all))
	return len(all), failed, sealFailed, err
}

// readAll decodes every row of t that passes its check into a T. The
// error is a *Forgery when anything failed (the rows that passed are
// returned all the same), so a caller that must fail closed can.
func readAll[T any](ctx context.Context, s *Store, t sealedSet) ([]T, error) {
	tx, err := s.db.beginRead(ctx) // rows and seal read together
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", t.table, s.unavailable(err))
	}
	rows, bad, err := t.read(ctx, s, tx)
	_ = tx.Rollback()
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", t.table, s.unavailable(err))
	}
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		var v T
		if err := json.Unmarshal(r.body, &v); err != nil {
			return nil, fmt.Errorf("store: %s row %s: %w", t.table, r.id, err)
		}
		out = append(out, v)
	}
	if len(bad) > 0 {
		return out, &bad[0]
	}
	return out, nil
}

// Hold scopes.
const (
	HoldTenant  = "tenant"
	HoldPerson  = "person"
	HoldSession = "session"
)

// Hold is a legal hold: the keys of a tenant, or of the (tenant, day)
// pairs in which a person or session has events, are kept until it is
// released or expires.
type Hold struct {
	ID         string    `json:"id"`
	Scope      string    `json:"scope"`   // HoldTenant, HoldPerson or HoldSession
	Subject    string    `json:"subject"` // the tenant, person or session id
	Reason     string    `json:"reason"`
	Ref        string    `json:"ref"`
	By         string    `json:"by"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Released   time.Time `json:"released,omitzero"`
	ReleasedBy string    `json:"released_by,omitempty"`
}

// Active reports whether the hold keeps keys at now.
func (h Hold) Active(now time.Time) bool { return h.Released.IsZero() && now.Before(h.Expires) }

// ErrNoHold: no hold has that id.
var ErrNoHold = errors.New("no such hold")

// Holds returns every hold, released and expired ones too. A *Forgery
// error means the table failed its check: the retention job then destroys
// nothing (a deleted hold could be anybody's).
func (s *Store) Holds(ctx context.Context) ([]Hold, error) { return readAll[Hold](ctx, s, holdsSet) }

// PutHold stores a new or changed hold and queues its audit event (ev) in
// the same transaction: the hold exists exactly when its event is queued.
func (s *Store) PutHold(ctx context.Context, h Hold, ev audit.Event) error {
	if h.ID == "" || h.Subject == "" {
		return errors.New("store: hold: id and subject must be set")
	}
	return s.change(ctx, "hold "+h.ID, func(tx txn) (bool, error) {
		if err := holdsSet.put(ctx, s, tx, h.ID, h); err != nil {
			return false, err
		}
		return true, queueEvent(ctx, tx, ev.Time, ev)
	})
}

// Hold returns the hold with id, checked.
func (s *Store) Hold(ctx context.Context, id string) (Hold, error) {
	hs, err := s.Holds(ctx)
	if err != nil {
		return Hold{}, err
	}
	for _, h := range hs {
		if h.ID == id {
			return h, nil
		}
	}
	return Hold{}, fmt.Errorf("hold %s: %w", id, ErrNoHold)
}

// Extension keeps a tenant's data of a class (operational) through Until.
type Extension struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	Class      string    `json:"class"`
	Until      time.Time `json:"until"` // a day, midnight UTC; kept through it
	RequestRef string    `json:"request_ref"`
	By         string    `json:"by"`
	Created    time.Time `json:"created"`
}

// Extensions returns every extension; a *Forgery error as for Holds.
func (s *Store) Extensions(ctx context.Context) ([]Extension, error) {
	return readAll[Extension](ctx, s, extensionsSet)
}

// Notice is a notice to the data protection officer, delivered by the
// retention job (and retried with backoff until it is).
type Notice struct {
	ID        int64
	Extension string
	Tenant    string
	Text      string
	Attempts  int
	Next      time.Time // the next attempt, not before
	Delivered time.Time // zero until delivered
	LastError string
	Created   time.Time
}

// AddExtension stores x, queues its audit event and the DPO's notice, in
// one transaction.
func (s *Store) AddExtension(ctx context.Context, x Extension, ev audit.Event, noticeText string) error {
	return s.change(ctx, "extension "+x.ID, func(tx txn) (bool, error) {
		if err := extensionsSet.put(ctx, s, tx, x.ID, x); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO retention_notices (extension, tenant, text, next_ns, created_ns) VALUES (?, ?, ?, ?, ?)`,
			x.ID, x.Tenant, noticeText, x.Created.UnixNano(), x.Created.UnixNano()); err != nil {
			return false, err
		}
		return true, queueEvent(ctx, tx, ev.Time, ev)
	})
}

// Notices returns every notice, oldest first.
func (s *Store) Notices(ctx context.Context) ([]Notice, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, extension, tenant, text, attempts, next_ns, delivered_ns, last_error, created_ns
		FROM retention_notices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: notices: %w", err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		var n Notice
		var next, created int64
		var delivered sql.NullInt64
		if err := rows.Scan(&n.ID, &n.Extension, &n.Tenant, &n.Text, &n.Attempts, &next, &delivered, &n.LastError, &created); err != nil {
			return nil, fmt.Errorf("store: notices: %w", err)
		}
		n.Next, n.Created = time.Unix(0, next).UTC(), time.Unix(0, created).UTC()
		if delivered.Valid {
			n.Delivered = time.Unix(0, delivered.Int64).UTC()
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// NoticeAttempt records an attempt to deliver notice id at: delivered
// when failure is "", else failed with that reason and retried at next.
func (s *Store) NoticeAttempt(ctx context.Context, id int64, at time.Time, failure string, next time.Time) error {
	var err error
	if failure == "" {
		_, err = s.db.ExecContext(ctx, `UPDATE retention_notices SET attempts = attempts + 1, delivered_ns = ?, last_error = '' WHERE id = ?`, at.UnixNano(), id)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE retention_notices SET attempts = attempts + 1, last_error = ?, next_ns = ? WHERE id = ?`, failure, next.UnixNano(), id)
	}
	if err != nil {
		return fmt.Errorf("store: notice %d: %w", id, err)
	}
	return nil
}

// Destroyed is the record that a key's destruction is in the audit log.
type Destroyed struct {
	Class    string    `json:"class"`
	Tenant   string    `json:"tenant"`
	Day      string    `json:"day"`
	KeyID    string    `json:"key_id"`
	At       time.Time `json:"at"`
	Repaired bool      `json:"repaired,omitempty"`
}

func destroyedID(class, tenant, day string) string { return class + "/" + tenant + "/" + day }

// DestroyedKeys returns the audited destructions by "class/tenant/day".
// A row that fails its check is left out, so its destruction is audited
// again (as repaired): a duplicate event, never a missing one.
func (s *Store) DestroyedKeys(ctx context.Context) (map[string]Destroyed, error) {
	ds, err := readAll[Destroyed](ctx, s, destroyedSet)
	var f *Forgery
	if err != nil && !errors.As(err, &f) {
		return nil, err
	}
	out := make(map[string]Destroyed, len(ds))
	for _, d := range ds {
		out[destroyedID(d.Class, d.Tenant, d.Day)] = d
	}
	return out, nil
}

// RecordDestroyed notes that the destruction d is in the audit log.
func (s *Store) RecordDestroyed(ctx context.Context, d Destroyed) error {
	if s.seal == nil {
		return fmt.Errorf("store: record destroyed key: %w", ErrNoKey)
	}
	return s.change(ctx, "record destroyed key", func(tx txn) (bool, error) {
		return false, destroyedSet.put(ctx, s, tx, destroyedID(d.Class, d.Tenant, d.Day), d)
	})
}
