package session

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// failAfter bounds every wait in these tests. It is a deadline for a
// failing test, never a timing assumption: passing tests wait for events.
const failAfter = 10 * time.Second

// capture collects everything written to a pipe and lets a test wait for
// text to appear.
type capture struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
	eof     bool
}

func newCapture(r io.Reader) *capture {
	c := &capture{changed: make(chan struct{})}
	go func() {
		b := make([]byte, 64<<10)
		for {
			n, err := r.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			if err != nil {
				c.eof = true
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// waitUntil waits until cond holds for the captured text.
func (c *capture) waitUntil(t *testing.T, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.After(failAfter)
	for {
		c.mu.Lock()
		s, ch, eof := c.buf.String(), c.changed, c.eof
		c.mu.Unlock()
		if cond(s) {
			return
		}
		if eof {
			t.Fatalf("stream ended before %s; got %q", what, tail(s))
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %q", what, tail(s))
		}
	}
}

func (c *capture) waitFor(t *testing.T, sub string) {
	t.Helper()
	c.waitUntil(t, "\""+sub+"\"", func(s string) bool { return strings.Contains(s, sub) })
}

func tail(s string) string {
	if len(s) > 400 {
		return "…" + s[len(s)-400:]
	}
	return s
}

// pipeTerm is a fake participant terminal made of two io.Pipes.
type pipeTerm struct {
	keysR  *io.PipeReader
	keysW  *io.PipeWriter
	scrR   *io.PipeReader
	scrW   *io.PipeWriter
	screen *capture // nil for a stuck terminal that never reads
	once   sync.Once
	closed chan struct{}
}

func newTerm(reading bool) *pipeTerm {
	t := &pipeTerm{closed: make(chan struct{})}
	t.keysR, t.keysW = io.Pipe()
	t.scrR, t.scrW = io.Pipe()
	if reading {
		t.screen = newCapture(t.scrR)
	}
	return t
}

func (p *pipeTerm) Read(b []byte) (int, error)  { return p.keysR.Read(b) }
func (p *pipeTerm) Write(b []byte) (int, error) { return p.scrW.Write(b) }
func (p *pipeTerm) Close() error {
	p.once.Do(func() {
		p.keysR.Close()
		p.scrW.Close()
		p.scrR.Close()
		close(p.closed)
	})
	return nil
}

// typeKeys delivers keystrokes; it returns once the session has read them.
func (p *pipeTerm) typeKeys(t *testing.T, s string) {
	t.Helper()
	if _, err := p.keysW.Write([]byte(s)); err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
}

// hangUp is the participant closing their end: the session reads EOF.
func (p *pipeTerm) hangUp() { p.keysW.Close() }

// fakeTimers hands out timer channels that the test fires.
type fakeTimers struct{ reqs chan timerReq }

type timerReq struct {
	d  time.Duration
	ch chan time.Time
}

func (f *fakeTimers) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.reqs <- timerReq{d, ch}
	return ch
}

func (f *fakeTimers) next(t *testing.T) timerReq {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(failAfter):
		t.Fatal("no timer was started")
		return timerReq{}
	}
}

// recorder keeps what the hooks saw.
type recorder struct {
	mu     sync.Mutex
	input  map[string]*bytes.Buffer
	order  []string // "person:bytes" per OnInput call
	output bytes.Buffer
	states []string // "from>to"
	joins  []string
	leaves []string // "person:reason"
}

func (r *recorder) hooks() Hooks {
	r.input = map[string]*bytes.Buffer{}
	return Hooks{
		OnInput: func(person string, p []byte) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.input[person] == nil {
				r.input[person] = &bytes.Buffer{}
			}
			r.input[person].Write(p)
			r.order = append(r.order, person+":"+string(p))
		},
		OnOutput: func(p []byte) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.output.Write(p)
		},
		OnState: func(from, to State, reason string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.states = append(r.states, string(from)+">"+string(to))
		},
		OnJoin: func(p Participant) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.joins = append(r.joins, p.Person+":"+string(p.Mode))
		},
		OnLeave: func(p Participant, reason string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.leaves = append(r.leaves, p.Person+":"+reason)
		},
	}
}

