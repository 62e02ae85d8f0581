package ratelimit

import (
	"sync"
	"time"
)

// OverflowKey is the key under which a Budget counts the events of sources
// it cannot track any more because its table is full.
const OverflowKey = "other sources"

// DefaultBudgetPerMinute is the default rate of a Budget.
const DefaultBudgetPerMinute = 20

// Budget bounds how many events each source may cause per minute: a token
// bucket per source key that holds at most PerMinute tokens and refills at
// PerMinute per minute. The gateway uses it for the audit events of
// unauthenticated connections (M19, M30), so that no source can fill the
// audit disk; what it drops is counted per source, for a summary event.
//
// Memory is bounded like the Limiter's: at most MaxTracked sources; the
// sources beyond share one bucket under OverflowKey. A Budget is safe for
// concurrent use.
type Budget struct {
	perMinute  int
	maxTracked int
	now        func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped int
}

// NewBudget returns a Budget of perMinute events per source and minute
// (default 20), tracking at most maxTracked sources (default 10000), on
// the clock now (default time.Now).
func NewBudget(perMinute, maxTracked int, now func() time.Time) *Budget {
	if perMinute <= 0 {
		perMinute = DefaultBudgetPerMinute
	}
	if maxTracked <= 0 {
		maxTracked = 10_000
	}
	if now == nil {
		now = time.Now
	}
	return &Budget{perMinute: perMinute, maxTracked: maxTracked, now: now, buckets: map[string]*bucket{}}
}

// Allow takes one token from source's bucket. It reports false, and counts
// the event as dropped, when the bucket is empty.
func (b *Budget) Allow(source string) bool {
	key := SourceKey(source)
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.buckets[key]
	if bk == nil {
		if len(b.buckets) >= b.maxTracked {
			b.sweepLocked(now)
		}
		if len(b.buckets) >= b.maxTracked {
			key = OverflowKey
			bk = b.buckets[key]
		}
		if bk == nil {
			bk = &bucket{tokens: float64(b.perMinute), last: now}
			b.buckets[key] = bk
		}
	}
	b.refill(bk, now)
	if bk.tokens < 1 {
		bk.dropped++
		return false
	}
	bk.tokens--
	return true
}

func (b *Budget) refill(bk *bucket, now time.Time) {
	if d := now.Sub(bk.last); d > 0 {
		bk.tokens = min(float64(b.perMinute), bk.tokens+d.Minutes()*float64(b.perMinute))
		bk.last = now
	}
}

// TakeDropped returns how many events each source had dropped since the
// last call, and starts counting afresh. Sources whose bucket is full again
// and that dropped nothing are forgotten on the way.
func (b *Budget) TakeDropped() map[string]int {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out map[string]int
	for k, bk := range b.buckets {
		if bk.dropped > 0 {
			if out == nil {
				out = map[string]int{}
			}
			out[k] = bk.dropped
			bk.dropped = 0
		}
	}
	b.sweepLocked(now)
	return out
}

// sweepLocked forgets buckets that are full again and hold no drops.
func (b *Budget) sweepLocked(now time.Time) {
	for k, bk := range b.buckets {
		b.refill(bk, now)
		if bk.dropped == 0 && bk.tokens >= float64(b.perMinute) {
			delete(b.buckets, k)
		}
	}
}
