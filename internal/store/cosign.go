package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// cosignSchema is migration 11: the exchange through which the nodes of a
// cluster witness each other's audit logs (internal/cosign). A node posts
// its latest checkpoint with a consistency proof for each peer
// (cosign_submissions); the peer answers with its cosignature or why it
// refused (cosign_answers). Only the latest of each pair is kept. The
// store is only the transport: every note is signed by the node and every
// cosignature by the witness, so whoever can write here can delay the
// exchange but not forge it.
const cosignSchema = `CREATE TABLE cosign_submissions (
	node    TEXT NOT NULL,
	witness TEXT NOT NULL,
	seq     INTEGER NOT NULL, -- counts the node's submissions to the witness
	size    INTEGER NOT NULL,
	body    BLOB NOT NULL,    -- the submission, JSON
	PRIMARY KEY (node, witness)
);
CREATE TABLE cosign_answers (
	node     TEXT NOT NULL,
	witness  TEXT NOT NULL,
	seq      INTEGER NOT NULL, -- the submission answered
	size     INTEGER NOT NULL, -- the size the witness co-signed last
	note     BLOB,             -- the co-signed checkpoint of that size
	refusal  TEXT NOT NULL,    -- why the submission was refused; '' unless refused
	at_ns    INTEGER NOT NULL,
	PRIMARY KEY (node, witness)
);`

// maxCosignBody bounds a submission: a checkpoint note and a proof of at
// most 64 hashes fit in a few KiB.
const maxCosignBody = 64 << 10

// CosignSubmit replaces node's pending submission for witness.
func (s *Store) CosignSubmit(ctx context.Context, node, witness string, size uint64, body []byte) error {
	if len(body) > maxCosignBody {
		return fmt.Errorf("store: cosign submission of %d bytes (at most %d)", len(body), maxCosignBody)
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO cosign_submissions (node, witness, seq, size, body) VALUES (?, ?, 1, ?, ?)
		 ON CONFLICT (node, witness) DO UPDATE SET seq = cosign_submissions.seq + 1, size = excluded.size, body = excluded.body`,
		node, witness, int64(size), body)
	if err != nil {
		return fmt.Errorf("store: cosign submission of %s for %s: %w", node, witness, err)
	}
	return nil
}

// CosignPosted is a submission waiting for its witness.
type CosignPosted struct {
	Seq  int64 // pass it to CosignAnswer
	Body []byte
}

// CosignPending returns the submissions waiting for witness: those it has
// not answered. Each submission is answered once, whatever the answer: a
// refused one waits for the node's next.
func (s *Store) CosignPending(ctx context.Context, witness string) ([]CosignPosted, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT s.seq, s.body FROM cosign_submissions s
		 LEFT JOIN cosign_answers a ON a.node = s.node AND a.witness = s.witness
		 WHERE s.witness = ? AND (a.seq IS NULL OR a.seq < s.seq)
		 ORDER BY s.node`, witness)
	if err != nil {
		return nil, fmt.Errorf("store: cosign submissions for %s: %w", witness, err)
	}
	defer rows.Close()
	var out []CosignPosted
	for rows.Next() {
		var p CosignPosted
		if err := rows.Scan(&p.Seq, &p.Body); err != nil {
			return nil, fmt.Errorf("store: cosign submissions for %s: %w", witness, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CosignAnswer stores witness's answer to node's submission seq: the
// size it co-signed last, the co-signed note (nil when it co-signed nothing new: the last
// one stays) and the refusal ("" unless it refused).
func (s *Store) CosignAnswer(ctx context.Context, node, witness string, seq int64, size uint64, note []byte, refusal string, at time.Time) error {
	n, err := toNanos(at)
	if err != nil {
		return fmt.Errorf("store: cosign answer: %w", err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO cosign_answers (node, witness, seq, size, note, refusal, at_ns) VALUES (?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT (node, witness) DO UPDATE SET seq = excluded.seq, size = excluded.size,
		   note = CASE WHEN excluded.note IS NOT NULL THEN excluded.note ELSE cosign_answers.note END,
		   refusal = excluded.refusal, at_ns = excluded.at_ns`,
		node, witness, seq, int64(size), note, refusal, n)
	if err != nil {
		return fmt.Errorf("store: cosign answer of %s to %s: %w", witness, node, err)
	}
	return nil
}

// CosignAnswered is witness's last answer to node; ok is false when there
// is none yet. After a refusal, note is the last note it did co-sign.
type CosignAnswered struct {
	Node, Witness string
	Size          uint64
	Note          []byte
	Refusal       string
	At            time.Time
}

// CosignAnswers returns the last answers to node, by witness.
func (s *Store) CosignAnswers(ctx context.Context, node string) ([]CosignAnswered, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT witness, size, note, refusal, at_ns FROM cosign_answers WHERE node = ? ORDER BY witness`, node)
	if err != nil {
		return nil, fmt.Errorf("store: cosign answers to %s: %w", node, err)
	}
	defer rows.Close()
	var out []CosignAnswered
	for rows.Next() {
		a := CosignAnswered{Node: node}
		var size, at int64
		if err := rows.Scan(&a.Witness, &size, &a.Note, &a.Refusal, &at); err != nil {
			return nil, fmt.Errorf("store: cosign answers to %s: %w", node, err)
		}
		a.Size, a.At = uint64(size), time.Unix(0, at).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// CosignAnswerOf returns witness's last answer to node.
func (s *Store) CosignAnswerOf(ctx context.Context, node, witness string) (CosignAnswered, bool, error) {
	a := CosignAnswered{Node: node, Witness: witness}
	var size, at int64
	err := s.db.QueryRowContext(ctx,
		`SELECT size, note, refusal, at_ns FROM cosign_answers WHERE node = ? AND witness = ?`, node, witness).
		Scan(&size, &a.Note, &a.Refusal, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return CosignAnswered{}, false, nil
	}
	if err != nil {
		return CosignAnswered{}, false, fmt.Errorf("store: cosign answer of %s to %s: %w", witness, node, err)
	}
	a.Size, a.At = uint64(size), time.Unix(0, at).UTC()
	return a, true, nil
}
