// Package ratelimit protects the gateway against brute force and handshake
// floods (M19): it counts failed authentications per source address and per
// person in a sliding window, blocks a source or person that reaches its limit
// for a while, and caps the number of connections that have not yet
// authenticated, in total, per source address and per network prefix (/24
// for IPv4, /64 for IPv6 by default), so that no address and no network can
// take more than its share of the slots while others wait. When the total
// cap is reached, a newcomer takes the slot of the admitted connection that
// has been silent longest, if it has been silent for at least
// Options.EvictAfterSilence (see Admit). A newcomer that finds the cap
// reached may wait for a slot in a waiting room of its own size
// (Options.MaxParked), held to the same per-source and per-prefix shares
// (see Park).
//
// The package is pure logic: it reads time only through an injected clock,
// starts no goroutines and keeps all state in memory (a restart forgets
// blocks; persistent lock-outs are the store's business). A Limiter is safe
// for concurrent use.
//
// Memory stays bounded under a spray from many addresses: entries that hold
// neither a failure inside the window nor an active block are dropped when they
// are next looked at and by a sweep that Failure runs now and then, and the
// number of tracked sources and persons is capped (Options.MaxTracked). When a
// table is full, failures of sources (or persons) it cannot track are counted
// together in one shared overflow entry, and once that entry reaches the limit
// every untracked source is refused until its block ends. That fails closed: a
// spray large enough to fill the table may also refuse new, innocent addresses
// for one block period, but never lets an attacker escape counting by using
// more addresses. Sources already tracked keep their own counts.
package ratelimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults used for zero (or negative) Options fields.
const (
	DefaultWindow             = 10 * time.Minute
	DefaultMaxPerSource       = 10
	DefaultMaxPerPerson       = 20
	DefaultBlock              = 15 * time.Minute
	DefaultMaxUnauth          = 100
	DefaultMaxUnauthPerSource = 10
	DefaultMaxUnauthPerPrefix = 25
	DefaultPrefixV4           = 24
	DefaultPrefixV6           = 64
	DefaultMaxTracked         = 100_000
	DefaultEvictAfterSilence  = time.Second
)

// Reasons Admit gives when it refuses a connection. They are fixed strings so
// that callers can put them into audit events and metrics labels.
const (
	ReasonSourceBlocked = "source blocked after failed logins"
	ReasonTooManyUnauth = "too many unauthenticated connections"
	ReasonTooManyPerSrc = "too many unauthenticated connections from this source"
	ReasonTooManyPerNet = "too many unauthenticated connections from this network"
	// ReasonEvicted is not a refusal of Admit: it is what a caller says
	// of a connection whose Conn.Evict was called.
	ReasonEvicted = "evicted: silent while the gateway was full"
)

const (
	fullSweepMinInterval  = time.Second // a full table is swept at most this often
	periodicSweepInterval = time.Minute // upper bound for the regular sweep interval
)

// Options configures a Limiter. Zero fields take the defaults named in each
// comment.
type Options struct {
	Window             time.Duration    // failures are counted within this sliding window; default 10m
	MaxPerSource       int              // failures per source address (IP, port ignored) before it is blocked; default 10
	MaxPerPerson       int              // failures per person id before that person is blocked (from all sources); default 20
	Block              time.Duration    // how long a block lasts; default 15m
	MaxUnauth          int              // concurrent unauthenticated connections in total; default 100
	MaxUnauthPerSource int              // concurrent unauthenticated connections per source IP; default 10
	MaxUnauthPerPrefix int              // the same per network prefix (see PrefixV4, PrefixV6); default 25
	PrefixV4           int              // prefix length that groups IPv4 sources; default 24
	PrefixV6           int              // prefix length that groups IPv6 sources; default 64
	MaxTracked         int              // sources, and separately persons, tracked at once; default 100000
	EvictAfterSilence  time.Duration    // silence after which a connection may be evicted for a newcomer when the total cap is reached; default 1s
	MaxParked          int              // connections waiting in Park at once; default ParkingSize(MaxUnauth, 0)
	Now                func() time.Time // clock; default time.Now
}

