// Package link is the internal link between the nodes of a cluster: SSH
// between the gateways, authenticated both ways by the nodes' own link
// keys, never an open port. A node that holds the person who runs
// `ssh -t gw join ID` opens one channel per join (JoinChannel) on its
// connection to the node that holds the session; that node decides the
// join again and hands the channel to the session as one more terminal.
//
// Who may use the link: the listener accepts only public-key logins with
// a key listed as a peer's link key (and the user name of that peer); no
// other method is offered, and a connection that does not log in within
// the handshake timeout is closed. The dialing side accepts only the host
// key configured for the peer it dials. Both sides probe the connection
// (keepalive@openssh.com) every KeepAlive; three probes without an answer
// close it, so a cut link ends its channels within a few seconds and the
// sessions behind them see their joiner leave.
//
// The package knows nothing of sessions or policy: it authenticates,
// carries join channels and keeps connections alive.
package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/cryptoprofile"
)

// JoinChannel is the channel type of one relayed join.
const JoinChannel = "tandem-join@tandem.dev"

// Defaults for Options.
const (
	DefaultKeepAlive        = time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	// maxHandshakes bounds the connections in their handshake at once,
	// and maxHandshakesPerSource those from one address: only peers log
	// in, so a few suffice, a flood of strangers cannot make the node
	// hold more, and one stranger cannot take every slot and so keep the
	// peers out for as long as it keeps reconnecting.
	maxHandshakes          = 32
	maxHandshakesPerSource = 2
	// missedProbes is how many keep-alive intervals without an answer
	// close a connection.
	missedProbes = 3
	// maxJoins bounds the joins one peer connection carries at once. An
	// honest peer stays far below (its persons' own connection and
	// channel limits apply there); a hostile one cannot make this node
	// hold a terminal, with its output queue, per channel it opens.
	maxJoins = 256
)

// Join is what the joining person's node asks of the node that holds the
// session. The holding node decides again on its own state; these fields
// are the joining node's view, which it must match.
type Join struct {
	Session  string // the session id
	Person   string // who joins
	Mode     string // the mode the joining node granted: peer or observer
	External bool   // the joining node counts them as external (M7)
	KeyFP    string // SHA256 fingerprint of the key the person logged in with
	Source   string // the person's address as the joining node saw it
}

// joinWire is Join on the wire (RFC 4251 strings and a boolean).
type joinWire struct {
	Session  string
	Person   string
	Mode     string
	External bool
	KeyFP    string
	Source   string
}

// Marshal encodes j as a channel's extra data.
func (j Join) Marshal() []byte { return ssh.Marshal(joinWire(j)) }

var (
	sessionID   = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
	fingerprint = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)
)

// maxJoin bounds a join request; real ones are a few hundred bytes.
const maxJoin = 2048

// ParseJoin decodes and checks a join request from a peer. It refuses
// anything but exactly one well-formed request: a peer is trusted to
// speak for its persons, not to send the holding node text it would
// print or store unchecked.
func ParseJoin(b []byte) (Join, error) {
	if len(b) > maxJoin {
		return Join{}, fmt.Errorf("join request of %d bytes (at most %d)", len(b), maxJoin)
	}
	var w joinWire
	if err := ssh.Unmarshal(b, &w); err != nil {
		return Join{}, fmt.Errorf("join request: %v", err)
	}
	j := Join(w)
	switch {
	case !bytes.Equal(j.Marshal(), b):
		return Join{}, errors.New("join request: not in canonical form")
	case !sessionID.MatchString(j.Session):
		return Join{}, errors.New("join request: malformed session id")
	case !printable(j.Person, 256) || j.Person == "":
		return Join{}, errors.New("join request: malformed person")
	case j.Mode != "peer" && j.Mode != "observer":
		return Join{}, fmt.Errorf("join request: mode must be peer or observer")
	case !fingerprint.MatchString(j.KeyFP):
		return Join{}, errors.New("join request: malformed key fingerprint")
	case !printable(j.Source, 256):
		return Join{}, errors.New("join request: malformed source")
	}
	return j, nil
}

