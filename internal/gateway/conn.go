package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/netutil"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// clientConn is one authenticated SSH connection of one person: the
// outer connection to the gateway, or a jump connection inside it.
//
// st, person and key are the configuration in force, the person and the
// key as of the last decision: every new channel works on a fresh copy
// (refresh), so a reload, a removed key or a lock applies to an open
// connection from its next channel on (M2, M4, M5), not only to new
// logins.
type clientConn struct {
	srv    *Server
	st     *state
	conn   ssh.Conn
	source string
	person *config.Person
	key    *config.Key
	keyFP  string                // the fingerprint the person authenticated with
	outer  *clientConn           // for a jump connection: the connection it travels in
	tcp    net.Conn              // the client's TCP connection (outer connections only)
	ack    *netutil.QuickAckConn // tcp's immediate acknowledgements (outer connections only)
	slot   *connSlot             // counts the channels open on this connection; shared by copies

	// refused holds the kinds of channel and global request this
	// connection was refused and audited for (auditRefusedOnce); only
	// serve's goroutine uses it.
	refused map[string]bool
}

// closeTransport closes the TCP connection the client's channels travel
// over (the outer one, for a jump connection). Closing a net.Conn never
// waits on the client, unlike a channel's CLOSE message, so this is the
// enforcement of last resort for a client that stopped reading.
//
// The TCP connection is aborted (SO_LINGER 0: a reset), not closed
// gracefully: a client that reads nothing would otherwise keep the
// connection, and the kernel's buffers for it, half-open until its
// unsent data timed out.
func (c *clientConn) closeTransport() {
	r := c.root()
	if tc, ok := r.tcp.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = r.conn.Close()
}

// root is the outermost connection: c itself, or the one a jump
// connection travels in.
func (c *clientConn) root() *clientConn {
	for c.outer != nil {
		c = c.outer
	}
	return c
}

// refresh returns a copy of c that decides on the configuration and the
// lock state in force now: the person and their key are looked up again.
// A person removed from the configuration, a key no longer registered to
// them or a lock makes it fail; so does CheckPerson (obligations lapsed,
// key expired) — the error explains itself to the person. gone reports
// that the connection itself has lost its right to exist (person, key or
// lock), so the caller closes it.
func (c *clientConn) refresh() (fresh *clientConn, gone bool, err error) {
	st := c.srv.state.Load()
	id := c.person.ID
	p := st.cfg.Person(id)
	if p == nil {
		return nil, true, fmt.Errorf("%s is no longer in the gateway's configuration", id)
	}
	k := keyByFingerprint(p, c.keyFP)
	if k == nil {
		return nil, true, fmt.Errorf("the key %s is no longer registered to %s", c.keyFP, id)
	}
	lock := c.srv.lockReason(id)
	if lock != "" {
		return nil, true, fmt.Errorf("%s is locked: %s", id, lock)
	}
	if d := st.engine.CheckPerson(p, k, c.srv.now(), lock); d.Verdict != policy.Allow {
		return nil, false, errors.New(d.Message())
	}
	cc := *c
	cc.st, cc.person, cc.key = st, p, k
	return &cc, false, nil
}

func keyByFingerprint(p *config.Person, fp string) *config.Key {
	for i := range p.Keys {
		if p.Keys[i].Fingerprint == fp {
			return &p.Keys[i]
		}
	}
	return nil
}

// refuseChannel refuses a new channel because the connection's person may
// no longer work (see refresh), and audits it, once per reason while the
// connection stays open.
func (c *clientConn) refuseChannel(nch ssh.NewChannel, err error, gone bool) {
	c.auditRefusedOnce("denied "+err.Error(), audit.SessionDeniedEvent{Target: c.who(), Channel: channelKind(nch), Reason: err.Error(), ConnectionClosed: &gone}.Event())
	_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Lines(err.Error()))
}

// who is the connection's person and address, as its audit events name
// them before a session names its host.
func (c *clientConn) who() audit.Target {
	return audit.Target{Person: c.person.ID, Source: c.source}
}

// route says where a connection's session channels go.
type route struct {
	host     *config.Host // nil: the gateway itself
	hostName string       // as the client named it, also when unknown
	login    string
	jump     bool
}

func (c *clientConn) identify(perms *ssh.Permissions) error {
	if perms == nil {
		return fmt.Errorf("no permissions")
	}
	c.person = c.st.cfg.Person(perms.Extensions[extPerson])
	if c.person == nil {
		return fmt.Errorf("person %q vanished", perms.Extensions[extPerson])
	}
	c.keyFP = perms.Extensions[extKey]
	c.key = keyByFingerprint(c.person, c.keyFP)
	if c.key == nil {
		return fmt.Errorf("key %s of %s vanished", c.keyFP, c.person.ID)
	}
	return nil
}

// parseUser splits the user-name route "login%host". A name without '%'
// addresses the gateway itself.
func parseUser(user string) (login, host string, routed bool) {
	i := strings.LastIndexByte(user, '%')
	if i < 0 {
		return "", "", false
	}
	return user[:i], user[i+1:], true
}

// The longest login and host name a route or a forward's destination may
// give: Linux's login names are shorter than LOGIN_NAME_MAX (256 bytes
// with the NUL), DNS names at most 253 bytes. Every refused channel on a
// route audits its login and host name, the login once more in the
// policy's reason, and a refused forward its destination three times.
const (
	maxRouteLogin = 255
	maxRouteHost  = 253
)