// Limiter counts failed logins and open unauthenticated connections. Create it
// with New.
type Limiter struct {
	o Options

	mu        sync.Mutex
	sources   table
	persons   table
	unauth    int       // unauthenticated connections admitted and not yet released
	held      shares    // the same per source and prefix key; at most MaxUnauth entries each
	tickets   []*ticket // the admitted connections themselves; len(tickets) == unauth
	lastSweep time.Time

	// park is the waiting room (Park), with a lock of its own: it never
	// needs the counts above, and its newcomers do not queue behind Admit.
	park waitingRoom
}

// Conn is what Admit needs of a connection to evict it later for a
// newcomer, and Park to push it out of the waiting room. Admit calls
// LastRead and Stage, Park calls LastRead, with a lock held, so both must
// return at once (an atomic load).
type Conn interface {
	// LastRead returns when the client last sent a byte; the zero time
	// while it has sent none (its silence then counts from admission).
	LastRead() time.Time
	// Stage says how far the handshake has come, 0 before anything
	// happened. Among the connections silent long enough, the lowest
	// stage is evicted first, and within a stage the longest silent.
	Stage() int
	// Evict closes the connection. Admit and Park call it at most once
	// each, after releasing their lock, and possibly while the connection
	// is being released by its own handler: it must not block, and must
	// do nothing once the connection has authenticated.
	Evict()
}

// ticket is one admitted connection that has not been released.
type ticket struct {
	key, pfx string
	conn     Conn      // nil: never evicted
	admitted time.Time // silence counts from here until the first byte
	idx      int       // position in Limiter.tickets; -1 once released or evicted
}

