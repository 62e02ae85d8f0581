package gateway

import "sync"

// registry holds the live sessions and client connections of one gateway.
// Each session has one entry, whatever its kind: enforcement, `ssh gw
// sessions`, `join` and reload revocation all look it up here.
type registry struct {
	mu       sync.Mutex
	sessions map[string]*liveSession
	conns    map[*clientConn]struct{}
}

func (r *registry) add(l *liveSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions = map[string]*liveSession{}
	}
	r.sessions[l.id] = l
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, id)
}

// matching returns the live sessions for which keep returns true.
func (r *registry) matching(keep func(*liveSession) bool) []*liveSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*liveSession
	for _, l := range r.sessions {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// all returns every live session.
func (r *registry) all() []*liveSession {
	return r.matching(func(*liveSession) bool { return true })
}

// sharedByID is the interactive session id (one others may join), or nil.
func (r *registry) sharedByID(id string) *liveSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.sessions[id]; l != nil && l.sess != nil {
		return l
	}
	return nil
}

// allShared returns the interactive sessions (those others may join).
func (r *registry) allShared() []*liveSession {
	return r.matching(func(l *liveSession) bool { return l.sess != nil })
}

func (r *registry) addConn(c *clientConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		r.conns = map[*clientConn]struct{}{}
	}
	r.conns[c] = struct{}{}
}

func (r *registry) removeConn(c *clientConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// connsMatching returns the registered connections for which keep is true.
func (r *registry) connsMatching(keep func(*clientConn) bool) []*clientConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*clientConn
	for c := range r.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func (r *registry) connsOf(person string) []*clientConn {
	return r.connsMatching(func(c *clientConn) bool { return c.person != nil && c.person.ID == person })
}

// EndAll ends every live session with msg shown to its participants.
func (s *Server) EndAll(msg string) {
	for _, l := range s.live.all() {
		l.end(msg)
	}
}

// LiveSessions is the number of sessions running now (registered: from
// just after their start event until their end event).
func (s *Server) LiveSessions() int {
	return len(s.live.all())
}
