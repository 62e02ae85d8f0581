package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// acksSchema is migration 6: which generation each running gateway has
// applied. A change through the store (a lock, say) is only in force once
// every gateway has reloaded it; these rows let the process that made the
// change wait for that instead of guessing from the poll interval.
const acksSchema = `CREATE TABLE gateway_acks (
	gateway    TEXT PRIMARY KEY NOT NULL,
	generation INTEGER NOT NULL,
	at_ns      INTEGER NOT NULL -- unix nanoseconds, the gateway's clock
);`

// ackFresh is how recently a gateway must have acknowledged to count as
// running. A gateway acknowledges on every poll (a fifth of a second), so
// ten missed polls mean it has stopped or hangs; its row is then ignored
// rather than blocking every waiter until the timeout.
const ackFresh = 2 * time.Second

// AckGeneration records that gateway has applied the changes up to
// generation gen: it has refreshed its lock table from the store and ended
// the sessions and connections of every person locked at gen. A gateway
// calls it on every poll, also when nothing changed, and at least every
// two seconds: WaitApplied counts only gateways whose acknowledgement is
// that fresh. gen is the generation it last applied successfully, not
// merely the one it last read, so a gateway whose reload failed holds the
// waiters back instead of confirming a lock it does not enforce.
//
// gateway names the process; it should stay the same across restarts (the
// host name and listen address, say) so that a restarted gateway replaces
// its row instead of leaving one more behind. at is the gateway's clock;
// the waiters compare it with theirs, so all processes sharing the file are
// expected to share a clock, as they share a host.
//
// Acknowledging does not bump the generation: it is not a change the
// gateways need to reload, and bumping would make them chase each other.
func (s *Store) AckGeneration(ctx context.Context, gateway string, gen int64, at time.Time) error {
	if gateway == "" {
		return errors.New("store: ack generation: empty gateway name")
	}
	n, err := toNanos(at)
	if err != nil {
		return fmt.Errorf("store: ack generation of %s: at: %w", gateway, err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO gateway_acks (gateway, generation, at_ns) VALUES (?, ?, ?)
		 ON CONFLICT (gateway) DO UPDATE SET generation = excluded.generation, at_ns = excluded.at_ns`,
		gateway, gen, n)
	if err != nil {
		return fmt.Errorf("store: ack generation of %s: %w", gateway, err)
	}
	return nil
}

// AckedGeneration returns the lowest generation acknowledged by the
// gateways that acknowledged at or after since, and how many such gateways
// there are; 0, 0 when none did. A change of generation g is in force on
// every running gateway once gen >= g: the slowest gateway decides.
func (s *Store) AckedGeneration(ctx context.Context, since time.Time) (gen int64, gateways int, err error) {
	n, err := toNanos(since)
	if err != nil {
		return 0, 0, fmt.Errorf("store: acked generation: since: %w", err)
	}
	var lowest sql.NullInt64
	err = s.db.QueryRowContext(ctx,
		`SELECT MIN(generation), COUNT(*) FROM gateway_acks WHERE at_ns >= ?`, n).Scan(&lowest, &gateways)
	if err != nil {
		return 0, 0, fmt.Errorf("store: acked generation: %w", err)
	}
	return lowest.Int64, gateways, nil // NULL only when no row: 0, 0
}

// WaitApplied waits until every running gateway has applied generation gen,
// polling AckedGeneration every poll with since = now() - 2s. It
// returns applied=true once the lowest fresh acknowledgement reaches gen,
// and gateways, the number of gateways that count as running. It returns at
// once with false, 0 when no gateway acknowledged recently (none runs; each
// will load the change as it starts), and with false and the count once
// timeout has passed on now's clock. now is injected for tests; pass
// time.Now.
//
// A caller reads gen with Generation right after its change; a change by
// someone else in between only raises gen, which asks for more, never less.
func (s *Store) WaitApplied(ctx context.Context, gen int64, timeout, poll time.Duration,
	now func() time.Time) (applied bool, gateways int, err error) {
	deadline := now().Add(timeout)
	for {
		acked, n, err := s.AckedGeneration(ctx, now().Add(-ackFresh))
		switch {
		case err != nil:
			return false, 0, err
		case n == 0:
			return false, 0, nil
		case acked >= gen:
			return true, n, nil
		case !now().Before(deadline):
			return false, n, nil
		}
		if err := sleep(ctx, poll); err != nil {
			return false, n, err
		}
	}
}

// sleep waits d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
