package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPark: a newcomer is held to its source's and its network's share of
// the waiting room first, counted apart from the admitted connections;
// then a full room pushes out the silent connection waiting longest,
// never one that has spoken (nor one without a Conn), and refuses the
// newcomer when every waiting one has spoken. A refusal pushes out nobody.
func TestPark(t *testing.T) {
	type waiting struct {
		src   string
		spoke bool
		plain bool // parked without a Conn: never pushed out
	}
	tests := []struct {
		name    string
		opts    Options
		waiting []waiting // parked in this order before the newcomer
		src     string    // the newcomer, which has not spoken
		wantWhy string    // "": parked
		pushed  int       // index into waiting; -1: nobody pushed out
	}{
		{name: "room free",
			opts:    Options{MaxParked: 3},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}},
			src:     "192.0.2.1:1", pushed: -1},
		{name: "full: the silent one that came first is pushed out",
			opts:    Options{MaxParked: 3},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}, {src: "10.0.3.1:1"}},
			src:     "192.0.2.1:1", pushed: 0},
		{name: "full: those that have spoken are passed over",
			opts:    Options{MaxParked: 3},
			waiting: []waiting{{src: "10.0.1.1:1", spoke: true}, {src: "10.0.2.1:1", plain: true}, {src: "10.0.3.1:1"}},
			src:     "192.0.2.1:1", pushed: 2},
		{name: "full of connections that have spoken: refused",
			opts:    Options{MaxParked: 3},
			waiting: []waiting{{src: "10.0.1.1:1", spoke: true}, {src: "10.0.2.1:1", spoke: true}, {src: "10.0.3.1:1", plain: true}},
			src:     "192.0.2.1:1", wantWhy: ReasonTooManyUnauth, pushed: -1},
		{name: "per-source share",
			opts:    Options{MaxParked: 10, MaxUnauthPerSource: 2},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.1.1:2"}},
			src:     "10.0.1.1:3", wantWhy: ReasonTooManyPerSrc, pushed: -1},
		{name: "per-network share",
			opts:    Options{MaxParked: 10, MaxUnauthPerPrefix: 2},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.1.2:1"}},
			src:     "10.0.1.3:1", wantWhy: ReasonTooManyPerNet, pushed: -1},
		{name: "another network beside a full share",
			opts:    Options{MaxParked: 10, MaxUnauthPerPrefix: 2},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.1.2:1"}},
			src:     "10.0.2.1:1", pushed: -1},
		{name: "shares first: a source at its share pushes out nobody from a full room",
			opts:    Options{MaxParked: 2, MaxUnauthPerSource: 1},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}},
			src:     "10.0.1.1:2", wantWhy: ReasonTooManyPerSrc, pushed: -1},
		{name: "shares first: a network at its share pushes out nobody from a full room",
			opts:    Options{MaxParked: 2, MaxUnauthPerPrefix: 1},
			waiting: []waiting{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}},
			src:     "10.0.1.2:1", wantWhy: ReasonTooManyPerNet, pushed: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(newClock(), tt.opts)
			conns := make([]*fakeConn, len(tt.waiting))
			leaves := make([]func() bool, len(tt.waiting))
			for i, w := range tt.waiting {
				conns[i] = &fakeConn{}
				if w.spoke {
					conns[i].last.Store(1)
				}
				var c Conn = conns[i]
				if w.plain {
					c = nil
				}
				leave, ok, why := l.Park(w.src, c)
				if !ok {
					t.Fatalf("waiting %d (%s) refused: %s", i, w.src, why)
				}
				leaves[i] = leave
			}
			leave, ok, why := l.Park(tt.src, &fakeConn{})
			if ok != (tt.wantWhy == "") || why != tt.wantWhy {
				t.Fatalf("newcomer %s: parked %v (%q), want refused %q", tt.src, ok, why, tt.wantWhy)
			}
			assertEvicted(t, "waiting", conns, tt.pushed)
			want := len(tt.waiting) // a pushed-out connection keeps its shares until it leaves
			if ok {
				want++
				leaves = append(leaves, leave)
			}
			if got := l.Parked(); got != want {
				t.Errorf("Parked = %d, want %d", got, want)
			}
			for i, leave := range leaves {
				if in := leave(); in != (i != tt.pushed) {
					t.Errorf("leave %d: still in the room %v, want %v", i, in, i != tt.pushed)
				}
				if leave() {
					t.Errorf("leave %d: a second leave reports the connection in the room", i)
				}
			}
			assertParkEmpty(t, l)
		})
	}
}

func assertParkEmpty(t *testing.T, l *Limiter) {
	t.Helper()
	r := &l.park
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n != 0 || len(r.shares.src) != 0 || len(r.shares.net) != 0 || len(r.waiting) != 0 {
		t.Errorf("after leaving: %d parked, %d sources, %d networks, %d in the lot; want none", r.n, len(r.shares.src), len(r.shares.net), len(r.waiting))
	}
}

