package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// clusterSchema is migration 12: the cluster-wide registry of waiting and
// live shared sessions. Every node publishes the sessions it holds, so
// that `ssh gw sessions` and `join` on any node find them; the node's
// heartbeat row says it is alive, and the rows of a node whose heartbeat
// is older than the caller's bound are ignored (a node killed mid-session
// takes its rows with it without anyone deleting them).
//
// The SQL is kept portable (plain placeholders, upserts by ON CONFLICT,
// no AUTOINCREMENT, no functions of one engine), so that the tables move
// to another database engine as they are.
//
// The rows are not sealed like locks and requests: they grant nothing. A
// join found here is decided on the joining person's node and decided
// again, on its own state, by the node that holds the session; a forged
// row can at most send a join to a configured peer, which refuses it.
const clusterSchema = `CREATE TABLE cluster_nodes (
	node    TEXT PRIMARY KEY NOT NULL,
	seen_ns INTEGER NOT NULL -- unix nanoseconds, the node's clock
);
CREATE TABLE cluster_sessions (
	id           TEXT PRIMARY KEY NOT NULL,
	node         TEXT NOT NULL,
	owner        TEXT NOT NULL,
	host         TEXT NOT NULL,
	login        TEXT NOT NULL,
	tenant       TEXT NOT NULL,
	state        TEXT NOT NULL,
	participants TEXT NOT NULL, -- JSON array of {person, mode, external}, owner first
	started_ns   INTEGER NOT NULL
);
CREATE INDEX cluster_sessions_node ON cluster_sessions (node);`

// ClusterSession is one shared session as its node publishes it.
type ClusterSession struct {
	ID, Node, Owner, Host, Login, Tenant, State string
	// Participants are the people in the session, owner first.
	Participants []ClusterParticipant
	Started      time.Time
}

// ClusterParticipant is one person in a published session.
type ClusterParticipant struct {
	Person   string `json:"person"`
	Mode     string `json:"mode"`
	External bool   `json:"external,omitempty"`
}

// PublishSessions replaces the sessions node publishes with list and
// marks node alive at now, in one transaction: a reader sees the old list
// or the new one, never half of each. Rows of nodes not seen since
// staleBefore are deleted on the way (they are ignored anyway).
// Publishing does not bump the generation: no gateway has to reload
// anything for it.
func (s *Store) PublishSessions(ctx context.Context, node string, list []ClusterSession, now, staleBefore time.Time) error {
	if node == "" {
		return errors.New("store: publish sessions: empty node name")
	}
	at, err := toNanos(now)
	if err != nil {
		return fmt.Errorf("store: publish sessions: %w", err)
	}
	stale, err := toNanos(staleBefore)
	if err != nil {
		return fmt.Errorf("store: publish sessions: %w", err)
	}
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("store: publish sessions: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := heartbeat(ctx, tx, node, at); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM cluster_sessions WHERE node = ? OR node IN (SELECT node FROM cluster_nodes WHERE seen_ns < ?)`,
		node, stale); err != nil {
		return fmt.Errorf("store: publish sessions: clear: %w", err)
	}
	for _, c := range list {
		parts, err := json.Marshal(c.Participants)
		if err != nil {
			return fmt.Errorf("store: publish session %s: %w", c.ID, err)
		}
		started, err := toNanos(c.Started)
		if err != nil {
			return fmt.Errorf("store: publish session %s: %w", c.ID, err)
		}
		// An id another node published (ids are random; a clash is all
		// but impossible) goes to whoever published last.
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO cluster_sessions (id, node, owner, host, login, tenant, state, participants, started_ns)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			 ON CONFLICT (id) DO UPDATE SET node = excluded.node, owner = excluded.owner, host = excluded.host,
			   login = excluded.login, tenant = excluded.tenant, state = excluded.state,
			   participants = excluded.participants, started_ns = excluded.started_ns`,
			c.ID, node, c.Owner, c.Host, c.Login, c.Tenant, c.State, string(parts), started); err != nil {
			return fmt.Errorf("store: publish session %s: %w", c.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: publish sessions: commit: %w", err)
	}
	return nil
}

// Heartbeat marks node alive at now without changing its sessions.
func (s *Store) Heartbeat(ctx context.Context, node string, now time.Time) error {
	at, err := toNanos(now)
	if err != nil {
		return fmt.Errorf("store: heartbeat: %w", err)
	}
	return heartbeat(ctx, s.db, node, at)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func heartbeat(ctx context.Context, db execer, node string, at int64) error {
	if _, err := db.ExecContext(ctx,
		`INSERT INTO cluster_nodes (node, seen_ns) VALUES (?, ?)
		 ON CONFLICT (node) DO UPDATE SET seen_ns = excluded.seen_ns`, node, at); err != nil {
		return fmt.Errorf("store: heartbeat of %s: %w", node, err)
	}
	return nil
}

// ClusterSessions returns the published sessions of every node seen at
// or after aliveSince, oldest first.
func (s *Store) ClusterSessions(ctx context.Context, aliveSince time.Time) ([]ClusterSession, error) {
	since, err := toNanos(aliveSince)
	if err != nil {
		return nil, fmt.Errorf("store: cluster sessions: %w", err)
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT s.id, s.node, s.owner, s.host, s.login, s.tenant, s.state, s.participants, s.started_ns
		 FROM cluster_sessions s JOIN cluster_nodes n ON n.node = s.node
		 WHERE n.seen_ns >= ? ORDER BY s.started_ns, s.id`, since)
	if err != nil {
		return nil, fmt.Errorf("store: cluster sessions: %w", err)
	}
	defer rows.Close()
	var out []ClusterSession
	for rows.Next() {
		var c ClusterSession
		var parts string
		var started int64
		if err := rows.Scan(&c.ID, &c.Node, &c.Owner, &c.Host, &c.Login, &c.Tenant, &c.State, &parts, &started); err != nil {
			return nil, fmt.Errorf("store: cluster sessions: %w", err)
		}
		if err := json.Unmarshal([]byte(parts), &c.Participants); err != nil {
			return nil, fmt.Errorf("store: cluster session %s: participants: %w", c.ID, err)
		}
		c.Started = time.Unix(0, started).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: cluster sessions: %w", err)
	}
	return out, nil
}
