package gateway

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"tandem.dev/tandem/internal/ratelimit"
)

// preauthConn is the rate limiter's handle on a connection that has not
// authenticated yet (ratelimit.Conn): when the cap on unauthenticated
// connections is reached, a newcomer takes the slot of the one whose
// client has been silent longest (limits.evict_after_silence), and
// Evict closes its TCP connection. The handshake then fails on its own
// goroutine, which audits the eviction (handshakeFailed).
//
// The last byte's time is written by kexConn.Read and read by the rate
// limiter on the accept loop, hence the atomics.
type preauthConn struct {
	tcp  net.Conn
	now  func() time.Time
	last atomic.Int64 // UnixNano of the last byte read from the client; 0: none yet
	// stage: preauthWaiting until the client's KEXINIT is in,
	// preauthKex until its first authentication request, then
	// preauthAuth. Lower stages are evicted first: an attacker who
	// wants to push out a person who is slow to authenticate (a
	// passphrase, a security key's touch) must hold the other slots
	// with connections through a whole key exchange each.
	stage atomic.Int32
	state atomic.Int32 // preauthOpen, preauthEvicted, preauthDone

	// start and grace bound how long bytes keep a connection that is
	// still in its key exchange from counting as silent (LastRead).
	start time.Time
	grace time.Duration
}

const (
	preauthWaiting = iota
	preauthKex
	preauthAuth
)

const (
	preauthOpen = iota
	preauthEvicted
	preauthDone
)

// newPreauthConn makes the handle of a connection accepted now; grace is
// limits.evict_after_silence (0: bytes always count, as in tests of the
// rest).
func newPreauthConn(tcp net.Conn, now func() time.Time, grace time.Duration) *preauthConn {
	return &preauthConn{tcp: tcp, now: now, start: now(), grace: grace}
}

// read notes that the client sent bytes. nil-safe: connections without
// a handle (tests of kexConn) note nothing, and neither does one whose
// handshake is over (kexConn stays under the connection for its life).
func (p *preauthConn) read() {
	if p != nil && p.state.Load() == preauthOpen {
		p.last.Store(p.now().UnixNano())
	}
}

// reached raises the stage to st (it never goes down).
func (p *preauthConn) reached(st int32) {
	if p == nil {
		return
	}
	for {
		cur := p.stage.Load()
		if cur >= st || p.stage.CompareAndSwap(cur, st) {
			return
		}
	}
}

// LastRead implements ratelimit.Conn. Before authentication starts, bytes
// count only up to grace after the connection came: an honest client
// sends its version line and key-exchange offer at once and finishes the
// key exchange within a few round trips, so one that is still dribbling
// them — a byte a second keeps it from ever being silent — is as good as
// silent once that time is past, and may be evicted grace later. Once the
// client authenticates (a passphrase, a security key's touch), only real
// silence counts.
func (p *preauthConn) LastRead() time.Time {
	n := p.last.Load()
	if n == 0 {
		return time.Time{}
	}
	last := time.Unix(0, n)
	if p.grace > 0 && p.stage.Load() < preauthAuth {
		if limit := p.start.Add(p.grace); last.After(limit) {
			return limit
		}
	}
	return last
}

// Stage implements ratelimit.Conn.
func (p *preauthConn) Stage() int { return int(p.stage.Load()) }

// Evict implements ratelimit.Conn: it closes the connection unless the
// handshake has already ended (finish), so an authenticated connection is
// never cut by a late eviction.
func (p *preauthConn) Evict() {
	if p.state.CompareAndSwap(preauthOpen, preauthEvicted) {
		p.tcp.Close()
	}
}

// finish marks the handshake as over, whatever its outcome; it reports
// false when the connection was evicted first.
func (p *preauthConn) finish() bool {
	return p.state.CompareAndSwap(preauthOpen, preauthDone) || p.state.Load() == preauthDone
}

// evicted reports whether Evict closed the connection.
func (p *preauthConn) evicted() bool { return p != nil && p.state.Load() == preauthEvicted }

// admitPollEvery is how often a parked connection that has spoken asks
// the rate limiter again for a slot.
const admitPollEvery = 50 * time.Millisecond

// admitSpoken admits a connection the rate limiter refused because the
// unauthenticated connections were at their cap: it parks the connection
// in the rate limiter's waiting room (ratelimit.Limiter.Park, which holds
// the rules of who may wait) until its client's first bytes arrive, at
// most evict_after_silence, and then asks again, now as a newcomer that
// has spoken and may take a silent connection's slot, until it gets one
// or deadline (kex_timeout) passes. It returns the connection with the
// bytes read put back in front, the release of its slot, and false when
// the connection is to be closed.
func (s *Server) admitSpoken(ctx context.Context, conn net.Conn, pc *preauthConn, source string, deadline time.Time) (net.Conn, func(), bool) {
	refuse := func(reason string, spoke bool) (net.Conn, func(), bool) {
		s.log.Debug("connection refused", "source", source, "reason", reason, "spoke", spoke)
		s.metrics.ConnectionRefused(reason)
		return nil, nil, false
	}
	leave, ok, reason := s.limit.Park(source, pc)
	if !ok {
		return refuse(reason, false)
	}
	defer leave() // admitted or refused, it waits no more
	// deadline and the socket's deadlines are on the real clock (handleConn).
	_ = conn.SetReadDeadline(minTime(time.Now().Add(s.limit.EvictAfterSilence()), deadline))
	head := make([]byte, 256)
	n, _ := conn.Read(head)
	if n == 0 {
		return refuse(ratelimit.ReasonTooManyUnauth, false) // silent, gone or pushed out
	}
	pc.read()
	for {
		release, ok, reason := s.limit.Admit(source, pc)
		if ok {
			if !leave() { // pushed out between its read and pc.read
				release()
				return refuse(ratelimit.ReasonTooManyUnauth, true)
			}
			s.metrics.ConnectionAccepted()
			return &replayConn{Conn: conn, head: head[:n]}, release, true
		}
		if reason != ratelimit.ReasonTooManyUnauth || !time.Now().Add(admitPollEvery).Before(deadline) || pc.evicted() {
			return refuse(reason, true)
		}
		select {
		case <-ctx.Done():
			return refuse(reason, true)
		case <-time.After(admitPollEvery):
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// replayConn gives back the bytes admitSpoken read before the handshake
// began, then reads on.
type replayConn struct {
	net.Conn
	head []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
