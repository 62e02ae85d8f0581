package monitoring

import (
	"context"
	"sync"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// Sink wraps the audit log: every decision of the gateway is an audit
// event, so the counts of logins, refusals, blocks, four-eyes waits and
// enforcement are read off the events as they pass, and the append itself
// is timed. The events go on to next unchanged; what the wrapper keeps
// (session ids, the owner of each live session) lives in memory only and
// leaves with the session.
func (m *Metrics) Sink(next audit.Sink) audit.Sink {
	return &sink{m: m, next: next, now: time.Now, tr: newTracker()}
}

type sink struct {
	m    *Metrics
	next audit.Sink
	now  func() time.Time
	tr   *tracker
}

func (s *sink) Append(ctx context.Context, e audit.Event) error {
	s.observe(e)
	s.m.auditInFlight.Inc()
	start := s.now()
	err := s.next.Append(ctx, e)
	s.m.auditLatency.Observe(s.now().Sub(start).Seconds())
	s.m.auditInFlight.Dec()
	if err != nil {
		s.m.auditErrors.Inc()
	}
	return err
}

// observe counts what e says happened.
func (s *sink) observe(e audit.Event) {
	at := e.Time
	if at.IsZero() {
		at = s.now()
	}
	switch e.Type {
	case audit.AuthSuccess:
		s.m.authSuccesses.Inc()
	case audit.AuthFailure:
		s.m.authFailures.WithLabelValues(oneOf(e.Attrs["stage"], "kex", "auth", "proxy")).Inc()
	case audit.AuthBlocked:
		s.m.authBlocks.WithLabelValues(oneOf(e.Attrs["scope"], "source", "person")).Inc()
	case audit.SessionDenied, audit.ForwardDenied, audit.ChannelLimited:
		s.m.refusals.WithLabelValues(refusalCode(e)).Inc()
	case audit.KeyDestroyed, audit.RetentionExtended, audit.RetentionHold, audit.RetentionReleased:
		// The retention job's actions reach the log through here, from
		// serve's own loop and from `tandem retention run` via the outbox.
		s.m.RetentionAction(retentionAction(e), 1)
	default:
		s.track(e, at)
	}
}

// track follows sessions from start to end for the four-eyes waits and
// the enforcement lag.
func (s *sink) track(e audit.Event, at time.Time) {
	switch e.Type {
	case audit.SessionStart, audit.ForwardStart:
		s.tr.started(e.Session, e.Person)
	case audit.SessionWaiting:
		s.tr.waiting(e.Session, at)
	case audit.SessionLive:
		if d, ok := s.tr.waited(e.Session, at); ok {
			s.m.fourEyesWait.WithLabelValues("joined").Observe(d.Seconds())
		}
	case audit.SessionEnd, audit.ForwardEnd:
		if d, ok := s.tr.waited(e.Session, at); ok {
			s.m.fourEyesWait.WithLabelValues("gave_up").Observe(d.Seconds())
		}
		if lag, ok := s.tr.ended(e.Session, at); ok {
			s.m.enforcementLag.Observe(lag.Seconds())
		}
	case audit.Lock:
		if lag, ok := s.tr.locked(e.Person, at); ok {
			s.m.enforcementLag.Observe(lag.Seconds())
		}
	}
}

// retentionAction is the retention metric's label for e: which class a
// key was destroyed of, or what was done to retention.
func retentionAction(e audit.Event) string {
	switch e.Type {
	case audit.KeyDestroyed:
		return "key_destroyed_" + oneOf(e.Attrs["class"], "admin", "operational", "content", "sealed")
	case audit.RetentionExtended:
		return "extended"
	case audit.RetentionHold:
		return "hold_placed"
	}
	return "hold_released"
}

// refusalCode is a bounded reason for a refusal: the policy's verdict,
// the cap that refused it, or the kind of what was refused.
func refusalCode(e audit.Event) string {
	if v := e.Attrs["verdict"]; v != "" {
		return oneOf(v, "deny", "needs-second-person", "needs-approval")
	}
	switch e.Type {
	case audit.ChannelLimited:
		return "channel_limit"
	case audit.ForwardDenied:
		return "forward_unsupported" // x11, agent, remote forwarding: never offered
	}
	switch r := e.Attrs["reason"]; r {
	case "channels_per_connection", "waiting_per_person":
		return r
	case "unknown host":
		return "unknown_host"
	}
	// The person may not work now (locked, removed, key expired,
	// obligations lapsed), or the data disk is full.
	return "not_permitted_now"
}

// oneOf returns v when it is one of the allowed values, else "other".
func oneOf(v string, allowed ...string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return "other"
}

// tracker is the sessions' state the metrics need between events.
type tracker struct {
	mu       sync.Mutex
	owner    map[string]string    // live session → its owner
	live     map[string]int       // owner → live sessions
	since    map[string]time.Time // session → when it began to wait
	lockTime map[string]time.Time // owner with live sessions → when they were locked
	lastEnd  map[string]time.Time // owner → when their last session ended, for a lock audited after the ends
}

func newTracker() *tracker {
	return &tracker{owner: map[string]string{}, live: map[string]int{}, since: map[string]time.Time{},
		lockTime: map[string]time.Time{}, lastEnd: map[string]time.Time{}}
}

func (t *tracker) started(session, person string) {
	if session == "" || person == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.owner[session] = person
	t.live[person]++
}

func (t *tracker) waiting(session string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.owner[session]; ok {
		t.since[session] = at
	}
}

// waited ends session's wait and returns how long it was.
func (t *tracker) waited(session string, at time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	since, ok := t.since[session]
	delete(t.since, session)
	return max(0, at.Sub(since)), ok
}

// ended forgets session; when it was the last of a locked owner, it
// returns the time from the lock to now.
func (t *tracker) ended(session string, at time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	person, ok := t.owner[session]
	if !ok {
		return 0, false
	}
	delete(t.owner, session)
	if t.live[person]--; t.live[person] > 0 {
		return 0, false
	}
	delete(t.live, person)
	t.forgetOldEnds(at)
	t.lastEnd[person] = at
	lockedAt, ok := t.lockTime[person]
	delete(t.lockTime, person)
	return max(0, at.Sub(lockedAt)), ok
}

// locked notes person's lock made at. With sessions still live, the lag
// is measured when the last ends; with none, it is the time to the last
// end if that came after the lock (the ends were audited first), and
// nothing when the lock found no session to end.
func (t *tracker) locked(person string, at time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live[person] > 0 {
		t.lockTime[person] = at
		return 0, false
	}
	end, ok := t.lastEnd[person]
	delete(t.lastEnd, person)
	if !ok || end.Before(at) {
		return 0, false
	}
	return end.Sub(at), true
}

// lockAuditWindow bounds how long a session's end is remembered for a
// lock event that follows it: the gateway audits a lock within its next
// poll of the store, a fraction of a second after it ended the sessions.
const lockAuditWindow = time.Minute

func (t *tracker) forgetOldEnds(now time.Time) {
	for p, end := range t.lastEnd {
		if now.Sub(end) > lockAuditWindow {
			delete(t.lastEnd, p)
		}
	}
}
