package gateway

import (
	"context"
	"encoding/json"
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

// watchLocks keeps the lock table current and ends the sessions and
// connections of locked persons. It ends with ctx.
func (s *Server) watchLocks(ctx context.Context) {
	if s.store == nil {
		return
	}
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	last := int64(-1)
	for {
		gen, err := s.store.Generation(ctx)
		if ctx.Err() != nil {
			return // the gateway stops; nothing to report
		}
		changed := err == nil && gen != last
		if err != nil {
			s.failed(ctx, "lock store unreadable", err)
		} else if changed {
			if err := s.refreshLocks(ctx); err != nil {
				s.failed(ctx, "lock store unreadable", err)
			} else {
				last = gen
			}
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
