package session

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter hands every Write to the test (got) and holds it until the
// test releases it, so a test knows exactly when the drainer is writing.
type gateWriter struct {
	got     chan string
	release chan error
}

func newGateWriter() *gateWriter {
	return &gateWriter{got: make(chan string), release: make(chan error)}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.got <- string(p)
	if err := <-g.release; err != nil {
		return 0, err
	}
	return len(p), nil
}

func (g *gateWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-g.got:
		return s
	case <-time.After(failAfter):
		t.Fatal("no write reached the terminal")
		return ""
	}
}

// bufWriter records every Write at once.
type bufWriter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (w *bufWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.b.Write(p)
}

func (w *bufWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitIdle waits until q's drainer has exited. The drainer exits on its own
// after its last write; the deadline only bounds a failing test.
func waitIdle(t *testing.T, q *outQueue) int {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		idle, n := q.idle()
		if idle {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal("the drainer did not exit")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling, not timing: the deadline above bounds it
	}
}

func waitDone(t *testing.T, q *outQueue) {
	t.Helper()
	select {
	case <-q.done:
	case <-time.After(failAfter):
		t.Fatal("the queue never finished")
	}
}

func isDone(q *outQueue) bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

func TestQueueDrainerOnlyWhileBusy(t *testing.T) {
	w := newGateWriter()
	q := newOutQueue(1<<10, w, func() { t.Error("write failure reported") })
	if idle, n := q.idle(); !idle || n != 0 {
		t.Fatalf("new queue: idle %v, %d drainers started", idle, n)
	}
	q.push([]byte("a"), -1)
	if got := w.next(t); got != "a" {
		t.Fatalf("first write %q", got)
	}
	// Pushes while the drainer writes join the queue; no second drainer.
	q.push([]byte("b"), -1)
	q.push([]byte("c"), 0)
	if idle, n := q.idle(); idle || n != 1 {
		t.Fatalf("busy queue: idle %v, %d drainers started", idle, n)
	}
	w.release <- nil
	if got := w.next(t); got != "bc" {
		t.Fatalf("second write %q, want the two pushes in order", got)
	}
	w.release <- nil
	if n := waitIdle(t, q); n != 1 {
		t.Fatalf("%d drainers started", n)
	}
	// A push to the idle queue starts a new drainer and is delivered.
	q.push([]byte("d"), -1)
	if got := w.next(t); got != "d" {
		t.Fatalf("write after idle %q", got)
	}
	w.release <- nil
	if n := waitIdle(t, q); n != 2 {
		t.Fatalf("%d drainers started, want 2", n)
	}
	if isDone(q) {
		t.Fatal("done before close")
	}
	q.close()
	if !isDone(q) {
		t.Fatal("close of an empty idle queue did not finish it at once")
	}
	q.push([]byte("e"), -1) // ignored
	if idle, n := q.idle(); !idle || n != 2 {
		t.Fatalf("push after close started a drainer: idle %v, %d", idle, n)
	}
}

func TestQueueCloseEmptyFinishesAtOnce(t *testing.T) {
	q := newOutQueue(1<<10, &bufWriter{}, func() {})
	q.close()
	if !isDone(q) {
		t.Fatal("done not closed")
	}
	q.close() // no double close
	q.kill()
	if idle, n := q.idle(); !idle || n != 0 {
		t.Fatalf("idle %v, %d drainers", idle, n)
	}
}

func TestQueueCloseWaitsForQueued(t *testing.T) {
	w := newGateWriter()
	q := newOutQueue(1<<10, w, func() {})
	q.push([]byte("x"), -1)
	w.next(t)
	q.push([]byte("y"), -1)
	q.close()
	if isDone(q) {
		t.Fatal("done while output was still queued")
	}
	w.release <- nil
	if got := w.next(t); got != "y" {
		t.Fatalf("got %q", got)
	}
	if isDone(q) {
		t.Fatal("done during the last write")
	}
	w.release <- nil
	waitDone(t, q)
}

func TestQueueCloseRacesBurst(t *testing.T) {
	// The drainer keeps finding the queue empty and exiting while pushes
	// start new ones; close lands anywhere in that. Everything pushed before
	// close must arrive, in order, and done must close exactly once.
	for round := range 200 {
		w := &bufWriter{}
		q := newOutQueue(1<<20, w, func() { t.Error("write failure reported") })
		var want strings.Builder
		for i := range 50 + round%17 {
			s := fmt.Sprintf("%d.%d;", round, i)
			want.WriteString(s)
			if !q.push([]byte(s), 0) {
				t.Fatal("push refused")
			}
			if i%7 == round%7 {
				runtime.Gosched() // let the drainer catch up and exit now and then
			}
		}
		q.close()
		waitDone(t, q)
		if got := w.String(); got != want.String() {
			t.Fatalf("round %d: delivered %q, want %q", round, got, want.String())
		}
		if idle, _ := q.idle(); !idle {
			t.Fatal("done while a drainer runs")
		}
	}
}

func TestQueueKillStopsWrites(t *testing.T) {
	w := newGateWriter()
	q := newOutQueue(1<<10, w, func() { t.Error("write failure reported") })
	q.push([]byte("a"), -1)
	w.next(t)
	q.push([]byte("b"), -1)
	q.kill()
	if isDone(q) {
		t.Fatal("done while a write was in progress")
	}
	w.release <- nil
	waitDone(t, q)
	q.push([]byte("c"), -1)
	select {
	case s := <-w.got:
		t.Fatalf("wrote %q after kill", s)
	default:
	}
	if idle, n := q.idle(); !idle || n != 1 {
		t.Fatalf("idle %v, %d drainers", idle, n)
	}
}

func TestQueueKillIdleFinishesAtOnce(t *testing.T) {
	q := newOutQueue(1<<10, &bufWriter{}, func() {})
	q.kill()
	if !isDone(q) {
		t.Fatal("done not closed")
	}
}

func TestQueueWriteFailure(t *testing.T) {
	w := newGateWriter()
	failed := make(chan bool, 1)
	var q *outQueue
	q = newOutQueue(1<<10, w, func() {
		// Still running, so a leave on the session's side can set the
		// reason before Join (waiting on done) reads it.
		idle, _ := q.idle()
		failed <- idle || isDone(q)
	})
	q.push([]byte("a"), -1)
	w.next(t)
	q.push([]byte("b"), -1)
	w.release <- errors.New("connection reset")
	select {
	case idle := <-failed:
		if idle {
			t.Fatal("drainer stopped, or done closed, before the failure was reported")
		}
	case <-time.After(failAfter):
		t.Fatal("failure not reported")
	}
	waitDone(t, q)
	if !q.push([]byte("c"), 0) {
		t.Fatal("push to a failed queue refused")
	}
	select {
	case s := <-w.got:
		t.Fatalf("wrote %q after the failure", s)
	default:
	}
}

func TestQueueWaitRoom(t *testing.T) {
	w := newGateWriter()
	q := newOutQueue(4, w, func() {})
	q.waitRoom(100) // empty: returns at once, whatever the size
	q.push([]byte("x"), -1)
	w.next(t) // the drainer holds "x"; the queue is empty again
	q.push([]byte("abcd"), -1)
	room := make(chan struct{})
	go func() {
		q.waitRoom(1)
		close(room)
	}()
	select {
	case <-room:
		t.Fatal("waitRoom returned while the queue was full")
	default:
	}
	w.release <- nil // the drainer takes "abcd": room again
	select {
	case <-room:
	case <-time.After(failAfter):
		t.Fatal("waitRoom never returned")
	}
	if got := w.next(t); got != "abcd" {
		t.Fatalf("got %q", got)
	}
	w.release <- nil
	q.close()
	waitDone(t, q)
}

// A claimed write goes out from the caller; pushes made meanwhile queue
// behind it and reach the terminal after it, in order, through a drainer.
func TestQueueClaimedWriteKeepsOrder(t *testing.T) {
	g := newGateWriter()
	q := newOutQueue(1<<20, g, func() {})
	if !q.claim([]byte("echo")) {
		t.Fatal("an idle queue refused the claim")
	}
	if q.claim([]byte("other")) {
		t.Fatal("a second claim succeeded while the first write is pending")
	}
	go q.writeClaimed([]byte("echo"))
	if got := g.next(t); got != "echo" {
		t.Fatalf("first write %q, want the claimed bytes", got)
	}
	q.push([]byte("-later"), -1)
	g.release <- nil
	if got := g.next(t); got != "other-later" {
		t.Fatalf("second write %q, want the bytes pushed during the claimed write", got)
	}
	g.release <- nil
	q.close()
	select {
	case <-q.done:
	case <-time.After(failAfter):
		t.Fatal("done not closed after close")
	}
}

// After kill a claimed write does not reach the terminal, and a failed
// claimed write kills the queue and reports it.
func TestQueueClaimedWriteAfterKillAndFailure(t *testing.T) {
	w := &bufWriter{}
	q := newOutQueue(1<<20, w, func() {})
	if !q.claim([]byte("x")) {
		t.Fatal("claim refused")
	}
	q.kill()
	q.writeClaimed([]byte("x"))
	if w.String() != "" {
		t.Fatalf("terminal got %q after kill", w.String())
	}
	<-q.done

	g := newGateWriter()
	failed := make(chan struct{})
	q = newOutQueue(1<<20, g, func() { close(failed) })
	q.claim([]byte("y"))
	go q.writeClaimed([]byte("y"))
	g.next(t)
	g.release <- errors.New("client gone")
	<-failed
	if q.push([]byte("z"), 0); !q.dead {
		t.Fatal("queue alive after a failed claimed write")
	}
	q.close()
	<-q.done
}

// Output pushed for a watcher within the delay leaves in one write.
func TestQueueDelayedDrainBatches(t *testing.T) {
	w := &bufWriter{}
	q := newOutQueue(1<<20, w, func() {})
	for _, s := range []string{"a", "b", "c"} {
		q.pushAfter([]byte(s), 0, 300*time.Millisecond)
	}
	q.close()
	select {
	case <-q.done:
	case <-time.After(failAfter):
		t.Fatal("delayed drainer never ran")
	}
	if w.String() != "abc" || w.writes != 1 {
		t.Fatalf("terminal got %q in %d writes, want \"abc\" in one", w.String(), w.writes)
	}
}
