package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeConn is an admitted connection whose silence and stage a test sets.
type fakeConn struct {
	last    atomic.Int64 // UnixNano; 0: nothing read
	stage   atomic.Int32
	evicted atomic.Int32
	onEvict atomic.Pointer[func()] // run inside Evict, e.g. the handler's release
}

func (f *fakeConn) LastRead() time.Time {
	if n := f.last.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
func (f *fakeConn) Stage() int { return int(f.stage.Load()) }
func (f *fakeConn) Evict() {
	f.evicted.Add(1)
	if f := f.onEvict.Load(); f != nil {
		(*f)()
	}
}

// assertEvicted checks that Evict was called once on conns[victim] and
// never on the others (victim -1: on none); what names them in errors.
func assertEvicted(t *testing.T, what string, conns []*fakeConn, victim int) {
	t.Helper()
	for i, c := range conns {
		want := int32(0)
		if i == victim {
			want = 1
		}
		if got := c.evicted.Load(); got != want {
			t.Errorf("%s %d evicted %d times, want %d", what, i, got, want)
		}
	}
}

// TestEvictVictim: when the total cap is reached, a newcomer that has
// spoken takes the slot of the connection silent longest (lowest stage
// first), never one silent for less than the minimum; a newcomer that has
// said nothing takes nobody's; the per-source and per-network caps still
// refuse without evicting anybody.
func TestEvictVictim(t *testing.T) {
	type held struct {
		src   string
		at    time.Duration // admitted this long after the start
		read  time.Duration // last byte read this long after the start; 0: none
		stage int
		plain bool // admitted without a Conn: never evicted
	}
	tests := []struct {
		name    string
		silent  bool // the newcomer has sent nothing yet
		opts    Options
		held    []held
		now     time.Duration // the newcomer arrives this long after the start
		src     string
		wantOK  bool
		wantWhy string
		victim  int // index into held; -1: nobody evicted
	}{
		{name: "longest silent wins",
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1", at: 500 * time.Millisecond}, {src: "10.0.3.1:1", at: time.Second}},
			now:  3 * time.Second, src: "192.0.2.1:1", wantOK: true, victim: 0},
		{name: "a newcomer that has sent nothing evicts nobody", silent: true,
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}, {src: "10.0.3.1:1"}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: false, wantWhy: ReasonTooManyUnauth, victim: -1},
		{name: "the last byte read restarts the silence",
			held: []held{{src: "10.0.1.1:1", read: 2500 * time.Millisecond}, {src: "10.0.2.1:1", at: time.Second}, {src: "10.0.3.1:1", read: 2900 * time.Millisecond}},
			now:  3 * time.Second, src: "192.0.2.1:1", wantOK: true, victim: 1},
		{name: "nothing silent for the minimum: newcomer refused",
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}, {src: "10.0.3.1:1"}},
			now:  900 * time.Millisecond, src: "192.0.2.1:1", wantOK: false, wantWhy: ReasonTooManyUnauth, victim: -1},
		{name: "all handshaking: newcomer refused",
			held: []held{{src: "10.0.1.1:1", read: 9100 * time.Millisecond}, {src: "10.0.2.1:1", read: 9500 * time.Millisecond, stage: 1}, {src: "10.0.3.1:1", read: 9900 * time.Millisecond, stage: 2}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: false, wantWhy: ReasonTooManyUnauth, victim: -1},
		{name: "lower stage first",
			held: []held{{src: "10.0.1.1:1", stage: 2}, {src: "10.0.2.1:1", stage: 1}, {src: "10.0.3.1:1", at: 8 * time.Second}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: true, victim: 2},
		{name: "a lower stage under the minimum is passed over",
			held: []held{{src: "10.0.1.1:1", stage: 2}, {src: "10.0.2.1:1", read: 9500 * time.Millisecond}, {src: "10.0.3.1:1", read: 9800 * time.Millisecond}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: true, victim: 0},
		{name: "connections without a Conn are never evicted",
			held: []held{{src: "10.0.1.1:1", plain: true}, {src: "10.0.2.1:1", plain: true}, {src: "10.0.3.1:1", at: 9 * time.Second}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: true, victim: 2},
		{name: "a longer minimum",
			opts: Options{EvictAfterSilence: 5 * time.Second},
			held: []held{{src: "10.0.1.1:1", at: 6 * time.Second}, {src: "10.0.2.1:1", at: 6 * time.Second}, {src: "10.0.3.1:1", at: 6 * time.Second}},
			now:  10 * time.Second, src: "192.0.2.1:1", wantOK: false, wantWhy: ReasonTooManyUnauth, victim: -1},
		{name: "per-source cap refuses, evicts nobody",
			opts: Options{MaxUnauthPerSource: 1},
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.2.1:1"}, {src: "10.0.3.1:1"}},
			now:  10 * time.Second, src: "10.0.1.1:2", wantOK: false, wantWhy: ReasonTooManyPerSrc, victim: -1},
		{name: "per-network cap refuses, evicts nobody",
			opts: Options{MaxUnauthPerPrefix: 2},
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.1.2:1"}, {src: "10.0.3.1:1"}},
			now:  10 * time.Second, src: "10.0.1.3:1", wantOK: false, wantWhy: ReasonTooManyPerNet, victim: -1},
		{name: "per-network cap below the total: the network's own silent slot is not taken",
			opts: Options{MaxUnauth: 10, MaxUnauthPerPrefix: 3},
			held: []held{{src: "10.0.1.1:1"}, {src: "10.0.1.2:1"}, {src: "10.0.1.3:1"}},
			now:  10 * time.Second, src: "10.0.1.4:1", wantOK: false, wantWhy: ReasonTooManyPerNet, victim: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			start := clk.Now()
			o := tt.opts
			if o.MaxUnauth == 0 {
				o.MaxUnauth = len(tt.held)
			}
			l := newLimiter(clk, o)
			conns := make([]*fakeConn, len(tt.held))
			for i, h := range tt.held {
				clk.t = start.Add(h.at)
				conns[i] = &fakeConn{}
				conns[i].stage.Store(int32(h.stage))
				if h.read != 0 {
					conns[i].last.Store(start.Add(h.read).UnixNano())
				}
				var c Conn = conns[i]
				if h.plain {
					c = nil
				}
				if _, ok, why := l.Admit(h.src, c); !ok {
					t.Fatalf("held %d (%s) refused: %s", i, h.src, why)
				}
			}
			clk.t = start.Add(tt.now)
			before := l.Unauthenticated()
			newcomer := &fakeConn{}
			if !tt.silent {
				newcomer.last.Store(clk.Now().UnixNano())
			}
			release, ok, why := l.Admit(tt.src, newcomer)
			if ok != tt.wantOK || why != tt.wantWhy {
				t.Fatalf("newcomer %s: admitted %v (%q), want %v (%q)", tt.src, ok, why, tt.wantOK, tt.wantWhy)
			}
			assertEvicted(t, "held", conns, tt.victim)
			if after := l.Unauthenticated(); after != before && !(ok && tt.victim < 0 && after == before+1) {
				t.Errorf("Unauthenticated %d → %d", before, after)
			}
			if ok {
				release()
			}
		})
	}
}

// TestEvictReleaseCounts: the victim's own release, which its handler calls
// when the eviction ends its handshake (here from inside Evict, which
// deadlocks if Admit still holds its lock), does not count twice; counts
// return to zero once everybody is released.
func TestEvictReleaseCounts(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxUnauth: 3, MaxUnauthPerSource: 3, MaxUnauthPerPrefix: 3})
	var releases []func()
	var conns []*fakeConn
	for i := range 3 {
		c := &fakeConn{}
		rel, ok, why := l.Admit(fmt.Sprintf("10.0.%d.1:1", i), c)
		if !ok {
			t.Fatal(why)
		}
		c.onEvict.Store(&rel)
		conns = append(conns, c)
		releases = append(releases, rel)
		clk.Add(100 * time.Millisecond) // 10.0.0.1, the first, is silent longest
	}
	clk.Add(2 * time.Second)
	done := make(chan struct{})
	var rel func()
	go func() {
		defer close(done)
		var ok bool
		newcomer := &fakeConn{}
		newcomer.last.Store(clk.Now().UnixNano())
		rel, ok, _ = l.Admit("10.0.0.2:1", newcomer)
		if !ok {
			t.Error("newcomer refused although three connections were silent for 2s")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Admit deadlocked: Evict called with the lock held")
	}
	releases = append(releases, rel)
	evicted := 0
	for _, c := range conns {
		evicted += int(c.evicted.Load())
	}
	if evicted != 1 {
		t.Fatalf("%d evictions, want 1", evicted)
	}
	if n := l.Unauthenticated(); n != 3 {
		t.Fatalf("Unauthenticated = %d after one eviction, want 3", n)
	}
	if conns[0].evicted.Load() != 1 {
		t.Fatal("the victim is not the connection silent longest")
	}
	if a, p := l.UnauthenticatedFrom("10.0.0.1"); a != 0 || p != 1 {
		t.Fatalf("UnauthenticatedFrom(10.0.0.1) = %d, %d; want 0 (evicted) and 1 (the newcomer in its /24)", a, p)
	}
	for _, r := range releases {
		r()
		r()
	}
	if n := l.Unauthenticated(); n != 0 || len(l.held.src) != 0 || len(l.held.net) != 0 || len(l.tickets) != 0 {
		t.Fatalf("after all releases: %d unauthenticated, %v, %v, %d tickets", n, l.held.src, l.held.net, len(l.tickets))
	}
}