// printable reports whether s is valid UTF-8 of at most max bytes without
// control characters.
func printable(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// Peer is another node as this one knows it.
type Peer struct {
	Node    string
	Address string        // where to dial it; "" if this node never dials it
	Key     ssh.PublicKey // its link key: its host key and its client key
}

// Options configure a Link.
type Options struct {
	Node    string     // this node's name, its user name towards peers
	Key     ssh.Signer // this node's link key
	Peers   []Peer
	Profile cryptoprofile.Profile // algorithms; the zero value takes bsi
	// KeepAlive is the probe interval; missedProbes missed answers in a
	// row close a connection. Default DefaultKeepAlive.
	KeepAlive        time.Duration
	HandshakeTimeout time.Duration // default DefaultHandshakeTimeout
	Logger           *slog.Logger
}

// Link is one node's end of its links to the peers: it accepts the peers'
// connections (Serve) and dials them (Open), one connection per peer,
// reused by every join and dialled again when it died.
type Link struct {
	o Options

	mu      sync.Mutex
	clients map[string]*client // node → its dialled connection
	closed  bool
	wg      sync.WaitGroup // the keep-alive goroutines of dialled connections
}

// client is one dialled connection to a peer.
type client struct {
	c    *ssh.Client
	done chan struct{} // closed when the connection has ended
}

// New checks the options and builds a Link.
func New(o Options) (*Link, error) {
	if o.Node == "" || o.Key == nil {
		return nil, errors.New("link: a node name and a link key are required")
	}
	if o.Profile.Name == "" {
		p, err := cryptoprofile.Get("bsi")
		if err != nil {
			return nil, err
		}
		o.Profile = p
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if t := o.Key.PublicKey().Type(); t != ssh.KeyAlgoECDSA384 {
		return nil, fmt.Errorf("link: the link key is %s; link keys are %s", t, ssh.KeyAlgoECDSA384)
	}
	own := o.Key.PublicKey().Marshal()
	for _, p := range o.Peers {
		// A peer listed with this node's own key could log in as that
		// peer with a copy of this node's key: every node has its own.
		if p.Key != nil && bytes.Equal(p.Key.Marshal(), own) {
			return nil, fmt.Errorf("link: peer %s is listed with this node's own link key; every node needs its own", p.Node)
		}
	}
	return &Link{o: o, clients: map[string]*client{}}, nil
}

// peerByKey returns the peer whose link key key is.
func (l *Link) peerByKey(key ssh.PublicKey) (Peer, bool) {
	m := key.Marshal()
	for _, p := range l.o.Peers {
		if p.Key != nil && bytes.Equal(p.Key.Marshal(), m) {
			return p, true
		}
	}
	return Peer{}, false
}

func (l *Link) peer(node string) (Peer, bool) {
	for _, p := range l.o.Peers {
		if p.Node == node {
			return p, true
		}
	}
	return Peer{}, false
}

// errNotPeer is every refusal of a login: the client learns nothing of
// why (which keys exist, which names).
var errNotPeer = errors.New("link: not a peer")

func (l *Link) serverConfig() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		Config:                  l.o.Profile.Config(),
		PublicKeyAuthAlgorithms: []string{ssh.KeyAlgoECDSA384},
		ServerVersion:           "SSH-2.0-Tandem-link",
		MaxAuthTries:            2,
		// No password or keyboard-interactive callback: only public
		// keys are ever offered, and only the peers' keys pass.
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			p, ok := l.peerByKey(key)
			if !ok || meta.User() != p.Node {
				return nil, errNotPeer
			}
			return &ssh.Permissions{Extensions: map[string]string{"node": p.Node}}, nil
		},
	}
	cfg.AddHostKey(l.o.Key)
	return cfg
}

