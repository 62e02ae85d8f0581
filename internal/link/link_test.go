package link

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/testenv"
)

const wait = 10 * time.Second

func newKey(t *testing.T, curve elliptic.Curve) ssh.Signer { return testenv.NewSigner(t, curve) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var goodJoin = Join{Session: "0a1b2c3d4e", Person: "bob", Mode: "peer", KeyFP: "SHA256:" + strings.Repeat("A", 43), Source: "127.0.0.1:5000"}

// pair is two nodes: a dials, b listens. b's handler echoes what a join
// channel carries after writing who asked and for whom.
type pair struct {
	a, b     *Link
	aKey     ssh.Signer
	bKey     ssh.Signer
	addr     string
	handled  atomic.Int32
	lastPeer atomic.Value
}

func newPair(t *testing.T, keepAlive time.Duration, dialVia func(addr string) string) *pair {
	t.Helper()
	p := &pair{aKey: newKey(t, elliptic.P384()), bKey: newKey(t, elliptic.P384())}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	dial := p.addr
	if dialVia != nil {
		dial = dialVia(p.addr)
	}
	if p.b, err = New(Options{Node: "b", Key: p.bKey, Peers: []Peer{{Node: "a", Key: p.aKey.PublicKey()}}, KeepAlive: keepAlive, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	if p.a, err = New(Options{Node: "a", Key: p.aKey, Peers: []Peer{{Node: "b", Address: dial, Key: p.bKey.PublicKey()}}, KeepAlive: keepAlive, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- p.b.Serve(ctx, ln, func(ctx context.Context, peer string, j Join, nc ssh.NewChannel) {
			p.handled.Add(1)
			p.lastPeer.Store(peer)
			ch, reqs, err := nc.Accept()
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			defer ch.Close()
			_, _ = io.WriteString(ch, "hello "+peer+" for "+j.Person+"\n")
			_, _ = io.Copy(ch, ch)
		})
	}()
	t.Cleanup(func() {
		p.a.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(wait):
			t.Error("Serve did not return")
		}
	})
	return p
}

// readUntil reads from r until the output contains want.
func readUntil(t *testing.T, r io.Reader, want string) {
	t.Helper()
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		for !strings.Contains(got.String(), want) {
			n, err := r.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading for %q: %v; got %q", want, err, got.String())
		}
	case <-time.After(wait):
		t.Fatalf("no %q within %v", want, wait)
	}
}

// TestLinkJoin: a join channel reaches the holding node with the request
// as sent and the dialling node's name as authenticated; the connection
// is reused by the next join.
func TestLinkJoin(t *testing.T) {
	p := newPair(t, 0, nil)
	for i := range 2 {
		s, err := p.a.Open(context.Background(), "b", goodJoin)
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		readUntil(t, s, "hello a for bob\n")
		if _, err := io.WriteString(s, "ping\n"); err != nil {
			t.Fatal(err)
		}
		readUntil(t, s, "ping\n")
		if !s.Alive() {
			t.Error("a live link does not answer a probe")
		}
		s.Close()
	}
	if n := len(p.a.clients); n != 1 {
		t.Errorf("%d connections to b, want 1 reused", n)
	}
	if _, err := p.a.Open(context.Background(), "c", goodJoin); !errors.Is(err, ErrNoAddress) {
		t.Errorf("join to an unknown node: %v", err)
	}
}

// dialRaw logs in to addr as user with key (nil: no key) and the
// password and keyboard-interactive methods besides, which must never be
// asked for.
func dialRaw(t *testing.T, addr, user string, key ssh.Signer, hostKey ssh.PublicKey) (*ssh.Client, error) {
	t.Helper()
	asked := func() { t.Errorf("the link offered a method other than publickey") }
	auth := []ssh.AuthMethod{
		ssh.PasswordCallback(func() (string, error) { asked(); return "x", nil }),
		ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { asked(); return nil, nil }),
	}
	if key != nil {
		auth = append([]ssh.AuthMethod{ssh.PublicKeys(key)}, auth...)
	}
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: wait})
}

