package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/proxyproto"
	"tandem.dev/tandem/internal/ratelimit"
	"tandem.dev/tandem/internal/testenv"
)

// Eviction (M19, M30): with the unauthenticated connections at their cap
// (10 here), a person who speaks takes the slot of a connection that has
// sent nothing for evict_after_silence; connections that keep talking keep
// theirs, and newcomers that say nothing take nobody's. The floods come from
// addresses in distinct /24s of 127.0.0.0/8, so that the per-network share
// does not help and only the total cap is in play. kex_timeout is long in
// the first tests, so that no silent connection ends on its own while the
// test looks.

const evictLimits = "limits: {unauthenticated: 10, kex_timeout: 15s}"

// holder is a connection that, after an optional first write, sends
// nothing; closed is done once the gateway has closed it.
type holder struct {
	nc     net.Conn
	closed chan struct{}
}

// hold dials the rig from ip, writes first (if any) and then reads until
// the gateway closes the connection.
func hold(t *testing.T, r *rig, ip string, first []byte) *holder {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{nc: nc, closed: make(chan struct{})}
	t.Cleanup(func() { nc.Close(); <-h.closed })
	if len(first) > 0 {
		if _, err := nc.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		defer close(h.closed)
		_ = nc.SetReadDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(io.Discard, nc)
	}()
	return h
}

func (h *holder) isClosed() bool {
	select {
	case <-h.closed:
		return true
	default:
		return false
	}
}

func countClosed(hs []*holder) int {
	n := 0
	for _, h := range hs {
		if h.isClosed() {
			n++
		}
	}
	return n
}

// evictedEvents returns the auth.failure events that say a connection was
// evicted.
func evictedEvents(r *rig) []audit.Event {
	var out []audit.Event
	for _, e := range r.sink.Events() {
		if e.Type == audit.AuthFailure && e.Attrs[audit.KeyEvicted] == "true" {
			out = append(out, e)
		}
	}
	return out
}

// TestEvictSilentForPerson: ten silent connections from ten networks fill
// the cap. Three more that say nothing are refused and evict nobody; a
// person who logs in takes the slot of one silent connection, which ends
// with one auth.failure event that says why.
func TestEvictSilentForPerson(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, evictLimits, nil, map[string]string{"alice": alicePub})
	var held []*holder
	for i := range 10 {
		held = append(held, hold(t, r, fmt.Sprintf("127.2.%d.1", i+1), nil))
	}
	waitUntil(t, 5*time.Second, "ten silent connections hold the cap", func() bool { return r.srv.limit.Unauthenticated() == 10 })
	time.Sleep(1200 * time.Millisecond) // past evict_after_silence (1s)

	// Newcomers that say nothing wait evict_after_silence for their
	// first byte, then are closed; they take no slot.
	var late []*holder
	for i := range 3 {
		late = append(late, hold(t, r, fmt.Sprintf("127.4.%d.1", i+1), nil))
	}
	waitUntil(t, 10*time.Second, "silent newcomers closed", func() bool { return countClosed(late) == len(late) })
	if n := countClosed(held); n != 0 {
		t.Fatalf("silent newcomers evicted %d held connections", n)
	}

	c, _, err := r.dialFrom("127.1.0.1", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatalf("person's login with the cap held by silent connections: %v", err)
	}
	c.Close()
	waitUntil(t, 5*time.Second, "the evicted connection closed", func() bool { return countClosed(held) >= 1 })
	if n := countClosed(held); n != 1 {
		t.Errorf("%d silent connections closed for one login, want 1", n)
	}
	waitUntil(t, 5*time.Second, "an auth.failure event for the eviction", func() bool { return len(evictedEvents(r)) == 1 })
	e := evictedEvents(r)[0]
	if e.Attrs["reason"] != ratelimit.ReasonEvicted || e.Attrs["stage"] != "kex" || !strings.HasPrefix(e.Source, "127.2.") {
		t.Errorf("eviction event = %+v", e)
	}
	// The person's slot is released by the gateway's handshake goroutine
	// once authentication is done, which the client may see a moment
	// earlier: wait for the count to settle.
	waitUntil(t, 5*time.Second, "Unauthenticated = 9 after the login (one evicted, the person in)", func() bool {
		return r.srv.limit.Unauthenticated() == 9
	})
}

