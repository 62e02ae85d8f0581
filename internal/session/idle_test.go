package session

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// stackCounts counts the running goroutines whose stack contains each of
// the given function names.
func stackCounts(names ...string) map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, name := range names {
			if strings.Contains(g, name) {
				counts[name]++
			}
		}
	}
	return counts
}

// waitStacks waits until the goroutine counts are as wanted. Goroutines of
// earlier tests may still be on their way out; the deadline bounds a
// failing test.
func waitStacks(t *testing.T, want map[string]int) map[string]int {
	t.Helper()
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	deadline := time.Now().Add(failAfter)
	for {
		got := stackCounts(names...)
		ok := true
		for n, w := range want {
			ok = ok && got[n] == w
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %v, want %v", got, want)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling, not timing: the deadline above bounds it
	}
}

func memberQueue(s *Session, person string) *outQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.members {
		if m.p.Person == person {
			return m.q
		}
	}
	return nil
}

func TestIdleSessionHoldsOnlyReaders(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	h.owner.typeKeys(t, "ls\r")
	h.in.waitFor(t, "ls\r")
	b.term.typeKeys(t, "x")
	h.in.waitFor(t, "ls\rx")
	h.output("file\r\n$ ")
	h.owner.screen.waitFor(t, "file\r\n$ ")
	b.term.screen.waitFor(t, "file\r\n$ ")

	// Everything was delivered: both drainers exit on their own.
	bq := memberQueue(h.s, "bob")
	for _, q := range []*outQueue{h.s.owner.q, bq} {
		if n := waitIdle(t, q); n == 0 {
			t.Fatal("no drainer ever ran")
		}
	}
	got := waitStacks(t, map[string]int{
		"session.(*outQueue).drain(":     0,
		"session.(*Session).read(":       2, // owner and bob: must block in Read
		"session.(*Session).readOutput(": 1, // the target: must block in Read
	})
	t.Logf("idle live session, owner + peer: %v", got)

	// Output after idling starts a drainer per participant again and still
	// reaches both in order.
	h.output("more")
	h.owner.screen.waitFor(t, "file\r\n$ more")
	b.term.screen.waitFor(t, "file\r\n$ more")
	waitIdle(t, h.s.owner.q)
	waitIdle(t, bq)
}

func TestInputBeforeAttachReachesTargetInOrder(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	b := h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	// Live, but the gateway has not attached the target yet.
	h.owner.typeKeys(t, "ab")
	var typing sync.WaitGroup
	typing.Add(2)
	go func() {
		defer typing.Done()
		for _, k := range []string{"cd", "ef"} {
			if _, err := h.owner.keysW.Write([]byte(k)); err != nil {
				return // the test failed and closed the terminal
			}
		}
	}()
	go func() {
		defer typing.Done()
		_, _ = b.term.keysW.Write([]byte("B"))
	}()
	if got := h.rec.inputOf("alice"); got != "" {
		t.Fatalf("input attributed before it could reach the target: %q", got)
	}
	h.attach()
	if sz := <-h.sizes; sz != (Size{80, 24}) {
		t.Fatalf("first resize %v", sz)
	}
	h.in.waitUntil(t, "all input", func(s string) bool { return len(s) == len("abcdefB") })
	typing.Wait()
	got := h.in.String()
	if strings.ReplaceAll(got, "B", "") != "abcdef" || strings.Count(got, "B") != 1 {
		t.Fatalf("target got %q, want alice's abcdef in order and bob's B", got)
	}
	if h.rec.inputOf("alice") != "abcdef" || h.rec.inputOf("bob") != "B" {
		t.Fatalf("attribution alice=%q bob=%q", h.rec.inputOf("alice"), h.rec.inputOf("bob"))
	}
	h.rec.mu.Lock()
	order := h.rec.order
	h.rec.mu.Unlock()
	var attributed strings.Builder
	for _, o := range order {
		_, p, _ := strings.Cut(o, ":")
		attributed.WriteString(p)
	}
	if attributed.String() != got {
		t.Fatalf("attributed in the order %q, reached the target as %q", attributed.String(), got)
	}
}

func TestInputBeforeAttachDroppedIfPausedMeanwhile(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	b := h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.owner.typeKeys(t, "rm") // waits for the target
	b.term.hangUp()
	b.wait(t)
	h.owner.screen.waitFor(t, "bob left; input paused")
	h.attach()
	<-h.sizes
	// Four-eyes: the supervisor left before the input could reach the
	// target, so it does not go through.
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")
	if _, err := h.inW.Write([]byte("|")); err != nil { // a marker behind anything forwarded
		t.Fatal(err)
	}
	h.in.waitFor(t, "|")
	if got := h.in.String(); got != "|" {
		t.Fatalf("target got %q", got)
	}
	if got := h.rec.inputOf("alice"); got != "" {
		t.Fatalf("recorded %q as typed", got)
	}
}

