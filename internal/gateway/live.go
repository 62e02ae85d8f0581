package gateway

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/session"
)

// liveSession is a running session that the gateway may have to end from
// outside: a lock, a revoked approval, a failed audit log.
type liveSession struct {
	id     string
	person string
	host   string
	ch     ssh.Channel
	eol    string

	// request is the access request the session runs under, if any, and
	// when it runs out.
	request      string
	requestUntil time.Time
	// rec is the session's recording (exec and sftp sessions).
	rec *record.Writer
	// shared is the session's participants and state, for interactive
	// sessions; nil for exec and sftp.
	shared *session.Session

	mu       sync.Mutex
	upstream io.Closer // the target connection, set once connected
	ended    bool
	done     chan struct{} // closed when the session's handler has finished
}

// end tells the client why and tears the session down; the relay then
// finishes and the handler records session.end.
func (l *liveSession) end(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	if l.shared != nil {
		l.shared.End("", msg) // tells every participant
	} else {
		fmt.Fprintf(l.ch.Stderr(), "%standem: %s%s", l.eol, msg, l.eol)
	}
	if l.upstream != nil {
		l.upstream.Close()
	}
	l.ch.Close()
}

func (l *liveSession) setUpstream(c io.Closer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.upstream = c
	return !l.ended
}

// involves reports whether person owns or takes part in the session.
func (l *liveSession) involves(person string) bool {
	if l.person == person {
		return true
	}
	if l.shared != nil {
		for _, p := range l.shared.Participants() {
			if p.Person == person {
				return true
			}
		}
	}
	return false
}

// registry holds the live sessions and client connections of one gateway.
type registry struct {
	mu       sync.Mutex
	sessions map[string]*liveSession
	shared   map[string]*sharedSession
	conns    map[*clientConn]struct{}
}

func (r *registry) addShared(id string, s *sharedSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shared == nil {
		r.shared = map[string]*sharedSession{}
	}
	r.shared[id] = s
}

func (r *registry) removeShared(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.shared, id)
}

func (r *registry) sharedByID(id string) *sharedSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shared[id]
}

func (r *registry) allShared() []*sharedSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*sharedSession, 0, len(r.shared))
	for _, s := range r.shared {
		out = append(out, s)
	}
	return out
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

func (r *registry) connsOf(person string) []*clientConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*clientConn
	for c := range r.conns {
		if c.person != nil && c.person.ID == person {
			out = append(out, c)
		}
	}
	return out
}

func (r *registry) add(l *liveSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l.done = make(chan struct{})
	if r.sessions == nil {
		r.sessions = map[string]*liveSession{}
	}
	r.sessions[l.id] = l
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.sessions[id]; ok {
		close(l.done)
		delete(r.sessions, id)
	}
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

// EndAll ends every live session with msg shown to its participants.
func (s *Server) EndAll(msg string) {
	for _, l := range s.live.matching(func(*liveSession) bool { return true }) {
		l.end(msg)
	}
}

// LiveSessions is the number of sessions currently connected to targets.
func (s *Server) LiveSessions() int {
	return len(s.live.matching(func(*liveSession) bool { return true }))
}
