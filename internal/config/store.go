package config

import "path/filepath"

// Store chooses where the gateway keeps its state (locks, requests and
// approvals, the audit outbox, blocks, retention state, freezes): the
// embedded SQLite file data_dir/state.db (the default, one gateway), a
// SQLite file elsewhere that gateways on one host share (path), or a
// PostgreSQL database that several gateways share (docs/HA.md). Changes
// take effect at the next start.
type Store struct {
	// Driver is sqlite (default) or postgres.
	Driver string `yaml:"driver"`
	// Path is the SQLite state database. Default: data_dir/state.db. Two
	// gateways on one host share their state by naming the same file
	// while each keeps its own data_dir.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (URL or key=value, as libpq
	// takes it). Over a network it must verify the server:
	// sslmode=verify-full with sslrootcert; other modes are refused
	// except for loopback and Unix sockets. Keep the password out of it
	// (passfile=, or PGPASSFILE): the configuration file is read by more
	// than the gateway. A changed DSN is never written to the audit log.
	DSN string `yaml:"dsn" secret:"true"`
}

// Store drivers.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

func (s *Store) fillDefaults(cfgPath string) {
	if s.Driver == "" {
		s.Driver = StoreSQLite
	}
	if s.Path != "" && cfgPath != "" && !filepath.IsAbs(s.Path) {
		if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), s.Path)); err == nil {
			s.Path = abs
		}
	}
}

// StatePath is the SQLite state database's file: store.path, or state.db
// in data_dir.
func (c *Config) StatePath() string {
	if c.Store.Path != "" {
		return c.Store.Path
	}
	return filepath.Join(c.Gateway.DataDir, "state.db")
}

// SharedStore reports whether the state is where other gateways can share
// it: a SQLite file apart from data_dir (store.path) or PostgreSQL.
func (c *Config) SharedStore() bool { return c.Store.Path != "" || c.Store.Driver == StorePostgres }

// RecordingsShared reports whether recordings go to the state store's
// database (recording.storage: store).
func (c *Config) RecordingsShared() bool { return c.Recording.Storage == RecordingStore }

// validateRecordingStorage accepts local and store, store only with the
// state on PostgreSQL: a SQLite file is shared by gateways on one host at
// most, and every recording's flush would take its one write lock, which
// locks and approvals need.
func validateRecordingStorage(c *Config, pos *positions, r *report) {
	switch c.Recording.Storage {
	case "", RecordingLocal:
	case RecordingStore:
		if c.Store.Driver != StorePostgres {
			r.add(pos.line("recording", "storage"), "recording.storage: store keeps recordings in the state store's PostgreSQL database and needs store.driver: postgres; with SQLite keep them local")
		}
	default:
		r.add(pos.line("recording", "storage"), "recording.storage must be local or store, not %q", c.Recording.Storage)
	}
}

// validateStore checks the driver and that a DSN is given exactly for
// PostgreSQL. Whether the DSN verifies the server is checked as the store
// opens it (store.CheckDSN), with the same words.
func validateStore(c *Config, pos *positions, r *report) {
	s := c.Store
	switch s.Driver {
	case StoreSQLite, "":
		if s.DSN != "" {
			r.add(pos.line("store", "dsn"), "store.dsn is for driver postgres; SQLite's state is store.path or data_dir/state.db")
		}
	case StorePostgres:
		if s.DSN == "" {
			r.add(pos.line("store", "driver"), "store.driver postgres needs store.dsn (the PostgreSQL connection string)")
		}
		if s.Path != "" {
			r.add(pos.line("store", "path"), "store.path is the SQLite file; with driver postgres the state is in store.dsn's database")
		}
	default:
		r.add(pos.line("store", "driver"), "store.driver must be sqlite or postgres, not %q", s.Driver)
	}
}