func TestInputAfterEndDropped(t *testing.T) {
	h := newHarness(t, false, nil)
	h.attach()
	<-h.sizes
	h.owner.typeKeys(t, "a")
	h.in.waitFor(t, "a")
	h.s.End("carol", "test")
	if err := h.attachResult(); err == nil {
		t.Fatal("Attach = nil")
	}
	// The second typeKeys returns only once the reader is back in Read,
	// i.e. the first chunk's forward returned without blocking.
	h.owner.typeKeys(t, "zz")
	h.owner.typeKeys(t, "yy")
	if _, err := h.inW.Write([]byte("|")); err != nil {
		t.Fatal(err)
	}
	h.in.waitFor(t, "|")
	if got := h.in.String(); got != "a|" {
		t.Fatalf("target got %q", got)
	}
	if got := h.rec.inputOf("alice"); got != "a" {
		t.Fatalf("recorded %q", got)
	}
}

func TestEndReleasesInputWaitingForAttach(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	b := h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.owner.typeKeys(t, "x") // waits for the target, which never comes
	h.s.End("", "could not reach db1")
	h.owner.typeKeys(t, "y") // the reader is free again
	if r := b.wait(t); r.reason != ReasonEnded {
		t.Fatalf("Join = %+v", r)
	}
	h.attach()
	if err := h.attachResult(); !errors.Is(err, ErrEnded) {
		t.Fatalf("Attach after End = %v", err)
	}
	if got := h.rec.inputOf("alice"); got != "" {
		t.Fatalf("recorded %q as typed", got)
	}
}

func TestTargetWriteErrorEnds(t *testing.T) {
	h := newHarness(t, false, nil)
	h.attach()
	<-h.sizes
	h.inR.CloseWithError(errors.New("channel closed"))
	h.owner.typeKeys(t, "x")
	const msg = "the target stopped taking input"
	if err := h.attachResult(); err == nil || err.Error() != msg {
		t.Fatalf("Attach = %v, want %q", err, msg)
	}
	h.owner.screen.waitFor(t, "[tandem] "+msg+"\r\n")
}

// stuckWriter is a target that takes no input: Write blocks until Close,
// as an SSH channel's Write does when the window is exhausted.
type stuckWriter struct {
	entered chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.closed
	return 0, io.ErrClosedPipe
}

func (w *stuckWriter) Close() { w.once.Do(func() { close(w.closed) }) }

func TestStuckTargetWriteDoesNotBlockEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		h := newHarness(t, false, nil)
		sw := &stuckWriter{entered: make(chan struct{}, 1), closed: make(chan struct{})}
		defer sw.Close()
		outR, outW := io.Pipe()
		defer outW.Close()
		attached := make(chan error, 1)
		go func() { attached <- h.s.Attach(outR, sw, func(Size) {}) }()
		b := h.joinLive(bob)
		h.owner.typeKeys(t, "x")
		select {
		case <-sw.entered:
		case <-time.After(failAfter):
			t.Fatal("input never reached the target")
		}
		bobTyped := make(chan struct{})
		go func() {
			defer close(bobTyped)
			_, _ = b.term.keysW.Write([]byte("y")) // bob's forward waits behind alice's
		}()
		h.s.End("carol", "stuck target")
		select {
		case err := <-attached:
			if err == nil || err.Error() != "session ended by carol (stuck target)" {
				t.Fatalf("Attach = %v", err)
			}
		case <-time.After(failAfter):
			t.Fatal("Attach did not return while input was stuck")
		}
		if r := b.wait(t); r.reason != ReasonEnded {
			t.Fatalf("Join = %+v", r)
		}
		// What the gateway does next: close the target and the terminals.
		sw.Close()
		outW.Close()
		h.closeAll()
		<-bobTyped
	}()
	waitGoroutines(t, base)
}

// heldWriter is a target that takes no input until released (its SSH
// window is full), then takes everything; got is what it took.
type heldWriter struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	got     []byte
}

func (w *heldWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, p...)
	return len(p), nil
}

func (w *heldWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.got)
}

// TestInputBehindStuckWriteDroppedOncePaused: the second person is taken
// out while the owner's input is stuck in a write to a target that does
// not take it. That one chunk was typed, attributed and sent while the
// session was live, and goes on; whatever was typed behind it, by the
// owner or another joiner waiting their turn, is decided when its turn
// comes, on the paused session, and discarded.
func TestInputBehindStuckWriteDroppedOncePaused(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	e := h.joinLive(eve)
	hw := &heldWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	outR, outW := io.Pipe()
	defer outW.Close()
	go func() { _ = h.s.Attach(outR, hw, func(Size) {}) }()
	h.owner.typeKeys(t, "A")
	select {
	case <-hw.entered:
	case <-time.After(failAfter):
		t.Fatal("input never reached the target")
	}
	e.term.typeKeys(t, "E") // eve's reader waits for the owner's write
	ownerTyped := make(chan struct{})
	go func() {
		defer close(ownerTyped)
		_, _ = h.owner.keysW.Write([]byte("C")) // read once the owner's write returns
	}()
	h.s.Remove("bob", "bob was locked: key stolen")
	close(hw.release)
	<-ownerTyped
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")
	e.term.screen.waitFor(t, "input is discarded until a second person is present")
	if got := hw.String(); got != "A" {
		t.Fatalf("target got %q, want only the chunk sent while live", got)
	}
	if h.rec.inputOf("eve") != "" || h.rec.inputOf("alice") != "A" {
		t.Fatalf("recorded alice=%q eve=%q", h.rec.inputOf("alice"), h.rec.inputOf("eve"))
	}
}
