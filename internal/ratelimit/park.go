package ratelimit

import (
	"slices"
	"sync"
)

// waitingRoom holds connections that arrived while the unauthenticated
// connections were at their cap (Limiter.Park). Only a newcomer that has
// spoken may take a silent connection's slot (Admit): an honest client
// sends its version line the moment it connects, so it waits here for its
// first bytes one round trip, then until a slot is free or a connection
// has been silent for EvictAfterSilence (at most until the caller's
// deadline, the gateway's kex_timeout). An attacker's silent connection
// waits EvictAfterSilence and is closed without ever holding a slot.
//
// Two bounds keep the room from turning people away:
//
//   - The per-source and per-prefix caps on unauthenticated connections
//     apply to waiting connections too, counted apart from the admitted
//     ones: without them one address could fill the room with connections
//     that send a byte and then stall, and refuse everyone else. They are
//     checked first, and refuse without pushing anybody out, as in Admit:
//     an attacker could otherwise use its own share to push out others.
//   - At most max connections wait at once (Options.MaxParked); a newcomer
//     beyond pushes out the silent one waiting longest, or is refused when
//     all waiting ones have spoken. So a flood of silent newcomers cannot
//     fill the room for good, and cannot push out a person's connection
//     once it has spoken; before that, the connection stays parked for as
//     long as the flood takes to bring max newcomers.
//
// A connection pushed out keeps its shares until it leaves: its handler is
// still reading from it until it sees the connection closed.
type waitingRoom struct {
	max int // Options.MaxParked

	mu      sync.Mutex
	shares  shares    // held by the connections that entered and have not left
	n       int       // connections that entered and have not left
	waiting []*waiter // in the lot, oldest first
}

// waiter is one connection in the waiting room.
type waiter struct {
	key, pfx string
	conn     Conn // nil: never pushed out
}

func newWaitingRoom(o Options) waitingRoom {
	return waitingRoom{max: o.MaxParked, shares: newShares(o)}
}

// enter is Limiter.Park for the source key and prefix key.
func (r *waitingRoom) enter(key, pfx string, c Conn) (leave func() bool, ok bool, reason string) {
	w := &waiter{key: key, pfx: pfx, conn: c}
	r.mu.Lock()
	if why := r.shares.refusal(key, pfx); why != "" {
		r.mu.Unlock()
		return nil, false, why
	}
	var out *waiter
	if len(r.waiting) >= r.max {
		i := slices.IndexFunc(r.waiting, func(w *waiter) bool { return w.conn != nil && w.conn.LastRead().IsZero() })
		if i < 0 {
			r.mu.Unlock()
			return nil, false, ReasonTooManyUnauth
		}
		out = r.waiting[i]
		r.waiting = slices.Delete(r.waiting, i, i+1)
	}
	r.waiting = append(r.waiting, w)
	r.shares.add(key, pfx)
	r.n++
	r.mu.Unlock()
	// Outside the lock, as in Admit: Evict closes a socket, and whatever
	// it does must not hold up every other newcomer.
	if out != nil {
		out.conn.Evict()
	}
	left := false // guarded by r.mu
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if left {
			return false
		}
		left = true
		r.shares.remove(w.key, w.pfx)
		r.n--
		i := slices.Index(r.waiting, w)
		if i < 0 {
			return false
		}
		r.waiting = slices.Delete(r.waiting, i, i+1)
		return true
	}, true, ""
}

// parked returns the number of connections that entered and have not left.
func (r *waitingRoom) parked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// ParkingSize is the rule for Options.MaxParked: four times the cap on
// unauthenticated connections (maxUnauth, DefaultMaxUnauth when not
// positive), so that a person's connection, which speaks within a round
// trip, is pushed out only by a flood that brings that many new
// connections within that round trip (400 within, say, 100 ms at the
// default cap); but at most half of maxConnections (the gateway's
// max_connections, which waiting connections count against; not positive:
// no such cap), so that the others keep the other half.
func ParkingSize(maxUnauth, maxConnections int) int {
	if maxUnauth <= 0 {
		maxUnauth = DefaultMaxUnauth
	}
	n := 4 * maxUnauth
	if maxConnections > 0 {
		n = min(n, maxConnections/2)
	}
	return max(1, n)
}

// Park is called for a connection that found the unauthenticated
// connections at their cap (Admit refused it with ReasonTooManyUnauth) and
// is to wait for its client's first bytes and then for a slot, which it
// asks Admit for again. It refuses the connection (ok false, with a
// reason) when its source or its network already holds its share of the
// waiting room, and then when the room is full and every connection in it
// has spoken; when the room is full and one has not, the one that came
// first is pushed out (c.Evict, called at most once and without the lock
// held) to make room. See waitingRoom for why.
//
// leave ends the wait and gives the shares back, once: it reports whether
// c was still in the room, false when a newcomer pushed it out (or on a
// second call, which does nothing). A caller that got a slot for c from
// Admit after the wait gives it back when leave reports false: c was
// pushed out, and so closed, meanwhile. c may be nil, for a connection
// that is never pushed out.
func (l *Limiter) Park(source string, c Conn) (leave func() bool, ok bool, reason string) {
	key := SourceKey(source)
	return l.park.enter(key, PrefixKey(key, l.o.PrefixV4, l.o.PrefixV6), c)
}

// Parked returns the number of connections waiting in Park (including
// those pushed out whose leave has not been called yet), for metrics.
func (l *Limiter) Parked() int { return l.park.parked() }
