package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newLimiter(c *fakeClock, o Options) *Limiter {
	o.Now = c.Now
	return New(o)
}

func TestDefaults(t *testing.T) {
	l := New(Options{})
	want := Options{Window: DefaultWindow, MaxPerSource: DefaultMaxPerSource, MaxPerPerson: DefaultMaxPerPerson,
		Block: DefaultBlock, MaxUnauth: DefaultMaxUnauth, MaxUnauthPerSource: DefaultMaxUnauthPerSource,
		MaxUnauthPerPrefix: DefaultMaxUnauthPerPrefix, PrefixV4: DefaultPrefixV4, PrefixV6: DefaultPrefixV6,
		MaxTracked: DefaultMaxTracked, EvictAfterSilence: DefaultEvictAfterSilence,
		MaxParked: 4 * DefaultMaxUnauth}
	got := l.o
	got.Now = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if l.o.Now == nil {
		t.Error("Now not defaulted")
	}
}

// step is one action in a scripted scenario: advance the clock, then record
// failures, then check the block state.
type step struct {
	advance      time.Duration
	failures     int
	source       string
	person       string
	wantNewSrc   bool // the last failure of this step started a source block
	wantNewPer   bool // the last failure of this step started a person block
	wantSrcBlock bool // source is blocked after the step
	wantPerBlock bool // person is blocked after the step
}

func TestFailureScenarios(t *testing.T) {
	const a, b, c = "192.0.2.1:50000", "192.0.2.2:50001", "192.0.2.3:50002"
	opts := Options{Window: 10 * time.Minute, MaxPerSource: 3, MaxPerPerson: 5, Block: 15 * time.Minute}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "blocks at exactly max",
			steps: []step{
				{failures: 2, source: a},
				{failures: 1, source: a, wantNewSrc: true, wantSrcBlock: true},
			},
		},
		{
			name: "port is ignored",
			steps: []step{
				{failures: 2, source: "192.0.2.1:1"},
				{failures: 1, source: "192.0.2.1:2", wantNewSrc: true, wantSrcBlock: true},
			},
		},
		{
			name: "window slides",
			steps: []step{
				{failures: 2, source: a},
				// The first two failures leave the window exactly now.
				{advance: 10 * time.Minute, failures: 1, source: a},
				{advance: time.Minute, failures: 1, source: a},
				// Three failures inside the window: 10m and 11m.
				{advance: time.Minute, failures: 1, source: a, wantNewSrc: true, wantSrcBlock: true},
			},
		},
		{
			name: "block expires",
			steps: []step{
				{failures: 3, source: a, wantNewSrc: true, wantSrcBlock: true},
				{advance: 15*time.Minute - time.Nanosecond, source: a, wantSrcBlock: true},
				{advance: time.Nanosecond, source: a},
				// Counting starts afresh after the block.
				{failures: 2, source: a},
				{failures: 1, source: a, wantNewSrc: true, wantSrcBlock: true},
			},
		},
		{
			name: "failures during a block neither count nor extend it",
			steps: []step{
				{failures: 3, source: a, wantNewSrc: true, wantSrcBlock: true},
				{advance: 14 * time.Minute, failures: 5, source: a, wantSrcBlock: true},
				{advance: time.Minute, source: a},
				{failures: 2, source: a},
			},
		},
		{
			name: "person blocked across sources",
			steps: []step{
				{failures: 2, source: a, person: "alice"},
				{failures: 2, source: b, person: "alice"},
				{failures: 1, source: c, person: "alice", wantNewPer: true, wantPerBlock: true},
				{source: a, person: "alice", wantPerBlock: true},
				{source: b, person: "bob"},
				{advance: 15 * time.Minute, source: c, person: "alice"},
			},
		},
		{
			name: "source and person blocked by the same failure",
			steps: []step{
				{failures: 2, source: a, person: "alice"},
				{failures: 2, source: b, person: "alice"},
				{failures: 1, source: b, person: "alice", wantNewSrc: true, wantNewPer: true, wantSrcBlock: true, wantPerBlock: true},
			},
		},
		{
			name: "unknown person counts only for the source",
			steps: []step{
				{failures: 3, source: a, wantNewSrc: true, wantSrcBlock: true},
				{source: a, person: "", wantSrcBlock: true},
			},
		},
		{
			name: "ipv6 with and without port",
			steps: []step{
				{failures: 1, source: "[2001:db8::1]:22"},
				{failures: 1, source: "2001:db8::1"},
				{failures: 1, source: "[2001:db8:0:0::1%eth0]:2222", wantNewSrc: true, wantSrcBlock: true},
				// A neighbour in the same /64 is a different source.
				{source: "[2001:db8::2]:22"},
			},
		},
		{
			name: "ipv4-mapped ipv6 is the ipv4 address",
			steps: []step{
				{failures: 2, source: "[::ffff:192.0.2.1]:22"},
				{failures: 1, source: "192.0.2.1:22", wantNewSrc: true, wantSrcBlock: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			l := newLimiter(clk, opts)
			for i, s := range tt.steps {
				clk.Add(s.advance)
				var gotSrc, gotPer bool
				for range s.failures {
					gotSrc, gotPer = l.Failure(s.source, s.person)
				}
				if gotSrc != s.wantNewSrc || gotPer != s.wantNewPer {
					t.Fatalf("step %d: Failure = (%v, %v), want (%v, %v)", i, gotSrc, gotPer, s.wantNewSrc, s.wantNewPer)
				}
				if got, until := l.SourceBlocked(s.source); got != s.wantSrcBlock {
					t.Fatalf("step %d: SourceBlocked(%q) = %v (until %v), want %v", i, s.source, got, until, s.wantSrcBlock)
				}
				if got, until := l.PersonBlocked(s.person); got != s.wantPerBlock {
					t.Fatalf("step %d: PersonBlocked(%q) = %v (until %v), want %v", i, s.person, got, until, s.wantPerBlock)
				}
			}
		})
	}
}