// routeTooLong explains why user, the SSH user name of an outer
// connection (login%host, or a plain name that is no route) or of a jump
// connection (the login), names a login or host no system has, or returns
// "". Refused at login, so that such a name never reaches an event per
// channel (the login events themselves keep only its first bytes and its
// hash).
func routeTooLong(user string, jump bool) string {
	login, host, routed := parseUser(user)
	if jump {
		login, host, routed = user, "", true
	}
	switch {
	case !routed:
		return ""
	case len(login) > maxRouteLogin:
		return fmt.Sprintf("the login in your user name is %d bytes long; logins have at most %d", len(login), maxRouteLogin)
	case len(host) > maxRouteHost:
		return fmt.Sprintf("the host in your user name is %d bytes long; host names have at most %d", len(host), maxRouteHost)
	}
	return ""
}

// maxRefusedKinds bounds the kinds of refusal one connection has audited:
// the kind is the client's text, so a client naming a new channel type
// each time would otherwise still write an event per try.
const maxRefusedKinds = 16

// maxKindBytes is the longest channel type an event names in full: RFC
// 4250 §4.6.1 allows names of 64 characters; a longer one is cut, so that
// a client cannot put a packet's worth of text into the audit log.
const maxKindBytes = 64

// channelKind is a new channel's type as its events name it, cut at
// maxKindBytes.
func channelKind(nch ssh.NewChannel) string {
	kind := nch.ChannelType()
	if len(kind) > maxKindBytes {
		kind = kind[:maxKindBytes] + "…"
	}
	return kind
}

// auditRefusedOnce audits a refusal that repeats alike (a channel type
// other than session and direct-tcpip, remote forwarding, a channel past
// the connection's cap) the first time a connection is refused for its
// kind, and for at most maxRefusedKinds kinds. The refusal itself is sent
// every time; the event is the same each time, and a client repeating the
// request in a loop would otherwise write an fsync'd event per try and
// fill the audit log (M30), as x11-req and auth-agent-req would per
// channel (startLimits.forwards).
func (c *clientConn) auditRefusedOnce(kind string, e audit.Event) {
	if c.refused[kind] || len(c.refused) >= maxRefusedKinds {
		return
	}
	if c.refused == nil {
		c.refused = map[string]bool{}
	}
	c.refused[kind] = true
	c.srv.record(e)
}

// globalRequest refuses a connection-level request. Remote port
// forwarding (tcpip-forward) is never offered by the gateway.
func (c *clientConn) globalRequest(r *ssh.Request) {
	if r.Type == "tcpip-forward" {
		c.auditRefusedOnce("remote", audit.ForwardDeniedEvent{Target: c.who(), Kind: "remote", Reason: "remote forwarding is not supported"}.Event())
	}
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// serve answers the connection's global requests and dispatches its
// channels until the connection ends; it returns after every channel
// handler it started has ended. One loop serves both, so an idle
// connection costs one goroutine here, not two.
func (c *clientConn) serve(ctx context.Context, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, rt route) {
	if !rt.jump {
		if login, host, ok := parseUser(c.conn.User()); ok {
			rt = route{hostName: host, login: login} // host: looked up per channel
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for chans != nil || reqs != nil {
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
			} else {
				c.globalRequest(r)
			}
		case nch, ok := <-chans:
			if !ok {
				chans = nil
			} else {
				c.dispatch(ctx, nch, rt, &wg)
			}
		}
	}
}

// dispatch starts the handler of a new channel that admit lets in, or
// refuses it. It is a function of its own, never inlined, so that its
// locals are not part of serve's frame: serve's goroutine waits for the
// whole connection, and the garbage collector shrinks a waiting
// goroutine's stack only while the frames on it need less than a quarter
// of it (4 KiB per connection instead of 8).
//
//go:noinline
func (c *clientConn) dispatch(ctx context.Context, nch ssh.NewChannel, rt route, wg *sync.WaitGroup) {
	cc, rt, ok := c.admit(nch, rt)
	if !ok {
		return
	}
	var handle func()
	switch nch.ChannelType() {
	case "session":
		if rt.hostName == "" {
			handle = func() { cc.commandSession(ctx, nch) }
		} else {
			handle = func() { cc.targetSession(ctx, nch, rt) }
		}
	case "direct-tcpip":
		handle = func() { cc.directTCPIP(ctx, nch, rt) }
	default:
		kind := channelKind(nch)
		c.auditRefusedOnce("channel "+kind, audit.ForwardDeniedEvent{Target: c.who(), Kind: kind}.Event())
		_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Line(nch.ChannelType())+" channels are not allowed")
		return
	}
	wg.Add(1)
	c.channelOpened()
	go func() {
		defer wg.Done()
		defer c.channelClosed()
		handle()
	}()
}

// admit decides a new channel on the state in force now (see refresh):
// it returns the connection as of now and the route with its host as
// configured now, or refuses the channel.
func (c *clientConn) admit(nch ssh.NewChannel, rt route) (*clientConn, route, bool) {
	if !c.channelAllowed(nch) {
		return nil, rt, false
	}
	cc, gone, err := c.refresh()
	if err != nil {
		c.refuseChannel(nch, err, gone)
		if gone {
			c.closeTransport()
		}
		return nil, rt, false
	}
	if rt.hostName != "" {
		rt.host = cc.st.cfg.Host(rt.hostName)
		if msg := c.srv.sessionRefusal(); msg != "" {
			c.refuseChannel(nch, fmt.Errorf("%s", msg), false)
			return nil, rt, false
		}
	}
	return cc, rt, true
}