// TestEvictDribblers: connections that keep sending bytes without getting
// anywhere (a version line, one byte every 100 ms) are spared while they
// are young, as an honest client on a slow link is: before authentication
// bytes count only for evict_after_silence (1 s) after a connection came,
// so a dribbler is evictable 2 s after it came, not before. With the cap
// held by dribblers, the person waits in parking and takes a dribbler's
// slot once it is that old.
func TestEvictDribblers(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, "handshake_timeout: 40s, limits: {unauthenticated: 10, kex_timeout: 30s}", nil, map[string]string{"alice": alicePub})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var held []*holder
	began := time.Now()
	for i := range 10 {
		h := hold(t, r, fmt.Sprintf("127.2.%d.1", i+1), []byte("SSH-2.0-"))
		held = append(held, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 { // 20 s at most; the version line stays under 255 bytes
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := h.nc.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
	}
	waitUntil(t, 5*time.Second, "ten dribbling connections hold the cap", func() bool { return r.srv.limit.Unauthenticated() == 10 })
	time.Sleep(1200 * time.Millisecond) // older than evict_after_silence, never silent that long, not yet twice as old
	if n := countClosed(held); n != 0 {
		t.Fatalf("%d dribbling connections evicted before they were 2 s old", n)
	}

	c, _, err := r.dialFrom("127.1.0.1", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatalf("person's login with the cap held by dribbling connections: %v", err)
	}
	c.Close()
	if d := time.Since(began); d < 2*time.Second {
		t.Errorf("person got a dribbler's slot %v after the dribblers came, before they were 2 s old", d)
	}
	waitUntil(t, 5*time.Second, "one dribbler evicted", func() bool { return countClosed(held) >= 1 })
	if n := countClosed(held); n != 1 {
		t.Errorf("%d dribbling connections closed for one login, want 1", n)
	}
}

// TestEvictRedialFlood: 40 silent connections from 40 networks, re-dialled
// 250 ms after the gateway closes them, keep the cap (10) full for the
// whole test at the default kex_timeout; every one of the person's logins
// gets in.
func TestEvictRedialFlood(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, "limits: {unauthenticated: 10}", nil, map[string]string{"alice": alicePub})
	signer := loadSigner(t, aliceKey)
	ctx, stop := context.WithTimeout(context.Background(), 40*time.Second)
	var wg sync.WaitGroup
	var dials atomic.Int64
	for i := range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); silent(ctx, r.port, fmt.Sprintf("127.3.%d.1", i+1), 60, &dials) }()
	}
	defer func() { stop(); wg.Wait() }()
	waitUntil(t, 5*time.Second, "the flood holds the cap", func() bool { return r.srv.limit.Unauthenticated() == 10 })

	full := 0
	for i := range 10 {
		if r.srv.limit.Unauthenticated() == 10 {
			full++
		}
		c, _, err := r.dialFrom("127.1.0.1", "alice", ssh.PublicKeys(signer))
		if err != nil {
			for _, e := range r.sink.Events() {
				if e.Type == audit.AuthFailure && strings.HasPrefix(e.Source, "127.1.") {
					t.Logf("person's failure: %v", e.Attrs)
				}
			}
			t.Fatalf("login %d during the flood: %v", i+1, err)
		}
		c.Close()
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("flood: %d silent dials from 40 networks; cap full before %d of 10 logins; %d connections evicted for them",
		dials.Load(), full, len(evictedEvents(r)))
}

