package session

import (
	"io"
	"sync"
	"time"
)

// outQueue is one participant's bounded output queue. The fan-out appends
// to it without ever blocking; a drain goroutine moves its contents to the
// participant's Terminal, where writes may block on a slow client. The bound
// is what keeps one stuck participant from stalling the others (and from
// holding unbounded memory): a push that would exceed it fails, and the
// session drops that participant.
//
// The drain goroutine runs only while there is something to write: a push
// that finds the queue idle starts one, and it exits as soon as it finds the
// queue empty. An idle session (a shell at its prompt) thus holds no drain
// goroutine and no stack for it, which at a thousand sessions is several
// MiB. Whether a drainer runs is decided under mu, so there is never more
// than one per queue (writes to the Terminal stay ordered and never
// concurrent) and a push can never be left behind by a drainer that is just
// exiting. The invariant is: while the queue is neither dead nor empty, a
// drainer runs.
type outQueue struct {
	w     io.Writer // the participant's Terminal
	fail  func()    // called by the drainer after a failed write, once the queue is killed
	limit int

	mu      sync.Mutex
	room    *sync.Cond // signalled when the drainer takes what is queued, and on close/kill
	buf     []byte
	closed  bool // no more pushes; drain what is queued, then finish
	dead    bool // the terminal is gone; discard everything
	running bool // a drainer goroutine runs (or is about to)
	drains  int  // drainers started so far; for tests
	done    chan struct{}
	doneSet bool // done is closed
}

// newOutQueue returns an empty, idle queue that writes to w. When a write to
// w fails the queue is killed and fail is called (without the queue's lock,
// so it may take the session's).
func newOutQueue(limit int, w io.Writer, fail func()) *outQueue {
	q := &outQueue{w: w, fail: fail, limit: limit, done: make(chan struct{})}
	q.room = sync.NewCond(&q.mu)
	return q
}

// push appends p. It reports false, queueing nothing, if that would take the
// queue more than slack bytes past its limit (slack < 0: no limit). Pushes
// after close or kill are ignored (true). p is copied.
func (q *outQueue) push(p []byte, slack int) bool {
	return q.pushAfter(p, slack, 0)
}

// pushAfter is push, except that a drainer it starts waits delay first,
// so that more output can join the same write. The wait runs on a
// runtime timer, not in a goroutine.
func (q *outQueue) pushAfter(p []byte, slack int, delay time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.dead {
		return true
	}
	if slack >= 0 && len(q.buf)+len(p) > q.limit+slack {
		return false
	}
	if len(p) == 0 {
		return true
	}
	q.buf = append(q.buf, p...)
	if !q.running {
		q.running = true
		q.drains++
		if delay > 0 {
			time.AfterFunc(delay, q.drain)
		} else {
			go q.drain()
		}
	}
	return true
}

// claim lets the caller write p itself, instead of queueing it, when the
// queue is idle: nothing queued, no drainer, not closed. It saves a
// goroutine hand-off per keystroke echo, which is most of what an idle
// drainer costs in latency. On true the caller must write p to the
// Terminal with writeClaimed; meanwhile pushes queue behind p (no
// drainer starts), so the order holds. On false p was pushed as usual.
func (q *outQueue) claim(p []byte) bool {
	q.mu.Lock()
	if q.running || q.closed || q.dead || len(q.buf) > 0 || len(p) == 0 {
		q.mu.Unlock()
		q.push(p, -1)
		return false
	}
	q.running = true
	q.mu.Unlock()
	return true
}

// writeClaimed writes p, claimed with claim, to the Terminal (unless the
// queue was killed since), then hands what was pushed meanwhile to a
// drainer. A failed write kills the queue and calls fail, as a drainer
// would.
func (q *outQueue) writeClaimed(p []byte) {
	q.mu.Lock()
	dead := q.dead
	q.mu.Unlock()
	if !dead {
		q.write(p)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.dead && len(q.buf) > 0 {
		q.drains++
		go q.drain()
		return
	}
	q.running = false
	q.finishLocked()
}

// close lets the queue finish once what is queued is written: done is
// closed then (at once, if nothing is queued).
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.room.Broadcast()
	q.finishLocked()
	q.mu.Unlock()
}

// kill discards what is queued; no write starts after it. done is closed
// once a write in progress, if any, has returned.
func (q *outQueue) kill() {
	q.mu.Lock()
	q.dead = true
	q.buf = nil
	q.room.Broadcast()
	q.finishLocked()
	q.mu.Unlock()
}

// finishLocked closes done once the queue is closed or killed, nothing is
// left to write and no drainer runs. Both the last drainer's exit and
// close/kill call it under mu, so whichever comes second closes done, once.
func (q *outQueue) finishLocked() {
	if (q.closed || q.dead) && !q.running && !q.doneSet {
		// Not running implies empty or dead (the invariant), so everything
		// queued has been written or discarded.
		q.doneSet = true
		close(q.done)
	}
}

// drain writes the queue to the Terminal until it finds it empty, or it is
// killed, or a write fails.
func (q *outQueue) drain() {
	for {
		q.mu.Lock()
		if q.dead || len(q.buf) == 0 {
			q.running = false
			q.finishLocked()
			q.mu.Unlock()
			return
		}
		b := q.buf
		q.buf = nil
		q.room.Broadcast() // room for waitRoom
		q.mu.Unlock()
		q.write(b) // after a failure the next round exits
	}
}

// write writes b to the Terminal; a failed write kills the queue and
// calls fail.
func (q *outQueue) write(b []byte) {
	if _, err := q.w.Write(b); err != nil {
		q.kill()
		q.fail()
	}
}

// waitRoom blocks until n more bytes fit under the limit (or the queue is
// empty, for a chunk larger than the limit), or the queue is closed or
// killed. It paces the target to the owner's connection. A drainer runs
// whenever the queue is not empty, so the wait always ends.
func (q *outQueue) waitRoom(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.buf) > 0 && len(q.buf)+n > q.limit && !q.closed && !q.dead {
		q.room.Wait()
	}
}

// idle reports whether no drainer runs, and how many have been started.
// For tests.
func (q *outQueue) idle() (bool, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.running, q.drains
}
