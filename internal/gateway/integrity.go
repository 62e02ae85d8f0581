package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// The local state cannot be edited into access (M5, M8): the store seals
// requests, approvals and locks, and reports what fails its check. A
// forged request or approval is simply not there for granting; a lock
// table that fails its check puts the gateway in lock-down, since the lock
// that went missing could be anybody's.

// ReportForgery returns the store's reporter for a gateway: each forged
// row is logged and appended to the audit log as state.forged, once per
// row (the store deduplicates).
func ReportForgery(sink audit.Sink, log *slog.Logger) func(store.Forgery) {
	return func(f store.Forgery) {
		log.Error("state integrity check failed; the row is not honoured", "table", f.Table, "row", f.Row, "what", f.What)
		ev := audit.StateForgedEvent{Time: time.Now().UTC(), Table: f.Table, Row: f.Row, What: f.What}
		switch f.Table {
		case "requests":
			ev.Request = f.Row
		case "locks":
			if f.Row != "*" {
				ev.Person = f.Row
			}
		}
		// The store reports from whatever read found the row, without a
		// context to hand on; the row is refused whether or not this is stored.
		audit.BestEffort(context.Background(), sink, log, ev.Event())
	}
}

// lockDown handles an error of the lock store: a forged lock table puts the
// gateway in lock-down (everybody counts as locked, their sessions end)
// and lockDown reports true; any other error is left to the caller. A
// clean read lifts the lock-down.
func (s *Server) lockDown(err error) bool {
	var f *store.Forgery
	if !errors.As(err, &f) {
		return false
	}
	why := "the gateway's lock table failed its integrity check, so every person counts as locked " +
		"until an operator has reviewed the locks; tell the gateway's operators"
	if s.lockdown.Swap(&why) == nil {
		s.log.Error("lock table failed its integrity check: every person counts as locked; "+
			"review with `tandem locks` and re-seal with `tandem locks --reseal`", "err", err)
	}
	s.evictAll(why)
	return true
}

// liftLockDown ends a lock-down after the lock table read clean.
func (s *Server) liftLockDown() {
	if s.lockdown.Swap(nil) != nil {
		s.log.Info("lock table passes its integrity check again: lock-down lifted")
	}
}

// evictAll throws out every person connected.
func (s *Server) evictAll(msg string) {
	seen := map[string]bool{}
	for _, c := range s.live.connsMatching(func(c *clientConn) bool { return c.person != nil }) {
		if !seen[c.person.ID] {
			seen[c.person.ID] = true
			s.evict(c.person.ID, msg)
		}
	}
}

// forgedNote tells a refused person about their requests that would have
// been active but failed their integrity check; "" when there are none.
func (s *Server) forgedNote(ctx context.Context, person string, now time.Time) string {
	if s.store == nil {
		return ""
	}
	_, err := s.store.ActiveRequests(ctx, person, now)
	if !errors.Is(err, store.ErrForged) {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(&b, "\n  %s", line)
	}
	return b.String()
}
