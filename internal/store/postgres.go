package store

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL: several gateways share one state (docs/HA.md). The store keeps
// database/sql through pgx's stdlib adapter, so every query, transaction and
// test is the same code on both databases (dialect.go holds the
// differences); a dedicated pgx connection, outside the pool, listens for
// the changes other nodes announce.

// Bounds of the connection to PostgreSQL, so that a database that is gone
// (a restart, a cut network) turns into an error within seconds instead of
// a hang: on connect, on an idle connection (TCP keepalive) and while
// waiting for a notification.
const (
	pgConnectTimeout = 5 * time.Second
	pgKeepIdle       = 5 * time.Second
	pgKeepInterval   = 2 * time.Second
	pgKeepCount      = 3
	pgOpenTimeout    = 60 * time.Second
	pgListenWait     = 15 * time.Second
	pgPingTimeout    = 5 * time.Second
	pgMaxConns       = 16
)

// OpenPostgres opens the PostgreSQL database that dsn names (a URL or
// key=value connection string, as libpq takes it) and brings its schema up
// to date, as Open does for SQLite; the options are Open's. Gateways that
// open a new database at once apply each migration once (an advisory lock
// orders them).
//
// The connection must verify the server's certificate (sslmode=verify-full)
// unless it stays on the machine: see CheckDSN.
func OpenPostgres(dsn string, opts ...Option) (*Store, error) {
	cfg, err := parsePostgres(dsn)
	if err != nil {
		return nil, err
	}
	sdb := openPGX(cfg)
	s := &Store{db: conn{sdb, postgresDialect}, pg: &pgListen{cfg: cfg}}
	ctx, cancel := context.WithTimeout(context.Background(), pgOpenTimeout)
	defer cancel()
	where := fmt.Sprintf("PostgreSQL at %s/%s", cfg.Host, cfg.Database)
	if err := s.migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: %s: %w", where, s.unavailable(err))
	}
	if err := s.setUp(ctx, opts); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("%w (%s)", err, where)
	}
	return s, nil
}

// openPGX is a database/sql handle on cfg through pgx's stdlib adapter.
func openPGX(cfg *pgx.ConnConfig) *sql.DB {
	sdb := stdlib.OpenDB(*cfg)
	// Bounded: every gateway's pool adds to the server's connection count.
	sdb.SetMaxOpenConns(pgMaxConns)
	sdb.SetMaxIdleConns(4)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	return sdb
}

// CheckDSN parses a PostgreSQL connection string and checks that it
// verifies the server: every host it names must be reached with TLS and
// sslmode=verify-full (the certificate chains to sslrootcert, or to the
// system's roots without it, and names the host). sslmode disable, allow,
// prefer, require and verify-ca are accepted only when every host is a
// loopback address, "localhost" or a Unix socket directory, where there is
// no network to protect. The error never repeats the string, which may hold
// a password.
func CheckDSN(dsn string) error {
	_, err := parsePostgres(dsn)
	return err
}

// parsePostgres parses dsn, checks its TLS and sets the store's bounds.
func parsePostgres(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		} else if errors.As(err, &pe) {
			err = errors.New("invalid connection string")
		}
		return nil, fmt.Errorf("store: PostgreSQL DSN (not shown, it may hold a password): %w", err)
	}
	for _, fc := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}},
		cfg.Fallbacks...) {
		if local(fc.Host) {
			continue
		}
		if fc.TLSConfig == nil || fc.TLSConfig.InsecureSkipVerify {
			return nil, fmt.Errorf("store: PostgreSQL DSN: the connection to %s does not verify the server's "+
				"certificate; use sslmode=verify-full with sslrootcert=<CA file> (sslmode disable, allow, prefer, "+
				"require and verify-ca are accepted only for loopback addresses and Unix sockets)", shownHost(fc.Host))
		}
		if fc.TLSConfig.MinVersion < tls.VersionTLS12 {
			fc.TLSConfig.MinVersion = tls.VersionTLS12 // docs/STANDARDS.md: TLS 1.2 or later
		}
	}
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > pgConnectTimeout {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: pgKeepIdle, Interval: pgKeepInterval, Count: pgKeepCount}}
	cfg.DialFunc = d.DialContext
	return cfg, nil
}

