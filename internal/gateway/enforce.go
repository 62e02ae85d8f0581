package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/store"
)

// Enforcement from outside a session: a lock (M5), a revoked or expired
// access request (M8) and a reload that takes a right away (M2, M4, M6)
// end the sessions and close the connections they concern. Every path here
// returns without waiting on any client: sessions end through
// liveSession.end and connections close through closeTransport, both of
// which hand the talking to the client to a bounded goroutine. So one
// stuck client can never hold back enforcement for anybody else.

// evictFlush is how long an eviction lets the ended sessions say goodbye
// before it closes the person's connections. The connections close then
// whatever the client does; meanwhile every new channel on them is refused,
// since each one checks the lock first (clientConn.refresh).
const evictFlush = 300 * time.Millisecond

// refreshLocks loads the active locks and throws out every locked person,
// then does the same for freezes: both live in the store under one
// generation, so one poll applies whichever changed.
func (s *Server) refreshLocks(ctx context.Context) error {
	locks, err := s.store.Locks(ctx, s.now())
	if err != nil && !s.lockDown(err) {
		return err
	}
	if err == nil {
		s.liftLockDown()
	}
	s.locks.Store(&locks)
	for person, l := range locks {
		s.evict(person, fmt.Sprintf("%s was locked: %s", person, l.Reason))
	}
	return s.refreshFreezes(ctx)
}

// register adds a session about to reach its target to the registry. A
// lock that landed after the session was authorized but before it was
// registered found nothing to end: the lock is looked at again once the
// session is in the registry, so one of the two always sees the other.
// The same holds for a freeze, for a reload (the session was decided on
// an older configuration) and for a revoked request (read again by its
// id, as the watcher reads it).
func (s *Server) register(ctx context.Context, l *liveSession) {
	s.live.add(l)
	st := s.state.Load()
	if lock := s.lockReason(l.owner); lock != "" {
		l.end(fmt.Sprintf("%s was locked: %s", l.owner, lock))
	} else if why := s.frozenOut(st, l); why != "" {
		l.end(why) // a freeze that landed meanwhile, the same way
	} else if why, err := s.requestEnded(ctx, l.request); why != "" || err != nil {
		// A revocation between the decision and here ended nothing (l
		// was not registered yet), and the watcher's look at requests
		// after it may have come before too: read again, now that any
		// later revocation finds l. Unreadable: refused, as authorize
		// refuses it.
		if err != nil {
			why = "the access request cannot be read; try again, or tell the gateway's operators"
		}
		l.end(why)
	} else if st != l.conn.st {
		if why := s.stillAllowed(ctx, st, l, s.now()); why != "" {
			l.end(why)
		}
	}
}

// requestEnded says why request id (none: "") no longer allows a session:
// forged, gone, or not approved for now. err is a failure to read it.
func (s *Server) requestEnded(ctx context.Context, id string) (why string, err error) {
	if id == "" || s.store == nil {
		return "", nil
	}
	r, err := s.store.GetRequest(ctx, id)
	switch {
	case errors.Is(err, store.ErrForged):
		return err.Error(), nil
	case err != nil:
		return "", err
	case r == nil || !r.ActiveAt(s.now()):
		return fmt.Sprintf("request %s is no longer approved", id), nil
	}
	return "", nil
}

// sweepLocks throws out every locked person again. The watcher calls it on
// every poll, so whatever slipped past the other checks (a joiner who
// joined the moment the lock landed) is out within a poll.
func (s *Server) sweepLocks() {
	if why := s.lockdown.Load(); why != nil {
		s.evictAll(*why)
		return
	}
	m := s.locks.Load()
	if m == nil {
		return
	}
	now := s.now()
	for person, l := range *m {
		if !l.Active(now) {
			continue
		}
		if len(s.live.matching(func(x *liveSession) bool { return x.involves(person) })) > 0 ||
			len(s.live.connsOf(person)) > 0 {
			s.evict(person, fmt.Sprintf("%s was locked: %s", person, l.Reason))
		}
	}
}

// evict ends the sessions person owns, takes them out of the sessions they
// joined, and closes their connections after evictFlush. It returns at once.
func (s *Server) evict(person, msg string) {
	for _, l := range s.live.matching(func(l *liveSession) bool { return l.involves(person) }) {
		l.oust(person, msg)
	}
	s.closeLater(s.live.connsOf(person))
}

// closeLater closes the connections' transports after evictFlush.
func (s *Server) closeLater(conns []*clientConn) {
	if len(conns) == 0 {
		return
	}
	time.AfterFunc(evictFlush, func() {
		for _, c := range conns {
			c.closeTransport()
		}
	})
}

// endRequestSessions ends every live session running under request id.
func (s *Server) endRequestSessions(id, msg string) int {
	ls := s.live.matching(func(l *liveSession) bool { return l.request == id })
	for _, l := range ls {
		l.end(msg)
	}
	return len(ls)
}