// Handler serves one join channel a peer opened: it decides, then
// accepts or rejects nc, and returns when the join is over. peer is the
// node the connection authenticated as.
type Handler func(ctx context.Context, peer string, j Join, nc ssh.NewChannel)

// Serve accepts the peers' connections on ln until ctx ends, handing
// every join channel to handle in a goroutine of its own. It closes ln
// and every accepted connection when ctx ends and returns after every
// goroutine it started has ended.
func (l *Link) Serve(ctx context.Context, ln net.Listener, handle Handler) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := &handshakes{bySource: map[string]int{}}
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("link: accept: %w", err)
		}
		src := sourceOf(nc)
		if !slots.take(src) {
			l.o.Logger.Warn("link: too many handshakes at once; connection closed", "source", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.serveConn(ctx, nc, func() { slots.release(src) }, handle, &wg)
		}()
	}
}

// handshakes counts the accepted connections in their handshake, in all
// and by source address.
type handshakes struct {
	mu       sync.Mutex
	total    int
	bySource map[string]int
}

func (h *handshakes) take(src string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= maxHandshakes || h.bySource[src] >= maxHandshakesPerSource {
		return false
	}
	h.total++
	h.bySource[src]++
	return true
}

func (h *handshakes) release(src string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.bySource[src]--; h.bySource[src] == 0 {
		delete(h.bySource, src)
	}
}

// sourceOf is the address a connection comes from, without its port.
func sourceOf(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return nc.RemoteAddr().String()
}

// serveConn runs the handshake of one accepted connection (holding a
// handshake slot, which release gives back) and then serves its channels
// until it ends.
func (l *Link) serveConn(ctx context.Context, nc net.Conn, release func(), handle Handler, wg *sync.WaitGroup) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(l.o.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(nc, l.serverConfig())
	release()
	if err != nil {
		l.o.Logger.Warn("link: connection refused", "source", nc.RemoteAddr().String(), "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	defer sc.Close()
	peer := sc.Permissions.Extensions["node"]
	l.o.Logger.Info("link: peer connected", "peer", peer, "source", nc.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	wg.Add(2)
	go func() { defer wg.Done(); ssh.DiscardRequests(reqs) }()
	go func() { defer wg.Done(); keepAlive(sc, l.o.KeepAlive, done) }()
	joins := make(chan struct{}, maxJoins)
	for ch := range chans {
		if ch.ChannelType() != JoinChannel {
			_ = ch.Reject(ssh.UnknownChannelType, "the link carries joins only")
			continue
		}
		j, err := ParseJoin(ch.ExtraData())
		if err != nil {
			l.o.Logger.Warn("link: malformed join refused", "peer", peer, "err", err)
			_ = ch.Reject(ssh.Prohibited, err.Error())
			continue
		}
		select {
		case joins <- struct{}{}:
		default:
			l.o.Logger.Warn("link: too many joins open on the link; join refused", "peer", peer, "max", maxJoins)
			_ = ch.Reject(ssh.ResourceShortage, fmt.Sprintf("%d joins are open on this link, the most it carries", maxJoins))
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); defer func() { <-joins }(); handle(ctx, peer, j, ch) }()
	}
	l.o.Logger.Info("link: peer disconnected", "peer", peer)
}

// keepAlive probes conn every interval until done is closed; missedProbes
// intervals without an answer close conn (which ends done's owner).
func keepAlive(conn ssh.Conn, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !probe(conn, missedProbes*every) {
			conn.Close()
			return
		}
	}
}

// probe sends one keep-alive and reports whether an answer (any answer:
// a refusal is one too) came within timeout. On a time-out it closes conn,
// which also ends the probe's own goroutine.
func probe(conn ssh.Conn, timeout time.Duration) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-answered:
		return err == nil
	case <-t.C:
		conn.Close()
		return false
	}
}

// ErrNoAddress: the node is no peer this node dials.
var ErrNoAddress = errors.New("not a peer with an address in cluster.peers")

