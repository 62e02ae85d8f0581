package gateway

import (
	"sync"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// An interactive session's hooks run with the session's lock held
// (internal/session), and an audit append waits for an fsync: appending
// there would pause the output of every participant for each join, leave
// and state change, and hang the session for good on a hung disk. So the
// hooks hand their events to the session's auditQueue, which never blocks;
// one goroutine, running only while events are queued, appends them in
// order. Each event keeps the time its hook ran.
//
// Failures stay fail-closed as everywhere else: an append that fails is
// logged (Server.record), and a failed audit log ends every session
// (cli's watch of audit.Log.Failed). A queue that grows past auditQueueMax
// (an audit log too slow for the session) closes Full, and the session's
// loop ends the session. Past that mark events are still queued, not
// dropped: once the session ends only its remaining participants' leaves
// and its end follow, and every participant's join was audited before it
// joined (auditCommand), so the queue stays bounded.
type auditQueue struct {
	srv *Server

	mu      sync.Mutex
	events  []audit.Event
	running bool          // a drain goroutine runs
	idle    chan struct{} // closed when no drain runs and events is empty
	full    chan struct{} // closed once more than auditQueueMax events waited
	isFull  bool
}

const (
	// auditQueueMax is how many events may wait before the session is
	// ended. A healthy log appends in milliseconds and a session makes
	// a handful of events per join; 256 waiting means the log is stuck.
	auditQueueMax = 256
	// auditDrainWait bounds how long a session's handler waits at the
	// end for the queue, so that session.end follows the events before
	// it. Past it the handler returns and the queue, session.end last,
	// is appended when the log takes it.
	auditDrainWait = 10 * time.Second
)

func newAuditQueue(s *Server) *auditQueue {
	idle := make(chan struct{})
	close(idle)
	return &auditQueue{srv: s, idle: idle, full: make(chan struct{})}
}

// add queues e for the audit log without blocking. e.Time, when zero, is
// set to now: the time of the hook, not of the append.
func (q *auditQueue) add(e audit.Event) {
	if e.Time.IsZero() {
		e.Time = q.srv.now()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.events = append(q.events, e)
	if len(q.events) > auditQueueMax && !q.isFull {
		q.isFull = true
		close(q.full)
	}
	if !q.running {
		q.running = true
		q.idle = make(chan struct{})
		q.srv.wg.Add(1) // Serve returns after the queue is appended
		go q.drain()
	}
}

// drain appends queued events in order until none is left.
func (q *auditQueue) drain() {
	defer q.srv.wg.Done()
	for {
		q.mu.Lock()
		if len(q.events) == 0 {
			q.events = nil // a quiet session keeps no buffer
			q.running = false
			close(q.idle)
			q.mu.Unlock()
			return
		}
		e := q.events[0]
		clear(q.events[:1]) // the backing array keeps no appended event alive
		q.events = q.events[1:]
		q.mu.Unlock()
		q.srv.record(e)
	}
}

// Full is closed once the queue held more than auditQueueMax events.
func (q *auditQueue) Full() <-chan struct{} { return q.full }

// wait waits up to d until every event queued so far is appended (or its
// append failed), and reports whether they were.
func (q *auditQueue) wait(d time.Duration) bool {
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