func TestBlockUntil(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxPerSource: 1, MaxPerPerson: 1, Block: time.Hour})
	start := clk.Now()
	l.Failure("198.51.100.7:1", "alice")
	if b, until := l.SourceBlocked("198.51.100.7:9"); !b || !until.Equal(start.Add(time.Hour)) {
		t.Errorf("SourceBlocked = %v, %v; want true, %v", b, until, start.Add(time.Hour))
	}
	if b, until := l.PersonBlocked("alice"); !b || !until.Equal(start.Add(time.Hour)) {
		t.Errorf("PersonBlocked = %v, %v; want true, %v", b, until, start.Add(time.Hour))
	}
	if b, until := l.SourceBlocked("198.51.100.8:1"); b || !until.IsZero() {
		t.Errorf("other source blocked: %v, %v", b, until)
	}
}

func TestSecondSourceAdmittedWhileFirstBlocked(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxPerSource: 2})
	l.Failure("192.0.2.1:1", "")
	l.Failure("192.0.2.1:2", "")
	if _, ok, reason := l.Admit("192.0.2.1:3", nil); ok || reason != ReasonSourceBlocked {
		t.Errorf("blocked source admitted: ok=%v reason=%q", ok, reason)
	}
	release, ok, reason := l.Admit("192.0.2.2:3", nil)
	if !ok {
		t.Fatalf("second source refused: %q", reason)
	}
	release()
	clk.Add(DefaultBlock)
	release, ok, _ = l.Admit("192.0.2.1:4", nil)
	if !ok {
		t.Fatal("source still refused after its block ended")
	}
	release()
}

func TestSuccess(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxPerSource: 3, MaxPerPerson: 3})
	const src = "192.0.2.1:1"
	l.Failure(src, "alice")
	l.Failure(src, "alice")
	l.Success(src, "alice")
	// The person's count starts again; the source's does not.
	srcBlocked, perBlocked := l.Failure(src, "alice")
	if !srcBlocked {
		t.Error("Success reset the source count")
	}
	if perBlocked {
		t.Error("Success did not reset the person count")
	}
	// Success never lifts an active block.
	l.Failure("192.0.2.2:1", "bob")
	l.Failure("192.0.2.2:1", "bob")
	l.Failure("192.0.2.3:1", "bob")
	l.Success("192.0.2.4:1", "bob")
	if b, _ := l.PersonBlocked("bob"); !b {
		t.Error("Success lifted a person block")
	}
	l.Success(src, "") // no person: nothing to do, must not panic
}

func TestAdmitCaps(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxUnauth: 5, MaxUnauthPerSource: 2})

	var releases []func()
	admit := func(src string, wantOK bool, wantReason string) {
		t.Helper()
		release, ok, reason := l.Admit(src, nil)
		if ok != wantOK || reason != wantReason {
			t.Fatalf("Admit(%q) = %v, %q; want %v, %q", src, ok, reason, wantOK, wantReason)
		}
		if ok {
			releases = append(releases, release)
		} else if release != nil {
			t.Fatalf("Admit(%q) refused but returned a release func", src)
		}
	}
	admit("192.0.2.1:1", true, "")
	admit("192.0.2.1:2", true, "")
	admit("192.0.2.1:3", false, ReasonTooManyPerSrc)
	admit("[2001:db8::1]:1", true, "")
	admit("[2001:db8::1]:2", true, "")
	admit("[2001:db8::1]:3", false, ReasonTooManyPerSrc)
	admit("192.0.2.2:1", true, "")
	admit("192.0.2.3:1", false, ReasonTooManyUnauth)
	if n := l.Unauthenticated(); n != 5 {
		t.Fatalf("Unauthenticated = %d, want 5", n)
	}

	// Release is idempotent: calling the first one three times frees one slot.
	for range 3 {
		releases[0]()
	}
	if n := l.Unauthenticated(); n != 4 {
		t.Fatalf("after release: Unauthenticated = %d, want 4", n)
	}
	admit("192.0.2.1:4", true, "")
	admit("192.0.2.4:1", false, ReasonTooManyUnauth)

	for _, r := range releases {
		r()
		r()
	}
	if n := l.Unauthenticated(); n != 0 {
		t.Fatalf("after all releases: Unauthenticated = %d, want 0", n)
	}
	if len(l.held.src) != 0 {
		t.Fatalf("per-source counts left behind: %v", l.held.src)
	}
}

