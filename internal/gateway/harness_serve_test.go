package gateway_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestServeStop: a requested stop is no error, even when the listener
// closes before the contexts derived from the caller's have heard of the
// cancel; a listener that fails on its own is.
func TestServeStop(t *testing.T) {
	t.Run("requested stop", func(t *testing.T) {
		h := newHarness(t, withoutServe())
		ctx := newSlowCancel()
		served := serveAsync(h, ctx, h.ln)
		// A login shows Serve is accepting, its hooks on ctx in place.
		h.client(t, "alice", "gw").Close()
		ctx.cancel()
		if err := waitServe(t, served); err != nil {
			t.Errorf("Serve returned %v on a requested stop, want nil", err)
		}
	})
	t.Run("listener fails", func(t *testing.T) {
		h := newHarness(t, withoutServe())
		broke := errors.New("listener broke")
		err := waitServe(t, serveAsync(h, context.Background(), failingListener{broke}))
		if !errors.Is(err, broke) {
			t.Errorf("Serve returned %v, want the listener's error", err)
		}
	})
}

func serveAsync(h *harness, ctx context.Context, ln net.Listener) <-chan error {
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, ln) }()
	return served
}

func waitServe(t *testing.T, served <-chan error) error {
	t.Helper()
	select {
	case err := <-served:
		return err
	case <-time.After(wait):
		t.Fatalf("Serve did not return within %v", wait)
		return nil
	}
}

// failingListener fails every Accept with err.
type failingListener struct{ err error }

func (l failingListener) Accept() (net.Conn, error) { return nil, l.err }
func (failingListener) Close() error                { return nil }
func (failingListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
}

// slowCancel is a context whose cancel runs the functions registered on it
// (context.AfterFunc, and the contexts derived from it) one at a time, in
// the order of registration, with a pause after each: the widest gap a
// standard context may leave between them, since it runs them in no set
// order.
type slowCancel struct {
	context.Context // Background: no deadline, no values
	done            chan struct{}

	mu  sync.Mutex
	err error
	fns []*func()
}

func newSlowCancel() *slowCancel {
	return &slowCancel{Context: context.Background(), done: make(chan struct{})}
}

func (c *slowCancel) Done() <-chan struct{} { return c.done }

func (c *slowCancel) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc is what context.AfterFunc and context.WithCancel use to hear
// of the cancel, instead of a goroutine each.
func (c *slowCancel) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := &f
	c.fns = append(c.fns, p)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := len(c.fns)
		c.fns = slices.DeleteFunc(c.fns, func(q *func()) bool { return q == p })
		return len(c.fns) < n
	}
}

func (c *slowCancel) cancel() {
	c.mu.Lock()
	c.err = context.Canceled
	close(c.done)
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for _, f := range fns {
		(*f)()
		time.Sleep(100 * time.Millisecond)
	}
}
