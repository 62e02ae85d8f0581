package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// freezesSchema is migration 10: freezes of hosts, tenants and labels
// after a security finding (M27). A freeze withholds access like a lock,
// so it is sealed like one: each row and the table as a whole, since a
// deleted freeze would open the host again. A lifted freeze stays as a
// row (Lifted set), so `tandem freezes --all` shows the history the
// audit log also has.
const freezesSchema = `CREATE TABLE freezes (
		id   TEXT PRIMARY KEY NOT NULL,
		body BLOB NOT NULL,
		mac  BLOB
	);
	INSERT INTO state_seals (name, mac) VALUES ('freezes', x'');`

var freezesSet = sealedSet{table: "freezes", kind: "freeze", whole: true}

// Freeze kinds: what a freeze selects.
const (
	FreezeHost   = "host"
	FreezeTenant = "tenant"
	FreezeLabel  = "label"
)

// Freeze is a freeze of a host, a tenant's hosts or the hosts with a
// label: while active, the gateway refuses new work there and ends live
// sessions, except incident sessions under four-eyes.
type Freeze struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`  // FreezeHost, FreezeTenant or FreezeLabel
	Value    string    `json:"value"` // host name, tenant id, or KEY=VALUE
	Reason   string    `json:"reason"`
	By       string    `json:"by"`
	Created  time.Time `json:"created"`
	Lifted   time.Time `json:"lifted,omitzero"`
	LiftedBy string    `json:"lifted_by,omitempty"`
}

// Active reports whether the freeze is in force (not lifted).
func (f Freeze) Active() bool { return f.Lifted.IsZero() }

// ErrNoFreeze: no freeze has that id.
var ErrNoFreeze = errors.New("no such freeze")

// Freezes returns every freeze, lifted ones too, in id order. A
// *Forgery error means the table failed its check (a freeze deleted,
// added or changed outside the store): the rows that pass are returned
// all the same, and the gateway then counts every host as frozen, since
// the freeze that went missing could be any host's.
func (s *Store) Freezes(ctx context.Context) ([]Freeze, error) {
	return readAll[Freeze](ctx, s, freezesSet)
}

// PutFreeze stores a new or lifted freeze, queues its audit event (ev)
// and bumps the generation, in one transaction: the freeze exists exactly
// when its event is queued, and every gateway applies it within a poll.
func (s *Store) PutFreeze(ctx context.Context, f Freeze, ev audit.Event) error {
	if f.ID == "" || f.Kind == "" || f.Value == "" {
		return errors.New("store: freeze: id, kind and value must be set")
	}
	if s.seal == nil {
		return fmt.Errorf("store: freeze %s: %w", f.ID, ErrNoKey)
	}
	return s.change(ctx, "freeze "+f.ID, func(tx txn) (bool, error) {
		if err := freezesSet.put(ctx, s, tx, f.ID, f); err != nil {
			return false, err
		}
		return true, queueEvent(ctx, tx, ev.Time, ev)
	})
}

// ResealFreezes accepts the freeze table as it is now after it failed its
// check, once an operator has compared it with the audit log's freeze and
// unfreeze events (and frozen again what is missing); audited as
// state.resealed.
func (s *Store) ResealFreezes(ctx context.Context, by string, at time.Time) (int, error) {
	if s.seal == nil {
		return 0, fmt.Errorf("store: reseal freezes: %w", ErrNoKey)
	}
	var n int
	err := s.change(ctx, "reseal freezes", func(tx txn) (bool, error) {
		var failed int
		var sealFailed bool
		var err error
		if n, failed, sealFailed, err = freezesSet.reseal(ctx, s, tx); err != nil {
			return false, err
		}
		return true, queueEvent(ctx, tx, at, audit.StateResealedEvent{By: by, ResealedLocks: &audit.ResealedLocks{
			Table: freezesSet.table, Rows: n, RowsFailed: failed, SealFailed: sealFailed}}.Event())
	})
	return n, err
}