func (r *recorder) inputOf(person string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.input[person]; b != nil {
		return b.String()
	}
	return ""
}

func (r *recorder) snapshot() (states, joins, leaves []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.states...), append([]string(nil), r.joins...), append([]string(nil), r.leaves...)
}

// harness is one session with alice as owner and a fake target.
type harness struct {
	t      *testing.T
	s      *Session
	owner  *pipeTerm
	timers *fakeTimers
	rec    *recorder

	outR     *io.PipeReader // target output: the test writes outWr
	outWr    *io.PipeWriter
	inR      *io.PipeReader
	inW      *io.PipeWriter
	in       *capture // what reached the target
	sizes    chan Size
	attached chan error
	terms    []*pipeTerm
}

func newHarness(t *testing.T, fourEyes bool, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, owner: newTerm(true), timers: &fakeTimers{reqs: make(chan timerReq, 64)}, rec: &recorder{}}
	o := Options{
		ID:       "s1",
		Host:     "db1",
		Owner:    Participant{Person: "alice"},
		FourEyes: fourEyes,
		Hooks:    h.rec.hooks(),
		After:    h.timers.After,
		Now:      func() time.Time { return time.Unix(1700000000, 0) },
	}
	if mod != nil {
		mod(&o)
	}
	h.s = New(o, h.owner, Size{Cols: 80, Rows: 24})
	h.terms = append(h.terms, h.owner)
	t.Cleanup(h.closeAll)
	return h
}

// attach connects the fake target; Attach runs in the background.
func (h *harness) attach() {
	h.outR, h.outWr = io.Pipe()
	h.inR, h.inW = io.Pipe()
	h.in = newCapture(h.inR)
	h.sizes = make(chan Size, 16)
	h.attached = make(chan error, 1)
	go func() {
		h.attached <- h.s.Attach(h.outR, h.inW, func(sz Size) { h.sizes <- sz })
	}()
}

// output is target output (e.g. what the shell prints).
func (h *harness) output(s string) {
	h.t.Helper()
	if _, err := h.outWr.Write([]byte(s)); err != nil {
		h.t.Fatalf("target output: %v", err)
	}
}

func (h *harness) attachResult() error {
	h.t.Helper()
	select {
	case err := <-h.attached:
		return err
	case <-time.After(failAfter):
		h.t.Fatal("Attach did not return")
		return nil
	}
}

type joiner struct {
	term   *pipeTerm
	result chan joinResult
}

type joinResult struct {
	reason string
	err    error
}

func (h *harness) join(p Participant, reading bool) *joiner {
	j := &joiner{term: newTerm(reading), result: make(chan joinResult, 1)}
	h.terms = append(h.terms, j.term)
	go func() {
		r, err := h.s.Join(p, j.term)
		j.result <- joinResult{r, err}
	}()
	return j
}

// joinLive joins p and waits until the joiner sees its welcome.
func (h *harness) joinLive(p Participant) *joiner {
	h.t.Helper()
	j := h.join(p, true)
	j.term.screen.waitFor(h.t, "joined session s1")
	return j
}

func (j *joiner) wait(t *testing.T) joinResult {
	t.Helper()
	select {
	case r := <-j.result:
		return r
	case <-time.After(failAfter):
		t.Fatal("Join did not return")
		return joinResult{}
	}
}

// closeAll is what the gateway does after the session: close every
// terminal and the target.
func (h *harness) closeAll() {
	for _, t := range h.terms {
		t.keysW.Close()
		t.Close()
	}
	if h.outWr != nil {
		h.outWr.Close()
		h.inR.Close()
	}
}

// waitGoroutines waits until no more than n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines still running, want <= %d:\n%s", runtime.NumGoroutine(), n, buf)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling, not timing: the deadline above bounds it
	}
}
