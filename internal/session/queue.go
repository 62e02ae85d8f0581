package session

import "sync"

// outQueue is one participant's bounded output queue. The fan-out appends
// to it without ever blocking; a drain goroutine moves its contents to the
// participant's Terminal, where writes may block on a slow client. The bound
// is what keeps one stuck participant from stalling the others (and from
// holding unbounded memory): a push that would exceed it fails, and the
// session drops that participant.
type outQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	limit  int
	closed bool // no more pushes; drain what is queued, then stop
	dead   bool // the terminal is gone; discard everything
}

func newOutQueue(limit int) *outQueue {
	q := &outQueue{limit: limit}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends p. It reports false, queueing nothing, if that would take the
// queue more than slack bytes past its limit (slack < 0: no limit). Pushes
// after close or kill are ignored (true).
func (q *outQueue) push(p []byte, slack int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.dead {
		return true
	}
	if slack >= 0 && len(q.buf)+len(p) > q.limit+slack {
		return false
	}
	q.buf = append(q.buf, p...)
	q.cond.Broadcast()
	return true
}

// close lets the drain goroutine finish once what is queued is written.
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// kill discards what is queued and stops the drain goroutine after its
// current write.
func (q *outQueue) kill() {
	q.mu.Lock()
	q.dead = true
	q.buf = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}

// next blocks until there is something to write and returns it, or returns
// nil when the queue is closed and empty, or killed.
func (q *outQueue) next() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.buf) == 0 && !q.closed && !q.dead {
		q.cond.Wait()
	}
	if q.dead || len(q.buf) == 0 {
		return nil
	}
	b := q.buf
	q.buf = nil
	q.cond.Broadcast() // room for waitRoom
	return b
}

// waitRoom blocks until n more bytes fit under the limit (or the queue is
// empty, for a chunk larger than the limit), or the queue is closed or
// killed. It paces the target to the owner's connection.
func (q *outQueue) waitRoom(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.buf) > 0 && len(q.buf)+n > q.limit && !q.closed && !q.dead {
		q.cond.Wait()
	}
}
