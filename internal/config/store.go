package config

// Store chooses where the gateway keeps its state (locks, requests and
// approvals, the audit outbox, blocks, retention state, freezes): the
// embedded SQLite file data_dir/state.db (the default, one gateway), or a
// PostgreSQL database that several gateways share (docs/HA.md). Changes
// take effect at the next start.
type Store struct {
	// Driver is sqlite (default) or postgres.
	Driver string `yaml:"driver"`
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

func (s *Store) fillDefaults() {
	if s.Driver == "" {
		s.Driver = StoreSQLite
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
			r.add(pos.line("store", "dsn"), "store.dsn is for driver postgres; SQLite's state is data_dir/state.db")
		}
	case StorePostgres:
		if s.DSN == "" {
			r.add(pos.line("store", "driver"), "store.driver postgres needs store.dsn (the PostgreSQL connection string)")
		}
	default:
		r.add(pos.line("store", "driver"), "store.driver must be sqlite or postgres, not %q", s.Driver)
	}
}