// TestEvictViaBalancer: behind a load balancer, connections are admitted
// by the client's address after the PROXY header, and evicted the same
// way: ten clients that send their header's worth and then nothing fill
// the cap; a person through the balancer gets in, and the event names
// the evicted client's address.
func TestEvictViaBalancer(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, "proxy_protocol: {from: [127.0.0.1/32]}, "+evictLimits, nil, map[string]string{"alice": alicePub})
	dst := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", r.port))
	for i := range 10 {
		client := netip.MustParseAddrPort(fmt.Sprintf("198.51.%d.7:4000", i+1))
		hold(t, r, "127.0.0.1", proxyproto.Encode(proxyproto.Header{Source: client, Destination: dst}))
	}
	waitUntil(t, 5*time.Second, "ten silent clients hold the cap", func() bool { return r.srv.limit.Unauthenticated() == 10 })
	time.Sleep(1200 * time.Millisecond)

	nc, err := net.DialTimeout("tcp", dst.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	person := netip.MustParseAddrPort("203.0.113.9:5000")
	if _, err := nc.Write(proxyproto.Encode(proxyproto.Header{Source: person, Destination: dst})); err != nil {
		t.Fatal(err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, dst.String(), &ssh.ClientConfig{User: "alice",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(loadSigner(t, aliceKey))},
		// test only: the gateway's identity is not the point here
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatalf("person through the balancer with the cap held: %v", err)
	}
	ssh.NewClient(cc, chans, reqs).Close()
	waitUntil(t, 5*time.Second, "an auth.failure event for the eviction", func() bool { return len(evictedEvents(r)) == 1 })
	if src := evictedEvents(r)[0].Source; !strings.HasPrefix(src, "198.51.") {
		t.Errorf("evicted connection recorded as %q, want a client's address behind the balancer", src)
	}
}

// TestParking: the waiting room (ratelimit.Limiter.Park, whose rules are
// tested there) pushes out a connection through its handle: a silent
// newcomer's TCP connection is closed, so its handler's read for the
// first bytes ends at once; one that has spoken stays.
func TestParking(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{MaxParked: 2})
	conn := func() (*preauthConn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return newPreauthConn(a, time.Now, 0), a
	}
	c1, tcp1 := conn()
	c2, _ := conn()
	c3, _ := conn()
	for i, c := range []*preauthConn{c1, c2} {
		if _, ok, why := lim.Park(fmt.Sprintf("192.0.2.%d:1", i+1), c); !ok {
			t.Fatalf("room for two, refused: %s", why)
		}
	}
	c2.read()
	if _, ok, why := lim.Park("192.0.2.3:1", c3); !ok || !c1.evicted() || c2.evicted() {
		t.Fatalf("third newcomer: parked %v (%s); c1 evicted %v, c2 (spoke) evicted %v; want the silent c1 out", ok, why, c1.evicted(), c2.evicted())
	}
	_ = tcp1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tcp1.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read on the pushed-out connection: %v, want it closed", err)
	}
}

// TestParkingPerSource: while every slot is held by connections that keep
// talking, a newcomer waits in parking for one to free up. One address
// that opens connection after connection, each sending a byte and then
// nothing, waits there no more than its per-source share, so it cannot
// fill the waiting room and turn everyone else away: the person waits
// and gets in once the talkers are done.
func TestParkingPerSource(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, "limits: {unauthenticated: 10, unauthenticated_per_source: 3, unauthenticated_per_prefix: 5, kex_timeout: 15s}",
		nil, map[string]string{"alice": alicePub})
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range 10 {
		h := hold(t, r, fmt.Sprintf("127.2.%d.1", i+1), []byte("SSH-2.0-"))
		wg.Add(1)
		go func() { // talks for about 2.5 s, then hangs up
			defer wg.Done()
			defer h.nc.Close()
			for range 25 {
				time.Sleep(100 * time.Millisecond)
				if _, err := h.nc.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
	}
	// Preauth is what the metrics show (tandem_connections_unauthenticated
	// and _waiting).
	waitUntil(t, 5*time.Second, "ten talking connections hold the cap", func() bool { u, _ := r.srv.Preauth(); return u == 10 })

	// Fifty from one address, each a byte and then silence: more than the
	// waiting room (four times the cap) holds.
	for range 50 {
		hold(t, r, "127.5.0.1", []byte("S"))
	}
	waitUntil(t, 5*time.Second, "the address's share waits", func() bool { _, w := r.srv.Preauth(); return w > 0 })
	time.Sleep(300 * time.Millisecond)
	if _, n := r.srv.Preauth(); n > 3 {
		t.Errorf("%d connections of one address wait in parking, want at most its share of 3", n)
	}
	c, _, err := r.dialFrom("127.1.0.1", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatalf("person's login while one address floods the waiting room: %v", err)
	}
	c.Close()
}

// TestPreauthLastRead: before authentication a connection's bytes count as
// activity only up to grace after it came; once it authenticates, every
// byte counts.
func TestPreauthLastRead(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	now := t0
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	p := newPreauthConn(a, func() time.Time { return now }, time.Second)
	if !p.LastRead().IsZero() {
		t.Fatalf("LastRead before any byte = %v, want zero", p.LastRead())
	}
	for _, tc := range []struct {
		at    time.Duration
		stage int32
		want  time.Duration
	}{
		{500 * time.Millisecond, preauthWaiting, 500 * time.Millisecond},
		{1500 * time.Millisecond, preauthWaiting, time.Second}, // dribbling past grace
		{1800 * time.Millisecond, preauthKex, time.Second},
		{1900 * time.Millisecond, preauthAuth, 1900 * time.Millisecond}, // authenticating: real bytes
	} {
		now = t0.Add(tc.at)
		p.reached(tc.stage)
		p.read()
		if got := p.LastRead().Sub(t0); got != tc.want {
			t.Errorf("byte at %v in stage %d: LastRead = +%v, want +%v", tc.at, tc.stage, got, tc.want)
		}
	}
}
