package store

import (
	"database/sql"
	"errors"
)

// recordingsSchema is migration 13: recordings kept in the database
// (recording.storage: store, docs/HA.md), so that every gateway of a
// cluster reads what any of them recorded. The tables belong to
// internal/record (record.SQL), which reads and writes them; the store
// only creates them, with its versioned migrations. They hold only what a
// recording file holds — its plaintext header line without personal data
// and sealed (encrypted) chunks — and copies of the data keys wrapped by
// the key-encryption key; they are not sealed with the state key, as the
// chunks carry their own authentication and session.end the hashes.
//
// A part is the bytes of one synced flush, in order (seq from 0, pos the
// byte offset in the object). sealed: 0 a recording, 1 the sealed
// keystrokes of the session.
const recordingsSchema = `CREATE TABLE recording_objects (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	sealed     INTEGER NOT NULL,
	tenant     TEXT NOT NULL,
	day        TEXT NOT NULL,       -- YYYY-MM-DD, UTC
	session    TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	UNIQUE (sealed, tenant, day, session)
);
CREATE TABLE recording_parts (
	object INTEGER NOT NULL REFERENCES recording_objects (id),
	seq    INTEGER NOT NULL,
	pos    INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (object, seq)
);
CREATE TABLE recording_keys (
	class    TEXT NOT NULL,
	tenant   TEXT NOT NULL,
	day      TEXT NOT NULL,
	id       TEXT NOT NULL,
	key_file BLOB NOT NULL,
	PRIMARY KEY (class, tenant, day, id)
);
CREATE TABLE recording_keys_destroyed (
	class  TEXT NOT NULL,
	tenant TEXT NOT NULL,
	day    TEXT NOT NULL,
	at_ns  INTEGER NOT NULL,
	PRIMARY KEY (class, tenant, day)
);`

// recordingKEKSchema is migration 14: which key-encryption key the
// copies of the data keys in recording_keys are wrapped with, as a check
// value (vault.KEKCheck: a fixed constant wrapped by the KEK), so that a
// gateway holding another KEK refuses to start rather than record what
// the others cannot read. One row at most; internal/record
// (record.SQL.CheckKEK, RewrapKeys) reads and writes it.
const recordingKEKSchema = `CREATE TABLE recording_kek (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	check_value BLOB NOT NULL,
	at_ns       INTEGER NOT NULL
);`

// ErrNotShared: recordings go to the state store only when it is
// PostgreSQL, which every gateway reaches.
var ErrNotShared = errors.New("recordings can be kept in the state store only when it is PostgreSQL (store.driver: postgres)")

// RecordingDB returns the PostgreSQL database for internal/record's
// shared recording storage (record.NewSQL). On SQLite it returns
// ErrNotShared: a SQLite file is shared by gateways on one host at most,
// and each flush of every recording would take its one write lock, which
// locks and approvals need.
func (s *Store) RecordingDB() (*sql.DB, error) {
	if !s.db.d.postgres {
		return nil, ErrNotShared
	}
	return s.db.DB, nil
}
