package gateway

// Metrics receives the counts only the gateway sees: connections taken
// and turned away before any audit event, and sessions with the bytes
// their recordings hold. The calls run on the accept loop and on session
// paths, so an implementation must only count, never block. Everything
// else that is measured is read off the audit events (the monitoring
// package wraps the audit sink) or, when scraped, from the methods below.
type Metrics interface {
	ConnectionAccepted()
	// ConnectionRefused: reason is "max_connections" or the rate
	// limiter's reason; ratelimit.ReasonEvicted for an admitted
	// connection that a newcomer took the slot of.
	ConnectionRefused(reason string)
	// SessionStarted and SessionEnded: kind is the recording's kind
	// (pty, exec, sftp, forward); recorded the bytes of its content.
	SessionStarted(kind string)
	SessionEnded(kind string, recorded int64)
}

// noMetrics is the default: nothing is counted.
type noMetrics struct{}

func (noMetrics) ConnectionAccepted()        {}
func (noMetrics) ConnectionRefused(string)   {}
func (noMetrics) SessionStarted(string)      {}
func (noMetrics) SessionEnded(string, int64) {}

// OpenConnections is the number of client connections the gateway holds
// now: authenticated ones and those still in their handshake.
func (s *Server) OpenConnections() int { return len(s.conns) }

// Preauth is the number of connections holding a slot before
// authentication and of newcomers waiting for one (ratelimit.Limiter.Park).
func (s *Server) Preauth() (unauthenticated, waiting int) {
	return s.limit.Unauthenticated(), s.limit.Parked()
}

// EachSession calls f with the kind (pty, exec, sftp, forward) and state
// of every live session; a session others may join reports its four-eyes
// state (waiting, live, paused), any other "live". f runs after the
// registry's lock is released.
func (s *Server) EachSession(f func(kind, state string)) {
	for _, l := range s.live.all() {
		state := "live"
		if l.sess != nil {
			state = string(l.sess.State())
		}
		f(string(l.kind), state)
	}
}
