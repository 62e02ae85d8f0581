package store

import (
	"context"
	"fmt"
	"time"
)

// outboxSchema is migration 4: audit events written by processes other
// than the gateway (the local CLI reading a recording, say). The gateway is
// the audit log's only writer; it drains this table.
const outboxSchema = `CREATE TABLE audit_outbox (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	at_ns    INTEGER NOT NULL,
	event    BLOB NOT NULL,        -- the event, JSON
	audited  INTEGER NOT NULL DEFAULT 0
);`

// OutboxEntry is an audit event waiting for the gateway.
type OutboxEntry struct {
	ID    int64
	At    time.Time
	Event []byte
}

// QueueAudit stores an event (JSON) for the gateway to append to the audit
// log, and bumps the generation so a polling gateway notices at once.
func (s *Store) QueueAudit(ctx context.Context, at time.Time, event []byte) error {
	return s.change(ctx, "queue audit event", func(tx txn) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_outbox (at_ns, event) VALUES (?, ?)`, at.UnixNano(), event)
		return err == nil, err
	})
}

// PendingAudit returns queued events not yet in the audit log, oldest first.
func (s *Store) PendingAudit(ctx context.Context) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, at_ns, event FROM audit_outbox WHERE audited = 0 ORDER BY id LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("store: pending audit events: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Event); err != nil {
			return nil, fmt.Errorf("store: pending audit events: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkAudited records that the audit log holds outbox entry id, by
// deleting it: the event is in the (encrypted) audit log now, and its
// plaintext copy here — source addresses, reasons — must not outlive its
// retention class (M14). secure_delete (see dsn) overwrites the freed
// bytes in the database file.
func (s *Store) MarkAudited(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM audit_outbox WHERE id = ?`, id); err != nil {
		return fmt.Errorf("store: mark audit event %d: %w", id, err)
	}
	return nil
}