// New returns a Limiter with the given options, defaults filled in.
func New(o Options) *Limiter {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxPerSource <= 0 {
		o.MaxPerSource = DefaultMaxPerSource
	}
	if o.MaxPerPerson <= 0 {
		o.MaxPerPerson = DefaultMaxPerPerson
	}
	if o.Block <= 0 {
		o.Block = DefaultBlock
	}
	if o.MaxUnauth <= 0 {
		o.MaxUnauth = DefaultMaxUnauth
	}
	if o.MaxUnauthPerSource <= 0 {
		o.MaxUnauthPerSource = DefaultMaxUnauthPerSource
	}
	if o.MaxUnauthPerPrefix <= 0 {
		o.MaxUnauthPerPrefix = DefaultMaxUnauthPerPrefix
	}
	if o.PrefixV4 <= 0 || o.PrefixV4 > 32 {
		o.PrefixV4 = DefaultPrefixV4
	}
	if o.PrefixV6 <= 0 || o.PrefixV6 > 128 {
		o.PrefixV6 = DefaultPrefixV6
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = DefaultMaxTracked
	}
	if o.EvictAfterSilence <= 0 {
		o.EvictAfterSilence = DefaultEvictAfterSilence
	}
	if o.MaxParked <= 0 {
		o.MaxParked = ParkingSize(o.MaxUnauth, 0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{
		o:       o,
		sources: newTable(o.MaxTracked),
		persons: newTable(o.MaxTracked),
		held:    newShares(o),
		park:    newWaitingRoom(o),
	}
}

// Failure records a failed authentication from source ("host:port" or a bare
// address) for person, which may be "" when the key belongs to nobody. It
// reports whether the source or the person became blocked by this very
// failure, so that the caller audits each block exactly once.
//
// Failures that arrive while the source (or person) is already blocked, from
// connections admitted before the block began, are not counted: the block
// already refuses new attempts, and counting would only extend it by accident.
func (l *Limiter) Failure(source, person string) (sourceBlocked, personBlocked bool) {
	now := l.o.Now()
	key := SourceKey(source)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.maybeSweep(now)
	sourceBlocked = l.sources.fail(key, now, l.o.Window, l.o.MaxPerSource, l.o.Block)
	if person != "" {
		personBlocked = l.persons.fail(person, now, l.o.Window, l.o.MaxPerPerson, l.o.Block)
	}
	return sourceBlocked, personBlocked
}

// Success records a successful authentication. It clears the person's pending
// failures (a person who got in has shown they hold the credential, so earlier
// typos should not add up towards a block), but it leaves any active block in
// place and deliberately resets nothing for the source: a sprayer that holds
// one valid key must not be able to wipe the count of the failures it makes
// with all the others.
func (l *Limiter) Success(source, person string) {
	_ = source // see the doc comment: the source's count is kept on purpose
	if person == "" {
		return
	}
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.persons.clearFailures(person, now, l.o.Window)
}

// SourceBlocked reports whether new attempts from source are refused, and if
// so until when.
func (l *Limiter) SourceBlocked(source string) (bool, time.Time) {
	now := l.o.Now()
	key := SourceKey(source)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sources.blocked(key, now, l.o.Window)
}

// PersonBlocked reports whether new attempts for person are refused, from any
// source, and if so until when. The empty person is never blocked.
func (l *Limiter) PersonBlocked(person string) (bool, time.Time) {
	if person == "" {
		return false, time.Time{}
	}
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.persons.blocked(person, now, l.o.Window)
}

// UnblockSource lifts the block of source (an address, with or without
// port) and forgets its failures; it reports whether it was blocked. For
// operators who know why the failures happened (`tandem unblock`).
func (l *Limiter) UnblockSource(source string) bool {
	return l.unblock(&l.sources, SourceKey(source))
}

// UnblockPerson lifts the block of person and forgets their failures; it
// reports whether they were blocked.
func (l *Limiter) UnblockPerson(person string) bool {
	return l.unblock(&l.persons, person)
}

func (l *Limiter) unblock(t *table, key string) bool {
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := t.m[key]
	if !ok {
		return false
	}
	was := now.Before(e.blockedUntil)
	delete(t.m, key)
	return was
}

// Admit is called when a TCP connection arrives, before the SSH handshake. It
// refuses the connection (ok false, with a reason) when the source is blocked
// or when the cap on unauthenticated connections for this source address or
// for its network prefix is reached. Otherwise it counts the connection and
// returns release, which the caller calls once the connection has
// authenticated or has ended, whichever comes first; calling release again
// does nothing.
//
// When the total cap is reached, a newcomer that has already sent bytes
// (c.LastRead is set: the caller held it back until its client spoke) is
// not refused at once: the admitted connection (with a non-nil Conn) that
// has been silent longest, at least EvictAfterSilence, loses its slot to it
// and is evicted (see Conn for the order). Honest clients speak at once and
// keep speaking until they are in; a connection that sends nothing holds
// its slot for free, so an attacker's cheapest flood is the first to go.
// Only when no connection qualifies is the newcomer refused. A newcomer
// that has sent nothing is refused when the cap is reached, as before: if
// silent newcomers could evict, a flood of them would keep every slot
// younger than EvictAfterSilence and nobody would get in. The per-source
// and per-network caps never evict: an attacker could otherwise use its own
// share to push out others.
//
// Finding the victim is a linear scan of the admitted connections, done
// only when the total cap is reached: MaxUnauth is at most a few thousand,
// each step is two atomic loads, so a scan takes microseconds, less than
// the accept and handshake it stands in front of, and needs no second
// structure to keep ordered on every byte a client sends.
func (l *Limiter) Admit(source string, c Conn) (release func(), ok bool, reason string) {
	now := l.o.Now()
	key := SourceKey(source)
	pfx := PrefixKey(key, l.o.PrefixV4, l.o.PrefixV6)

	l.mu.Lock()
	if b, _ := l.sources.blocked(key, now, l.o.Window); b {
		l.mu.Unlock()
		return nil, false, ReasonSourceBlocked
	}
	if why := l.held.refusal(key, pfx); why != "" {
		l.mu.Unlock()
		return nil, false, why
	}
	var victim *ticket
	if l.unauth >= l.o.MaxUnauth {
		if c == nil || c.LastRead().IsZero() {
			l.mu.Unlock()
			return nil, false, ReasonTooManyUnauth
		}
		if victim = l.victimLocked(now); victim == nil {
			l.mu.Unlock()
			return nil, false, ReasonTooManyUnauth
		}
		l.dropLocked(victim)
	}
	t := &ticket{key: key, pfx: pfx, conn: c, admitted: now, idx: len(l.tickets)}
	l.tickets = append(l.tickets, t)
	l.unauth++
	l.held.add(key, pfx)
	l.mu.Unlock()

	// Outside the lock: Evict closes a socket, and whatever it does must
	// not hold up every other admission.
	if victim != nil {
		victim.conn.Evict()
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if t.idx >= 0 {
			l.dropLocked(t)
		}
	}, true, ""
}

// victimLocked returns the connection Admit evicts when the total cap is
// reached, or nil. Callers hold l.mu.
func (l *Limiter) victimLocked(now time.Time) *ticket {
	var best *ticket
	var bestStage int
	var bestSilence time.Duration
	for _, t := range l.tickets {
		if t.conn == nil {
			continue
		}
		last := t.admitted
		if r := t.conn.LastRead(); r.After(last) {
			last = r
		}
		silence := now.Sub(last)
		if silence < l.o.EvictAfterSilence {
			continue
		}
		stage := t.conn.Stage()
		if best == nil || stage < bestStage || stage == bestStage && silence > bestSilence {
			best, bestStage, bestSilence = t, stage, silence
		}
	}
	return best
}

// dropLocked takes t out of the counts, once. Callers hold l.mu.
func (l *Limiter) dropLocked(t *ticket) {
	last := l.tickets[len(l.tickets)-1]
	l.tickets[t.idx] = last
	last.idx = t.idx
	l.tickets[len(l.tickets)-1] = nil
	l.tickets = l.tickets[:len(l.tickets)-1]
	t.idx = -1
	l.unauth--
	l.held.remove(t.key, t.pfx)
}

// EvictAfterSilence returns Options.EvictAfterSilence, defaults filled
// in: how long a connection may stay silent before it may be evicted, and
// so how long a newcomer in Park waits for its client's first bytes.
func (l *Limiter) EvictAfterSilence() time.Duration { return l.o.EvictAfterSilence }

// Unauthenticated returns the number of admitted connections not yet
// released, for metrics.
func (l *Limiter) Unauthenticated() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unauth
}

// shares counts connections per source key and per prefix key against
// the per-source and per-prefix caps (Options.MaxUnauthPerSource,
// MaxUnauthPerPrefix). Admit's admitted connections and Park's waiting
// ones each have their own, counted apart; the caller holds the lock that
// guards them.
type shares struct {
	perSource, perPrefix int
	src, net             map[string]int // only what is held now: no zero entries
}

func newShares(o Options) shares {
	return shares{perSource: o.MaxUnauthPerSource, perPrefix: o.MaxUnauthPerPrefix,
		src: make(map[string]int), net: make(map[string]int)}
}

// refusal is why source key, in network pfx, may not take one more
// share, or "": the source's cap is checked before the network's.
func (s *shares) refusal(key, pfx string) string {
	if s.src[key] >= s.perSource {
		return ReasonTooManyPerSrc
	}
	if s.net[pfx] >= s.perPrefix {
		return ReasonTooManyPerNet
	}
	return ""
}

func (s *shares) add(key, pfx string) {
	s.src[key]++
	s.net[pfx]++
}

// remove gives back a share that add took.
func (s *shares) remove(key, pfx string) {
	decrement(s.src, key)
	decrement(s.net, pfx)
}

// decrement lowers m[k] and drops the entry at zero, so the map holds
// only what is held now.
func decrement(m map[string]int, k string) {
	if n := m[k] - 1; n > 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

// UnauthenticatedFrom returns the number of admitted connections not yet
// released from source's address and from its network prefix.
func (l *Limiter) UnauthenticatedFrom(source string) (addr, prefix int) {
	key := SourceKey(source)
	pfx := PrefixKey(key, l.o.PrefixV4, l.o.PrefixV6)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held.src[key], l.held.net[pfx]
}

// maybeSweep drops stale entries from both tables every sweep interval, and
// also (at most once a second) when a table is full, so that a full table gets
// room again as soon as old entries expire. It runs inside Failure instead of
// a goroutine so the Limiter has nothing to stop. Callers hold l.mu.
func (l *Limiter) maybeSweep(now time.Time) {
	interval := min(l.o.Window, periodicSweepInterval)
	since := now.Sub(l.lastSweep)
	full := l.sources.full() || l.persons.full()
	if since < interval && !(full && since >= fullSweepMinInterval) {
		return
	}
	l.lastSweep = now
	l.sources.sweep(now, l.o.Window)
	l.persons.sweep(now, l.o.Window)
}

// SourceKey returns the key failures of a remote address are counted under:
// the IP address of "host:port" with the port dropped, IPv4-mapped IPv6
// addresses turned into plain IPv4 and any IPv6 zone removed. IPv6 addresses
// count as a whole (no aggregation into /64 networks). A string that is not an
// IP address is used as it is, so unusual transports still get counted.
func SourceKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		if _, err := netip.ParseAddr(host[1 : len(host)-1]); err == nil {
			host = host[1 : len(host)-1] // "[2001:db8::1]" without a port
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return ip.Unmap().WithZone("").String()
}

// PrefixKey returns the network a source belongs to for the per-prefix cap:
// the address (as SourceKey gives it) masked to v4bits for IPv4 or v6bits
// for IPv6, in CIDR form ("192.0.2.0/24", "2001:db8:1:2::/64"). A source
// that is not an IP address is its own prefix.
func PrefixKey(source string, v4bits, v6bits int) string {
	ip, err := netip.ParseAddr(SourceKey(source))
	if err != nil {
		return SourceKey(source)
	}
	bits := v6bits
	if ip.Is4() {
		bits = v4bits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// entry is the state kept per source or person.
type entry struct {
	failures     []time.Time // failures inside the window, oldest first; fewer than the limit
	blockedUntil time.Time   // zero or in the past when not blocked
}

// stale reports whether the entry carries no information any more: no block
// and no failure inside the window.
func (e *entry) stale(now time.Time, window time.Duration) bool {
	if now.Before(e.blockedUntil) {
		return false
	}
	return len(e.failures) == 0 || !e.failures[len(e.failures)-1].After(now.Add(-window))
}

// prune drops failures that have left the window.
func (e *entry) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	i := 0
	for i < len(e.failures) && !e.failures[i].After(cut) {
		i++
	}
	if i > 0 {
		e.failures = append(e.failures[:0], e.failures[i:]...)
	}
}

// table maps keys to entries, with at most max entries plus one shared
// overflow entry for keys that found the table full.
type table struct {
	max      int
	m        map[string]*entry
	overflow entry
}

func newTable(max int) table {
	return table{max: max, m: make(map[string]*entry)}
}

func (t *table) full() bool { return len(t.m) >= t.max }

// lookup returns the entry of key, or nil when the key is not tracked. A stale
// entry is removed on the way, so that it frees its slot.
func (t *table) lookup(key string, now time.Time, window time.Duration) *entry {
	e := t.m[key]
	if e != nil && e.stale(now, window) {
		delete(t.m, key)
		return nil
	}
	return e
}

// fail counts one failure for key and reports whether it started a block.
func (t *table) fail(key string, now time.Time, window time.Duration, limit int, block time.Duration) bool {
	e := t.lookup(key, now, window)
	if e == nil {
		if t.full() {
			e = &t.overflow
		} else {
			e = &entry{}
			t.m[key] = e
		}
	}
	if now.Before(e.blockedUntil) {
		return false
	}
	e.prune(now, window)
	e.failures = append(e.failures, now)
	if len(e.failures) < limit {
		return false
	}
	// The limit is reached: block, and start counting afresh once the block
	// ends. Keeping the slice short also bounds the memory of one entry.
	e.failures = e.failures[:0]
	e.blockedUntil = now.Add(block)
	return true
}

// blocked reports whether key is blocked now and until when. A key the table
// does not track shares the overflow entry's block.
func (t *table) blocked(key string, now time.Time, window time.Duration) (bool, time.Time) {
	e := t.lookup(key, now, window)
	if e == nil {
		e = &t.overflow
	}
	if now.Before(e.blockedUntil) {
		return true, e.blockedUntil
	}
	return false, time.Time{}
}

// clearFailures forgets the pending failures of key but keeps a block.
func (t *table) clearFailures(key string, now time.Time, window time.Duration) {
	if e := t.lookup(key, now, window); e != nil {
		e.failures = e.failures[:0]
		if e.stale(now, window) {
			delete(t.m, key)
		}
	}
}

// sweep removes every stale entry and prunes the overflow entry.
func (t *table) sweep(now time.Time, window time.Duration) {
	for k, e := range t.m {
		if e.stale(now, window) {
			delete(t.m, k)
		}
	}
	t.overflow.prune(now, window)
}