// TestLinkRefusesStrangers: the listener lets in only a peer's key under
// the peer's name, offers no other method, and hands a stranger nothing;
// the dialling side refuses a listener whose host key is not the peer's;
// a peer gets join channels only, well-formed ones.
func TestLinkRefusesStrangers(t *testing.T) {
	p := newPair(t, 0, nil)
	hk := p.bKey.PublicKey()
	for _, tc := range []struct {
		name string
		user string
		key  ssh.Signer
	}{
		{"no key", "a", nil},
		{"unknown key", "a", newKey(t, elliptic.P384())},
		{"unknown key of another type", "a", newKey(t, elliptic.P256())},
		{"the peer's key under another name", "c", p.aKey},
		{"the listener's own key", "b", p.bKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialRaw(t, p.addr, tc.user, tc.key, hk)
			if err == nil {
				c.Close()
				t.Fatal("logged in")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("refusal %v, want an authentication failure", err)
			}
		})
	}
	if n := p.handled.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for strangers", n)
	}

	// An impostor listening at b's address with another key: a refuses it
	// before sending anything.
	impostor, err := New(Options{Node: "b", Key: newKey(t, elliptic.P384()), Peers: []Peer{{Node: "a", Key: p.aKey.PublicKey()}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var impostorJoins atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = impostor.Serve(ctx, iln, func(_ context.Context, _ string, _ Join, nc ssh.NewChannel) {
			impostorJoins.Add(1)
			_ = nc.Reject(ssh.Prohibited, "no")
		})
	}()
	defer func() { cancel(); wg.Wait() }()
	a2, err := New(Options{Node: "a", Key: p.aKey, Peers: []Peer{{Node: "b", Address: iln.Addr().String(), Key: hk}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if _, err := a2.Open(context.Background(), "b", goodJoin); err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("join to an impostor: %v, want a host key mismatch", err)
	}
	if impostorJoins.Load() != 0 {
		t.Fatal("the impostor received a join")
	}

	// The peer itself: other channel types and malformed joins are refused.
	c, err := dialRaw(t, p.addr, "a", p.aKey, hk)
	if err != nil {
		t.Fatalf("the peer could not log in: %v", err)
	}
	defer c.Close()
	for _, tc := range []struct {
		typ   string
		extra []byte
		want  ssh.RejectionReason
	}{
		{"session", nil, ssh.UnknownChannelType},
		{"direct-tcpip", nil, ssh.UnknownChannelType},
		{JoinChannel, []byte("garbage"), ssh.Prohibited},
		{JoinChannel, Join{Session: "x;rm", Person: "bob", Mode: "peer", KeyFP: goodJoin.KeyFP}.Marshal(), ssh.Prohibited},
	} {
		_, _, err := c.OpenChannel(tc.typ, tc.extra)
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) || oe.Reason != tc.want {
			t.Errorf("channel %s %q: %v, want rejection %v", tc.typ, tc.extra, err, tc.want)
		}
	}
	if n := p.handled.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for refused channels", n)
	}
}

// TestLinkRejectsPeerKeyOfOtherType: New refuses a link key that is not
// P-384, the one type of the link, and a peer listed with the node's own
// key.
func TestLinkRejectsPeerKeyOfOtherType(t *testing.T) {
	if _, err := New(Options{Node: "a", Key: newKey(t, elliptic.P256())}); err == nil {
		t.Fatal("a P-256 link key was accepted")
	}
	own := newKey(t, elliptic.P384())
	if _, err := New(Options{Node: "a", Key: own, Peers: []Peer{{Node: "b", Key: own.PublicKey()}}}); err == nil {
		t.Fatal("a peer with this node's own key was accepted")
	}
}

// TestLinkCut: when the network between the nodes stops passing packets
// (nothing is closed), both ends notice within a few keep-alive intervals
// and end the join channels: the dialling side's read ends, and the
// holding side's handler returns.
func TestLinkCut(t *testing.T) {
	var cut *testenv.Cutter
	every := 100 * time.Millisecond
	p := newPair(t, every, func(addr string) string { cut = testenv.NewCutter(t, addr); return cut.Addr() })
	s, err := p.a.Open(context.Background(), "b", goodJoin)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, s, "hello a for bob\n")
	cut.Cut()
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, s); close(ended) }()
	select {
	case <-ended:
	case <-time.After(wait):
		t.Fatalf("the join channel still open %v after the cut (keep-alive %v)", wait, every)
	}
	if s.Alive() {
		t.Error("a cut link answers a probe")
	}
}