// shownHost is host for an error message when it looks like a host name
// or address; a string that only parsed as one (part of a garbled DSN,
// which may hold a password) is not repeated.
func shownHost(host string) string {
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]%_", r)) {
			return "the host given"
		}
	}
	return host
}

// local reports a host that is this machine: a Unix socket directory, a
// loopback address or "localhost".
func local(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// UnavailableError is the error of an operation that failed because the
// state store could not be reached (PostgreSQL down, restarting or cut
// off). Decisions that need the store are refused with it until it is
// back; nothing needs a restart.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return "the state store (PostgreSQL) is unavailable, so this is refused until it is back: " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// ErrUnavailable matches every *UnavailableError (errors.Is).
var ErrUnavailable = errors.New("the state store is unavailable")

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// unavailable wraps err in an *UnavailableError when it says that
// PostgreSQL could not be reached; other errors pass unchanged.
func (s *Store) unavailable(err error) error {
	if err == nil || !s.db.d.postgres || errors.Is(err, ErrUnavailable) || !unreachable(err) {
		return err
	}
	return &UnavailableError{Err: err}
}

// unreachable reports an error of the connection rather than of the
// statement: the server is gone, shutting down or not yet accepting.
func unreachable(err error) bool {
	var (
		ce *pgconn.ConnectError
		ne net.Error
		pe *pgconn.PgError
	)
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 57P01..03: shutting down, crashed,
		// not yet accepting connections.
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return strings.Contains(err.Error(), "conn closed")
}

// pgListen is what a PostgreSQL store needs to listen for changes.
type pgListen struct {
	cfg *pgx.ConnConfig
}

// Changes returns a channel that receives a value soon after another
// process changes the state (on PostgreSQL: a NOTIFY sent in the change's
// transaction), and after the listening connection was lost and is back
// (changes in between were not heard). A receiver then reads the
// generation, as it does when it polls; several changes may arrive as one.
// On SQLite it returns nil (a receive never fires): the gateway polls.
//
// The listening goroutine belongs to the caller's ctx: it holds one
// connection of its own, reconnects with backoff while the server is away,
// and ends, closing the connection, when ctx ends.
func (s *Store) Changes(ctx context.Context) <-chan struct{} {
	if s.pg == nil {
		return nil
	}
	ch := make(chan struct{}, 1)
	go s.pg.listen(ctx, ch)
	return ch
}

// signal wakes the receiver of ch without ever blocking: one pending
// wake-up covers any number of changes.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen keeps one LISTEN connection up until ctx ends.
func (l *pgListen) listen(ctx context.Context, ch chan<- struct{}) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if l.session(ctx, ch) {
			backoff = 100 * time.Millisecond // it was up: retry at once
		}
		if sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// session connects, listens and passes notifications on until the
// connection fails or ctx ends. It reports whether it got as far as
// listening.
func (l *pgListen) session(ctx context.Context, ch chan<- struct{}) bool {
	cctx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
	c, err := pgx.ConnectConfig(cctx, l.cfg)
	if err != nil {
		cancel()
		return false
	}
	defer func() {
		closeCtx, done := context.WithTimeout(context.Background(), time.Second)
		c.Close(closeCtx) //nolint:errcheck // the connection is being dropped anyway
		done()
	}()
	_, err = c.Exec(cctx, "LISTEN "+notifyChannel)
	cancel()
	if err != nil {
		return false
	}
	// Whatever changed while nobody listened is read now.
	signal(ch)
	for {
		wctx, cancel := context.WithTimeout(ctx, pgListenWait)
		_, err := c.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			signal(ch)
			continue
		case ctx.Err() != nil:
			return true
		case c.IsClosed() || !pgconn.Timeout(err):
			return true
		}
		// Quiet for a while: make sure the connection still answers (a
		// half-open one would wait forever).
		pctx, cancel := context.WithTimeout(ctx, pgPingTimeout)
		err = c.Ping(pctx)
		cancel()
		if err != nil {
			return true
		}
	}
}
