package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// blocksSchema is migration 8: blocks after failed logins (M19) as the
// gateway sees them, so that `tandem blocks` can list them, and the
// unblocks an operator asked for with `tandem unblock`. The gateway keeps
// the blocks themselves in memory (package ratelimit); these rows are its
// report and the operator's way in.
const blocksSchema = `CREATE TABLE blocks (
		scope    TEXT NOT NULL,    -- source | person
		key      TEXT NOT NULL,    -- the source address (no port) or the person id
		until_ns INTEGER NOT NULL, -- unix nanoseconds, UTC
		reason   TEXT NOT NULL,
		at_ns    INTEGER NOT NULL,
		PRIMARY KEY (scope, key)
	);
	CREATE TABLE unblocks (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		scope   TEXT NOT NULL,
		key     TEXT NOT NULL,
		by      TEXT NOT NULL,
		at_ns   INTEGER NOT NULL,
		applied INTEGER NOT NULL DEFAULT 0
	);`

// Block scopes.
const (
	BlockSource = "source"
	BlockPerson = "person"
)

// Block is a source address or a person refused after too many failed
// logins, until Until.
type Block struct {
	Scope  string // BlockSource or BlockPerson
	Key    string // the address (without port) or the person id
	Until  time.Time
	Reason string
	At     time.Time // when the block started
}

// Unblock is an operator's request to lift a block early.
type Unblock struct {
	ID         int64
	Scope, Key string
	By         string
	At         time.Time
}

func validScope(scope string) error {
	if scope != BlockSource && scope != BlockPerson {
		return fmt.Errorf("unknown block scope %q (source or person)", scope)
	}
	return nil
}

// RecordBlock stores (or replaces) the report of a block the gateway
// started.
func (s *Store) RecordBlock(ctx context.Context, b Block) error {
	if err := validScope(b.Scope); err != nil || b.Key == "" {
		return errors.Join(errors.New("store: record block"), err)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO blocks (scope, key, until_ns, reason, at_ns) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (scope, key) DO UPDATE SET until_ns = excluded.until_ns, reason = excluded.reason, at_ns = excluded.at_ns`,
		b.Scope, b.Key, b.Until.UnixNano(), b.Reason, b.At.UnixNano())
	if err != nil {
		return fmt.Errorf("store: record block: %w", err)
	}
	return nil
}

// PurgeEndedBlocks deletes the reports of blocks that ended by now. The
// gateway calls it periodically: a blocked source address is operational
// data, kept no longer than the block (M14).
func (s *Store) PurgeEndedBlocks(ctx context.Context, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM blocks WHERE until_ns <= ?`, now.UnixNano()); err != nil {
		return fmt.Errorf("store: blocks: %w", err)
	}
	return nil
}

// Blocks returns the blocks in force at now, sources first, then persons,
// each sorted by key. Ended ones are removed on the way.
func (s *Store) Blocks(ctx context.Context, now time.Time) ([]Block, error) {
	if err := s.PurgeEndedBlocks(ctx, now); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT scope, key, until_ns, reason, at_ns FROM blocks ORDER BY scope DESC, key`)
	if err != nil {
		return nil, fmt.Errorf("store: blocks: %w", err)
	}
	defer rows.Close()
	var out []Block
	for rows.Next() {
		var b Block
		var until, at int64
		if err := rows.Scan(&b.Scope, &b.Key, &until, &b.Reason, &at); err != nil {
			return nil, fmt.Errorf("store: blocks: %w", err)
		}
		b.Until, b.At = time.Unix(0, until).UTC(), time.Unix(0, at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// RequestUnblock removes the report of a block and asks the gateway to
// lift it; it reports whether a block was on record. The gateway applies
// it at its next poll and audits it.
func (s *Store) RequestUnblock(ctx context.Context, scope, key, by string, at time.Time) (bool, error) {
	if err := validScope(scope); err != nil {
		return false, err
	}
	var found bool
	err := s.change(ctx, "unblock "+key, func(tx txn) (bool, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM blocks WHERE scope = ? AND key = ? AND until_ns > ?`, scope, key, at.UnixNano())
		if err != nil {
			return false, err
		}
		n, _ := res.RowsAffected()
		found = n > 0
		_, err = tx.ExecContext(ctx, `INSERT INTO unblocks (scope, key, by, at_ns) VALUES (?, ?, ?, ?)`, scope, key, by, at.UnixNano())
		return true, err
	})
	return found, err
}

// PendingUnblocks returns the unblocks the gateway has not applied yet,
// oldest first.
func (s *Store) PendingUnblocks(ctx context.Context) ([]Unblock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, scope, key, by, at_ns FROM unblocks WHERE applied = 0 ORDER BY id LIMIT 100`)
	if err != nil {
		return nil, fmt.Errorf("store: pending unblocks: %w", err)
	}
	defer rows.Close()
	var out []Unblock
	for rows.Next() {
		var u Unblock
		var at int64
		if err := rows.Scan(&u.ID, &u.Scope, &u.Key, &u.By, &at); err != nil {
			return nil, fmt.Errorf("store: pending unblocks: %w", err)
		}
		u.At = time.Unix(0, at).UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// MarkUnblockApplied records that the gateway lifted the block and audited
// it, by deleting the request: the audit log has it now, and a source
// address is operational data that must not stay here (M14).
func (s *Store) MarkUnblockApplied(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM unblocks WHERE id = ?`, id); err != nil {
		return fmt.Errorf("store: mark unblock %d: %w", id, err)
	}
	return nil
}