// TestLinkOpenUnanswered: a peer that logs the dialler in, answers its
// keep-alives, but never answers a join channel's open does not hold the
// join: Open gives up within the handshake timeout, and a channel the
// peer confirms afterwards is closed at once, so that no join nobody
// waits for stays attached there.
func TestLinkOpenUnanswered(t *testing.T) {
	aKey, bKey := newKey(t, elliptic.P384()), newKey(t, elliptic.P384())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan ssh.NewChannel, 1)
	// The hostile peer: channels neither accepted nor rejected.
	testenv.ServeAnyKey(ln, bKey, func(nch ssh.NewChannel) { held <- nch })
	const timeout = 300 * time.Millisecond
	a, err := New(Options{Node: "a", Key: aKey, Peers: []Peer{{Node: "b", Address: ln.Addr().String(), Key: bKey.PublicKey()}},
		KeepAlive: 50 * time.Millisecond, HandshakeTimeout: timeout, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	opened := make(chan error, 1)
	go func() {
		s, err := a.Open(context.Background(), "b", goodJoin)
		if err == nil {
			s.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err == nil {
			t.Fatal("Open succeeded on an unanswered channel")
		}
	case <-time.After(wait):
		t.Fatalf("Open still waiting %v for an answer (handshake timeout %v)", wait, timeout)
	}
	// The peer confirms late: the dialler closes the channel.
	ch, reqs, err := (<-held).Accept()
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, ch); close(ended) }()
	select {
	case <-ended:
	case <-time.After(wait):
		t.Fatal("a channel confirmed after Open gave up stays open")
	}
}

// TestLinkHandshakeFlood: a stranger who opens connections and sends
// nothing, as many as it likes, from one address, neither keeps a peer
// from linking nor holds a connection past the handshake timeout.
func TestLinkHandshakeFlood(t *testing.T) {
	p := newPair(t, 0, nil)
	// Another loopback address than the peer's: the stranger is another
	// machine.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: wait}
	var silent []net.Conn
	for i := range 3 * maxHandshakes {
		c, err := d.Dial("tcp", p.addr)
		if err != nil && i == 0 {
			t.Skipf("no second loopback address here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	time.Sleep(100 * time.Millisecond) // the listener has taken them all
	s, err := p.a.Open(context.Background(), "b", goodJoin)
	if err != nil {
		t.Fatalf("the peer could not link during a stranger's flood: %v", err)
	}
	readUntil(t, s, "hello a for bob\n")
	s.Close()
	// The stranger's connections end with the handshake timeout at most.
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(DefaultHandshakeTimeout + wait))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("a silent stranger's connection still open after the handshake timeout: %v", err)
		}
	}
}

// TestLinkJoinsBounded: a peer that opens join after join, never leaving,
// gets maxJoins of them at once and a refusal for the next; one that
// ends frees its place.
func TestLinkJoinsBounded(t *testing.T) {
	p := newPair(t, 0, nil)
	var streams []*Stream
	for i := range maxJoins {
		s, err := p.a.Open(context.Background(), "b", goodJoin)
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		streams = append(streams, s)
	}
	_, err := p.a.Open(context.Background(), "b", goodJoin)
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage {
		t.Fatalf("join %d: %v, want a refusal for too many joins", maxJoins+1, err)
	}
	streams[0].Close()
	deadline := time.Now().Add(wait)
	for {
		s, err := p.a.Open(context.Background(), "b", goodJoin)
		if err == nil {
			s.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a join after one ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range streams[1:] {
		s.Close()
	}
}