// TestEvictConcurrent: admissions, evictions and releases from several
// goroutines keep the counts whole (run with -race).
func TestEvictConcurrent(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxUnauth: 16, MaxUnauthPerSource: 1000, MaxUnauthPerPrefix: 1000})
	var evictions atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var mine []func()
			for i := range 300 {
				c := &fakeConn{}
				c.last.Store(clk.Now().UnixNano()) // spoke on arrival, then went silent
				rel, ok, _ := l.Admit(fmt.Sprintf("10.%d.%d.1:1", g, i%200), c)
				if !ok {
					continue
				}
				evict := func() { evictions.Add(1); rel() }
				c.onEvict.Store(&evict) // an eviction before this line only misses the count
				mine = append(mine, rel)
				if i%3 == 0 {
					clk.Add(time.Second)
				}
				if n := l.Unauthenticated(); n > 16 {
					t.Errorf("Unauthenticated = %d, over the cap", n)
					return
				}
			}
			for _, r := range mine {
				r()
			}
		})
	}
	wg.Wait()
	if evictions.Load() == 0 {
		t.Error("no eviction although the cap was reached with silent connections")
	}
	if n := l.Unauthenticated(); n != 0 || len(l.tickets) != 0 || len(l.held.src) != 0 || len(l.held.net) != 0 {
		t.Errorf("after all releases: %d unauthenticated, %d tickets", n, len(l.tickets))
	}
}