// TestParkShares: the shares count connections that wait, not the
// admitted ones, and a connection pushed out holds its shares until it
// leaves (its handler is still at it); once it has, its address may wait
// again.
func TestParkShares(t *testing.T) {
	l := New(Options{MaxUnauth: 1, MaxUnauthPerSource: 1, MaxParked: 1})
	first := &fakeConn{}
	leaveFirst, ok, _ := l.Park("192.0.2.1:1", first)
	if !ok {
		t.Fatal("an empty room refused")
	}
	if _, ok, why := l.Admit("192.0.2.1:2", nil); !ok {
		t.Fatalf("admit beside one parked from the same address: refused (%s)", why)
	}
	leaveOther, ok, _ := l.Park("198.51.100.1:1", &fakeConn{})
	if !ok || first.evicted.Load() != 1 {
		t.Fatalf("newcomer to a full room of one silent: parked %v, the silent one pushed out %d times", ok, first.evicted.Load())
	}
	if _, ok, why := l.Park("192.0.2.1:3", &fakeConn{}); ok || why != ReasonTooManyPerSrc {
		t.Fatalf("the pushed-out connection's address before it left: parked %v (%q), want refused for its share", ok, why)
	}
	if leaveFirst() {
		t.Error("the pushed-out connection left as if still in the room")
	}
	leaveOther()
	leaveAgain, ok, why := l.Park("192.0.2.1:4", &fakeConn{})
	if !ok {
		t.Fatalf("after the others left, the address may wait again: refused (%s)", why)
	}
	leaveAgain()
	assertParkEmpty(t, l)
}

// TestParkingSize: the waiting room holds four times the cap on
// unauthenticated connections, at most half of max_connections, at least
// one; New takes it without the max_connections bound by default.
func TestParkingSize(t *testing.T) {
	for _, tc := range []struct{ unauth, conns, want int }{
		{100, 1000, 400},
		{100, 300, 150}, // half of max_connections
		{100, 0, 400},   // no cap on connections
		{0, 0, 4 * DefaultMaxUnauth},
		{10, 1, 1}, // at least one
	} {
		if got := ParkingSize(tc.unauth, tc.conns); got != tc.want {
			t.Errorf("ParkingSize(%d, %d) = %d, want %d", tc.unauth, tc.conns, got, tc.want)
		}
	}
	if got := New(Options{MaxUnauth: 10}).o.MaxParked; got != 40 {
		t.Errorf("default MaxParked with MaxUnauth 10 = %d, want 40", got)
	}
}

// TestParkConcurrent: newcomers entering, speaking and leaving from
// several goroutines keep the room within its size and the counts whole;
// a connection is pushed out exactly when its leave finds it gone (run
// with -race).
func TestParkConcurrent(t *testing.T) {
	// Each goroutine alone keeps more waiting than the room holds, most of
	// them silent, so pushes happen in any interleaving; and more from one
	// address than its share, so refusals do too.
	l := New(Options{MaxParked: 16, MaxUnauthPerSource: 3, MaxUnauthPerPrefix: 1000})
	type left struct {
		c  *fakeConn
		in bool // what leave said
	}
	var refused atomic.Int64
	var wg sync.WaitGroup
	done := make([][]left, 8)
	for g := range 8 {
		wg.Go(func() {
			var mine []*fakeConn
			var leaves []func() bool
			for i := range 300 {
				if len(mine) >= 18 { // leave in the order of arrival
					done[g] = append(done[g], left{mine[0], leaves[0]()})
					mine, leaves = mine[1:], leaves[1:]
				}
				c := &fakeConn{}
				leave, ok, _ := l.Park(fmt.Sprintf("10.%d.%d.1:1", g, i%5), c)
				if !ok {
					refused.Add(1)
					continue
				}
				if i%3 == 0 {
					c.last.Store(1) // spoke: never pushed out from now on
				}
				mine, leaves = append(mine, c), append(leaves, leave)
				l.park.mu.Lock()
				n := len(l.park.waiting)
				l.park.mu.Unlock()
				if n > 16 {
					t.Errorf("%d in a room of 16", n)
					return
				}
			}
			for i, c := range mine {
				done[g] = append(done[g], left{c, leaves[i]()})
			}
		})
	}
	wg.Wait()
	// Only now: a newcomer calls Evict after it has let go of the lock,
	// so a leave may see its connection gone a moment before Evict runs.
	pushed := 0
	for g, ls := range done {
		for i, e := range ls {
			n := int(e.c.evicted.Load())
			pushed += n
			if n > 1 || e.in != (n == 0) {
				t.Errorf("goroutine %d, connection %d: leave said in the room %v, pushed out %d times", g, i, e.in, n)
			}
		}
	}
	if pushed == 0 || refused.Load() == 0 {
		t.Errorf("%d pushed out, %d refused: want both to happen", pushed, refused.Load())
	}
	assertParkEmpty(t, l)
}
