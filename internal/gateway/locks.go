package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// lockPoll is how often the gateway looks for lock changes made by other
// processes (the CLI, another gateway). It keeps M5's "within a second".
const lockPoll = 200 * time.Millisecond

// lockReason returns why person is locked, or "" when they are not.
func (s *Server) lockReason(person string) string {
	if why := s.lockdown.Load(); why != nil {
		return *why
	}
	m := s.locks.Load()
	if m == nil {
		return ""
	}
	l, ok := (*m)[person]
	if !ok || !l.Active(s.now()) {
		return ""
	}
	if l.Reason == "" {
		return "locked by " + l.By
	}
	return l.Reason
}

// storeTimeout bounds one poll's work on the store, so that a store that
// hangs (a network cut without a reset) is noticed as down within it.
const storeTimeout = 5 * time.Second

// storeStale is how long the store may go without answering a poll before
// new sessions are refused even though no poll has failed yet (one is
// still waiting).
const storeStale = 3 * storeTimeout

// watchLocks keeps the lock table current and ends the sessions and
// connections of locked persons. It polls every lockPoll, and at once when
// the store announces a change (PostgreSQL's NOTIFY, from any gateway or
// CLI sharing the database). It ends with ctx, and so does the listener it
// starts.
func (s *Server) watchLocks(ctx context.Context) {
	if s.store == nil {
		return
	}
	s.storeBack()
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	changes := s.store.Changes(ctx) // nil on SQLite: the poll alone
	last := int64(-1)
	for {
		pctx, cancel := context.WithTimeout(ctx, storeTimeout)
		last = s.poll(pctx, last)
		cancel()
		if ctx.Err() != nil {
			return // the gateway stops; nothing to report
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changes:
		}
	}
}

// poll is one round of the watcher: it reloads the locks when the
// generation moved (last is the one applied before; it returns the one
// applied now), acknowledges, and enforces.
func (s *Server) poll(ctx context.Context, last int64) int64 {
	gen, err := s.store.Generation(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return last // the gateway stops
	}
	changed := err == nil && gen != last
	if err != nil {
		s.storeFailed(err)
		s.failed(ctx, "lock store unreadable", err)
	} else if changed {
		if err := s.refreshLocks(ctx); err != nil {
			s.storeFailed(err)
			s.failed(ctx, "lock store unreadable", err)
		} else {
			last = gen
			s.storeBack()
		}
	} else {
		s.storeBack()
	}
	if last >= 0 {
		// Tell processes that changed a lock (`tandem lock`) that it is
		// in force here: locks reloaded, locked persons thrown out.
		if err := s.store.AckGeneration(ctx, s.name, last, s.now()); err != nil {
			s.failed(ctx, "lock store: acknowledge", err)
		}
	}
	s.sweepLocks()
	s.enforceFreezes()
	s.applyUnblocks(ctx)
	s.checkRequestSessions(ctx, changed)
	s.auditLockEvents(ctx)
	s.drainOutbox(ctx)
	return last
}

// storeFailed notes that the store did not answer, for storeRefusal.
func (s *Server) storeFailed(err error) {
	why := "it does not answer"
	if errors.Is(err, store.ErrUnavailable) {
		why = "PostgreSQL is unavailable"
	}
	if prev := s.storeDown.Swap(&why); prev == nil {
		s.log.Error("state store unavailable: new sessions and joins are refused until it is back; live sessions go on",
			"err", err)
	}
}

// storeBack notes a poll the store answered. The time is the machine's
// monotonic clock, not s.now: a test clock moved by days must not make
// the store look silent.
func (s *Server) storeBack() {
	now := time.Now()
	s.storeOK.Store(&now)
	if prev := s.storeDown.Swap(nil); prev != nil {
		s.log.Info("state store reachable again: locks reloaded, new sessions accepted")
	}
}

// storeRefusal is why a new session or join is refused because the state
// store cannot be read, or "". Locks, freezes and requests made on any
// gateway live there: without it this gateway cannot know whether the
// person was locked a moment ago, so it starts nothing new (fail closed),
// while the sessions already running go on.
func (s *Server) storeRefusal() string {
	if s.store == nil {
		return ""
	}
	why := s.storeDown.Load()
	if why == nil {
		if ok := s.storeOK.Load(); ok == nil || time.Since(*ok) < storeStale {
			return ""
		}
		w := "it has not answered for " + storeStale.String()
		why = &w
	}
	return "the gateway cannot read its state store (" + *why + "), so it cannot check locks and approvals: " +
		"no new session or join can start until the store is back; sessions already running go on"
}

// auditLockEvents moves lock and unlock events from the store into the
// audit log. An event is marked only after the log took it; a crash in
// between writes it twice, never loses it.
func (s *Server) auditLockEvents(ctx context.Context) {
	evs, err := s.store.PendingLockEvents(ctx)
	if err != nil || len(evs) == 0 {
		return
	}
	for _, e := range evs {
		if err := audit.OrRefuse(ctx, s.audit, lockEvent(e)); err != nil {
			s.failed(ctx, "audit log refuses lock event", err)
			return
		}
		if err := s.store.MarkLockEventAudited(ctx, e.ID); err != nil {
			s.failed(ctx, "lock store", err)
			return
		}
	}
}

// lockEvent is the audit event of a lock event of the store.
func lockEvent(e store.LockEvent) audit.Event {
	if e.Kind == "unlock" {
		return audit.UnlockEvent{Time: e.At, Person: e.Person, By: e.Actor, Reason: e.Reason}.Event()
	}
	return audit.LockEvent{Time: e.At, Person: e.Person, By: e.Actor, Reason: e.Reason, Until: e.Until}.Event()
}

// drainOutbox appends events that other processes (the local CLI) queued
// in the store; the gateway is the audit log's only writer.
func (s *Server) drainOutbox(ctx context.Context) {
	es, err := s.store.PendingAudit(ctx)
	if err != nil || len(es) == 0 {
		return
	}
	for _, e := range es {
		var ev audit.Event
		if err := json.Unmarshal(e.Event, &ev); err != nil {
			ev = audit.OutboxInvalidEvent{Error: err.Error()}.Event()
		}
		if ev.Time.IsZero() {
			ev.Time = e.At
		}
		if err := audit.OrRefuse(ctx, s.audit, ev); err != nil {
			s.failed(ctx, "audit log refuses queued event", err)
			return
		}
		if err := s.store.MarkAudited(ctx, e.ID); err != nil {
			s.failed(ctx, "state store", err)
			return
		}
	}
}

// failed logs an error of work done for ctx. Once ctx has ended the
// gateway (or the connection) is stopping and cut the work short on
// purpose: that is no error, and the line goes to Debug. The work is
// picked up again on the next start (events stay queued until marked).
func (s *Server) failed(ctx context.Context, msg string, err error) {
	if ctx.Err() != nil {
		s.log.Debug(msg, "err", err, "stopping", true)
		return
	}
	s.log.Error(msg, "err", err)
}

// lockPerson locks person at once on behalf of by (a gateway command).
func (s *Server) lockPerson(ctx context.Context, person, by, reason string, until time.Time) error {
	if s.store == nil {
		return errNoStore
	}
	if err := s.store.Lock(ctx, store.Lock{Person: person, Reason: reason, By: by, Created: s.now(), Until: until}); err != nil {
		return err
	}
	return s.refreshLocks(ctx)
}