func TestMemoryBounded(t *testing.T) {
	clk := newClock()
	const maxTracked = 100
	l := newLimiter(clk, Options{MaxPerSource: 3, MaxTracked: maxTracked, Window: 10 * time.Minute})

	// A spray from many more sources than the table holds.
	for i := range 10 * maxTracked {
		l.Failure(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256), "")
	}
	if n := len(l.sources.m); n > maxTracked {
		t.Fatalf("tracked %d sources, cap %d", n, maxTracked)
	}
	// The overflow entry took the failures of the untracked sources and so
	// blocks every source it does not track, including new, innocent ones.
	if b, _ := l.SourceBlocked("203.0.113.9:1"); !b {
		t.Error("untracked source not blocked although the overflow entry hit the limit")
	}
	// A tracked source still has its own count.
	if b, _ := l.SourceBlocked("10.0.0.0:1"); b {
		t.Error("tracked source with one failure blocked")
	}

	// Once the window and the block have passed, the sweep inside Failure
	// empties the table.
	clk.Add(DefaultBlock + time.Second)
	l.Failure("198.51.100.1:1", "")
	if n := len(l.sources.m); n != 1 {
		t.Fatalf("after sweep: tracked %d sources, want 1", n)
	}
	if b, _ := l.SourceBlocked("203.0.113.9:1"); b {
		t.Error("overflow block outlived its end")
	}
}

func TestStaleEntryRemovedOnAccess(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{Window: time.Minute})
	l.Failure("192.0.2.1:1", "alice")
	clk.Add(time.Minute)
	l.SourceBlocked("192.0.2.1:1")
	l.PersonBlocked("alice")
	if len(l.sources.m) != 0 || len(l.persons.m) != 0 {
		t.Errorf("stale entries kept: %d sources, %d persons", len(l.sources.m), len(l.persons.m))
	}
}

func TestFullTableSweptForRoom(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxTracked: 2, Window: 10 * time.Second, MaxPerSource: 100})
	l.Failure("192.0.2.1:1", "")
	l.Failure("192.0.2.2:1", "")
	// Both entries go stale well before the regular sweep interval.
	clk.Add(11 * time.Second)
	l.Failure("192.0.2.3:1", "")
	if _, ok := l.sources.m["192.0.2.3"]; !ok {
		t.Errorf("new source not tracked after its full table was swept: %v", l.sources.m)
	}
}

func TestConcurrentUse(t *testing.T) {
	clk := newClock()
	l := newLimiter(clk, Options{MaxPerSource: 1000, MaxUnauth: 1000, MaxUnauthPerSource: 1000})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				src := fmt.Sprintf("192.0.2.%d:%d", g, i)
				if release, ok, _ := l.Admit(src, nil); ok {
					l.Failure(src, "alice")
					l.SourceBlocked(src)
					release()
				}
			}
		})
	}
	wg.Wait()
	if n := l.Unauthenticated(); n != 0 {
		t.Errorf("Unauthenticated = %d after all releases", n)
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1:22", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]:22", "2001:db8::1"},
		{"[2001:DB8:0::1]:22", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"[fe80::1%eth0]:22", "fe80::1"},
		{"[::ffff:192.0.2.1]:22", "192.0.2.1"},
		{"::1", "::1"},
		{"pipe", "pipe"},
		{"example.org:22", "example.org"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := SourceKey(tt.in); got != tt.want {
			t.Errorf("SourceKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzSourceKey checks that SourceKey never panics and that a key that is an
// IP address maps to itself, so that a bare address fed back in lands in the
// same bucket as the "host:port" it came from.
func FuzzSourceKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1:22", "[2001:db8::1]:22", "::1", "[fe80::1%eth0]:1", "[::ffff:1.2.3.4]:5", "a:b:c", "[]:", "[", "[[::1]]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := SourceKey(s)
		if _, err := netip.ParseAddr(k); err != nil {
			return
		}
		if k2 := SourceKey(k); k2 != k {
			t.Errorf("SourceKey not idempotent for an address: %q -> %q -> %q", s, k, k2)
		}
		if strings.Contains(k, "%") {
			t.Errorf("SourceKey(%q) = %q kept a zone", s, k)
		}
	})
}

func BenchmarkFailureAndSourceBlocked(b *testing.B) {
	clk := newClock()
	l := newLimiter(clk, Options{})
	srcs := make([]string, 4096)
	for i := range srcs {
		srcs[i] = fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := srcs[i%len(srcs)]
		l.Failure(s, "alice")
		l.SourceBlocked(s)
		i++
		if i%1000 == 0 {
			clk.Add(time.Second)
		}
	}
}