// checkRequestSessions ends sessions whose request has expired or was
// revoked elsewhere (another gateway, the CLI). Called by the watcher.
func (s *Server) checkRequestSessions(ctx context.Context, reread bool) {
	now := s.now()
	for _, l := range s.live.matching(func(l *liveSession) bool { return l.request != "" }) {
		if !l.requestUntil.After(now) {
			if l.end(fmt.Sprintf("request %s expired at %s", l.request, l.requestUntil.UTC().Format("15:04:05 UTC"))) {
				s.record(audit.RequestExpiredEvent{Person: l.owner, Request: l.request, Session: l.id}.Event())
			}
			continue
		}
		if !reread || s.store == nil {
			continue
		}
		if why, _ := s.requestEnded(ctx, l.request); why != "" {
			l.end(why) // a read that fails is tried again next poll
		}
	}
}

// enforceConfig applies a new configuration to what is already running:
// connections of persons who were removed, or whose key was removed, close;
// every live session is decided again and ends when the policy no longer
// allows it (a role or grant removed, a host moved to a four-eyes
// environment, a FIDO2 requirement added); joiners who may no longer join
// are taken out.
func (s *Server) enforceConfig(ctx context.Context, st *state) {
	for _, c := range s.live.connsMatching(func(*clientConn) bool { return true }) {
		p := st.cfg.Person(c.person.ID)
		switch {
		case p == nil:
			s.evict(c.person.ID, c.person.ID+" was removed from the configuration")
		case keyByFingerprint(p, c.keyFP) == nil:
			msg := fmt.Sprintf("the key %s was removed from %s", c.keyFP, c.person.ID)
			root := c.root().conn
			for _, l := range s.live.matching(func(l *liveSession) bool { return l.conn.root().conn == root }) {
				l.end(msg)
			}
			s.closeLater([]*clientConn{c})
		}
	}
	now := s.now()
	for _, l := range s.live.all() {
		if reason := s.stillAllowed(ctx, st, l, now); reason != "" {
			l.end(reason)
			continue
		}
		if l.sess != nil {
			s.recheckJoiners(st, l, now)
		}
	}
}

// stillAllowed decides a running session again under st. It returns why
// the session must end, or "" when it may go on.
func (s *Server) stillAllowed(ctx context.Context, st *state, l *liveSession, now time.Time) string {
	p := st.cfg.Person(l.owner)
	if p == nil {
		return l.owner + " was removed from the configuration"
	}
	k := keyByFingerprint(p, l.keyFP)
	if k == nil {
		return fmt.Sprintf("the key %s was removed from %s", l.keyFP, l.owner)
	}
	h := st.cfg.Host(l.host.Name)
	if h == nil {
		return fmt.Sprintf("host %s was removed from the configuration", l.host.Name)
	}
	d := st.engine.Authorize(policy.Request{Person: p, Key: k, Host: h, Login: l.login, Action: l.action, PTY: l.pty,
		ForwardTo: l.forwardTo, Now: now, Lock: s.lockReason(p.ID), Requests: s.requestWindows(ctx, p.ID, now), Freezes: s.freezesNow()})
	switch {
	case d.Verdict == policy.Allow && l.action == policy.ActionSFTP && !l.readOnly && st.engine.SFTPReadOnly(p, h, l.login):
		return fmt.Sprintf("%s on %s is now granted by sftp_read_only rules only, and this sftp session may write; open a new one", l.login, h.Name)
	case d.Verdict == policy.Allow:
		return ""
	case d.Verdict == policy.NeedsSecondPerson && l.fourEyes:
		return ""
	case d.Verdict == policy.NeedsSecondPerson:
		return fmt.Sprintf("%s now needs a second person for interactive work (four-eyes); open a new session and ask a colleague to join", h.Name)
	default:
		return "the configuration no longer allows this session: " + d.Reason
	}
}

// recheckJoiners takes out of a shared session every joiner whom st no
// longer lets join it in their mode or with the key they joined with, or
// lets join only as an external where they joined as an employee.
func (s *Server) recheckJoiners(st *state, l *liveSession, now time.Time) {
	h := st.cfg.Host(l.host.Name)
	for _, part := range l.sess.Participants() {
		if part.Person == l.owner {
			continue
		}
		p := st.cfg.Person(part.Person)
		if p == nil {
			// A local joiner was evicted with their connections above; one
			// who joined through another node has no connection here.
			l.sess.Remove(part.Person, part.Person+" was removed from the configuration")
			continue
		}
		fp := l.joinerKeyFP(part.Person)
		k := keyByFingerprint(p, fp)
		if k == nil {
			// The key they joined with is gone. Their connection closes
			// after evictFlush (a relayed joiner's, when their node
			// reloads); they stop counting as the second person now. The
			// policy would take a missing key as nothing to check.
			l.sess.Remove(part.Person, fmt.Sprintf("the key %s was removed from %s", fp, part.Person))
			continue
		}
		d := st.engine.Join(policy.JoinRequest{Person: p, Key: k, Owner: l.owner, Host: h,
			Mode: string(part.Mode), Now: now, Lock: s.lockReason(p.ID), Freezes: s.freezesNow()})
		switch {
		case d.Verdict != policy.Allow:
			l.sess.Remove(part.Person, "the configuration no longer lets "+part.Person+" join: "+d.Reason)
		case d.External && !part.External:
			// They joined as an employee and counted as the second
			// person; as an external they never may (M7). Out, so that
			// the session pauses; they may join again as external.
			l.sess.Remove(part.Person, part.Person+" is now an external expert and may join only as one")
		}
	}
}
