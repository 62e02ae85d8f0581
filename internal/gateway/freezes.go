package gateway

import (
	"context"
	"errors"

	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/store"
)

// Freezes (M27): after a security finding a host, a tenant's hosts or the
// hosts with a label are switched off. They live in the store next to the
// locks, under the same generation, so the lock watcher loads them within
// a poll (refreshLocks) and ends what they no longer allow. Each policy
// call gets them (Authorize, Join, MayJump), and a session that registers
// after a freeze landed is ended at once (register), as for locks.

// forgedFreezes is what a gateway puts in force when the freeze table
// fails its integrity check: the freeze that went missing could be any
// host's, so every host counts as frozen (fail closed), and only incident
// sessions under four-eyes go on, until an operator re-seals the table.
var forgedFreezes = []policy.Freeze{{ID: "*", Kind: policy.FreezeAll,
	Reason: "the gateway's freeze table failed its integrity check, so every host counts as frozen " +
		"until an operator has reviewed the freezes; tell the gateway's operators"}}

// freezesNow returns the freezes in force.
func (s *Server) freezesNow() []policy.Freeze {
	if p := s.freezes.Load(); p != nil {
		return *p
	}
	return nil
}

// refreshFreezes loads the freezes in force and ends the sessions they no
// longer allow.
func (s *Server) refreshFreezes(ctx context.Context) error {
	fs, err := InForce(s.store.Freezes(ctx))
	if err != nil && !errors.Is(err, store.ErrForged) {
		return err
	}
	if err != nil && !forgedNow(s.freezesNow()) {
		s.log.Error("freeze table failed its integrity check: every host counts as frozen; "+
			"review with `tandem freezes` and re-seal with `tandem freezes --reseal`", "err", err)
	}
	s.freezes.Store(&fs)
	s.enforceFreezes()
	return nil
}

// InForce turns the store's freezes into the policy's: the active ones,
// or, when the table failed its integrity check (the error wraps
// store.ErrForged, and is returned), every host frozen. Any other error
// is returned with no freezes.
func InForce(fs []store.Freeze, err error) ([]policy.Freeze, error) {
	if errors.Is(err, store.ErrForged) {
		return forgedFreezes, err
	}
	if err != nil {
		return nil, err
	}
	active := make([]policy.Freeze, 0, len(fs))
	for _, f := range fs {
		if f.Active() {
			active = append(active, policy.Freeze{ID: f.ID, Kind: f.Kind, Value: f.Value, Reason: f.Reason})
		}
	}
	return active, nil
}

func forgedNow(fs []policy.Freeze) bool { return len(fs) == 1 && fs[0].Kind == policy.FreezeAll }

// enforceFreezes ends every live session on a frozen host that is not an
// incident session. The watcher calls it on every poll too, so a session
// that slipped past the other checks ends within a poll. It returns at
// once (liveSession.end never waits on a client).
func (s *Server) enforceFreezes() {
	if len(s.freezesNow()) == 0 {
		return
	}
	st := s.state.Load()
	for _, l := range s.live.all() {
		if why := s.frozenOut(st, l); why != "" {
			l.end(why)
		}
	}
}

// frozenOut returns why the freezes end l, or "" when they do not: its
// host (as configured now) is not frozen, or l is an incident session.
func (s *Server) frozenOut(st *state, l *liveSession) string {
	fs := s.freezesNow()
	if len(fs) == 0 || st == nil {
		return ""
	}
	h := st.cfg.Host(l.host.Name)
	if h == nil {
		h = l.host
	}
	return st.engine.SurvivesFreeze(st.cfg.Person(l.owner), h, l.fourEyes && l.sess != nil, fs)
}
