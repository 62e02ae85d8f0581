package gateway

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
)

// endGrace bounds how long a session ended from outside may take to say
// goodbye (its notice, exit status and CLOSE) before the gateway closes the
// client's whole connection instead. A client that does not read its
// channel cannot make enforcement wait longer than this (M5).
const endGrace = 300 * time.Millisecond

// liveSession is a running session that the gateway may have to end from
// outside: a lock, a revoked or expired request, a reload that took the
// grant away, a failed recording or audit log. It keeps what a later
// decision needs to ask the policy again.
type liveSession struct {
	id     string
	person string
	keyFP  string // the key the owner authenticated with
	host   string
	login  string
	action policy.Action
	pty    bool
	// forwardTo is the destination of a port forward ("host:port").
	forwardTo string
	// fourEyes: the session started with a second person required.
	fourEyes bool
	conn     *clientConn // the connection the session runs on
	ch       ssh.Channel
	eol      string

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
	reason   string        // why it was ended from outside
	done     chan struct{} // closed when the session's handler has finished
}

// end ends the session and returns at once: it never waits on the client
// (M5: nothing a client does can hold back enforcement). An interactive
// session ends for its participants now (their notice is queued) and its
// target connection closes. An exec, sftp or forward session says why on
// the client's stderr first and then closes its target connection and
// channel, from a short-lived goroutine, so the notice goes out before the
// relay winds the channel down. If that goroutine has not finished within
// endGrace (the client does not read, or its TCP window is shut), the
// target connection and the client's whole connection are closed, which
// ends the goroutine too.
//
// It reports whether it ended the session (false: it had ended already).
func (l *liveSession) end(msg string) bool {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false
	}
	l.ended, l.reason = true, msg
	up := l.upstream
	l.mu.Unlock()
	closeUp := func() {
		if up != nil {
			up.Close()
		}
	}
	if l.shared != nil {
		// Queues the notice for every participant; never blocks on one.
		l.shared.End("", msg)
		closeUp()
	}
	said := make(chan struct{})
	go func() {
		defer close(said)
		if l.shared == nil {
			fmt.Fprintf(l.ch.Stderr(), "%standem: %s%s", l.eol, safetext.Line(msg), l.eol)
			closeUp()
		}
		_ = l.ch.Close()
	}()
	time.AfterFunc(endGrace, func() {
		select {
		case <-said:
		default:
			closeUp()
			l.conn.closeTransport()
		}
	})
	return true
}

// endReason is why the session was ended from outside; "" when it was not.
func (l *liveSession) endReason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

// setUpstream hands the session its target connection; false means the
// session was ended meanwhile and the caller must not go on.
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

// oust takes person out of the session: the owner's session ends; a
// joiner is removed and the session goes on (paused, if they were the
// second person). Never blocks on a client.
func (l *liveSession) oust(person, msg string) {
	if l.person == person || l.shared == nil {
		l.end(msg)
		return
	}
	l.shared.Remove(person, msg)
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