// Stream is one open join channel to a peer.
type Stream struct {
	ssh.Channel
	Requests <-chan *ssh.Request
	conn     ssh.Conn
	timeout  time.Duration
}

// Alive reports whether the link the stream runs on still answers: after
// the channel closed without an exit status, it tells a deliberate end by
// the holding node (the link answers) from a lost link.
func (s *Stream) Alive() bool { return probe(s.conn, s.timeout) }

// ErrNoAnswer: the peer did not answer a join channel's open within the
// handshake timeout.
var ErrNoAnswer = errors.New("no answer to the join")

// Open opens a join channel to node, dialling it first if there is no
// live connection. A rejection by the holding node comes back as
// *ssh.OpenChannelError with its reason. The holding node's answer is
// awaited for at most the handshake timeout (or until ctx ends): a peer
// that answers its keep-alives but never the open would hold the join
// for ever. A channel it confirms after Open gave up is closed at once,
// so that the holding node sees that joiner leave rather than keep one
// nobody is behind; the goroutine waiting for that answer ends with it
// or with the connection.
func (l *Link) Open(ctx context.Context, node string, j Join) (*Stream, error) {
	c, err := l.client(ctx, node)
	if err != nil {
		return nil, err
	}
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	answer := make(chan opened, 1)
	go func() {
		ch, reqs, err := c.c.OpenChannel(JoinChannel, j.Marshal())
		answer <- opened{ch, reqs, err}
	}()
	t := time.NewTimer(l.o.HandshakeTimeout)
	defer t.Stop()
	select {
	case o := <-answer:
		if o.err != nil {
			return nil, o.err
		}
		return &Stream{Channel: o.ch, Requests: o.reqs, conn: c.c, timeout: missedProbes * l.o.KeepAlive}, nil
	case <-t.C:
		err = fmt.Errorf("link to %s: %w within %v", node, ErrNoAnswer, l.o.HandshakeTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	go func() {
		if o := <-answer; o.err == nil {
			go ssh.DiscardRequests(o.reqs)
			_ = o.ch.Close()
		}
	}()
	return nil, err
}

// client returns the live connection to node, dialling it if needed.
// Dialling happens under l.mu: joins to one peer wait for one dial rather
// than racing several; the dial is bounded by the handshake timeout.
func (l *Link) client(ctx context.Context, node string) (*client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("link: closed")
	}
	if c := l.clients[node]; c != nil {
		select {
		case <-c.done:
		default:
			return c, nil
		}
	}
	p, ok := l.peer(node)
	if !ok || p.Address == "" || p.Key == nil {
		return nil, fmt.Errorf("node %q: %w", node, ErrNoAddress)
	}
	d := net.Dialer{Timeout: l.o.HandshakeTimeout}
	nc, err := d.DialContext(ctx, "tcp", p.Address)
	if err != nil {
		return nil, fmt.Errorf("link to %s: %w", node, err)
	}
	_ = nc.SetDeadline(time.Now().Add(l.o.HandshakeTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, p.Address, &ssh.ClientConfig{
		Config:            l.o.Profile.Config(),
		User:              l.o.Node,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(l.o.Key)},
		HostKeyCallback:   ssh.FixedHostKey(p.Key),
		HostKeyAlgorithms: []string{ssh.KeyAlgoECDSA384},
		ClientVersion:     "SSH-2.0-Tandem-link",
		Timeout:           l.o.HandshakeTimeout,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("link to %s: %w", node, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &client{c: ssh.NewClient(cc, chans, reqs), done: make(chan struct{})}
	l.clients[node] = c
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		alive := make(chan struct{})
		go func() { _ = c.c.Wait(); close(alive) }()
		keepAlive(c.c, l.o.KeepAlive, alive)
		<-alive
		close(c.done)
	}()
	return c, nil
}

// Close closes every dialled connection (their join channels end) and
// waits for their keep-alives; Open fails afterwards.
func (l *Link) Close() {
	l.mu.Lock()
	l.closed = true
	for _, c := range l.clients {
		c.c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
