package gateway

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// directTCPIP answers a client's request to reach host:port. On a
// connection without a route, a configured host name is jump mode: the
// gateway itself is the "target" the client speaks SSH to. Anything else is
// port forwarding (see forward).
func (c *clientConn) directTCPIP(ctx context.Context, nch ssh.NewChannel, rt route) {
	var dst struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &dst); err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: malformed direct-tcpip request")
		return
	}
	if len(dst.Host) > maxRouteHost {
		// No host has such a name; the policy's refusal would put it
		// into the audit log three times, once per try.
		msg := fmt.Sprintf("the destination's host name is %d bytes long; host names have at most %d", len(dst.Host), maxRouteHost)
		c.srv.record(audit.ForwardDeniedEvent{Target: c.routeTarget(rt), Kind: "local", Mode: modeName(rt), Reason: msg,
			Destination: net.JoinHostPort(cut(dst.Host, maxUserBytes)+"…", strconv.Itoa(int(dst.Port)))}.Event())
		_ = nch.Reject(ssh.Prohibited, "tandem: "+msg)
		return
	}
	if h := c.st.cfg.Host(dst.Host); h != nil && !rt.jump {
		if d := c.st.engine.MayJump(c.person, c.key, h, c.srv.now(), c.srv.lockReason(c.person.ID), c.srv.freezesNow()); d.Verdict != policy.Allow {
			tgt := c.who()
			tgt.Host, tgt.Tenant = h.Name, h.Tenant
			c.srv.record(audit.SessionDeniedEvent{Target: tgt, Mode: "jump", Reason: d.Reason, Verdict: d.Verdict.String()}.Event())
			_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Line(strings.ReplaceAll(d.Message(), "\n ", ";")))
			return
		}
		c.jump(ctx, nch, h.Name)
		return
	}
	c.forward(ctx, nch, net.JoinHostPort(dst.Host, strconv.Itoa(int(dst.Port))), rt)
}

// jump runs an SSH server inside the channel, presenting a host
// certificate for name and authenticating the same person again.
func (c *clientConn) jump(ctx context.Context, nch ssh.NewChannel, name string) {
	cfg, err := c.srv.serverConfig(c.st, c.person, name)
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: internal error")
		c.srv.log.Error("jump server config", "err", err)
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	conn := &chanConn{Channel: ch, local: c.conn.LocalAddr(), remote: c.conn.RemoteAddr()}
	defer conn.Close()
	// A channel has no deadline of its own: close it if the handshake
	// takes too long.
	timer := time.AfterFunc(c.st.cfg.Gateway.HandshakeTimeout.Duration, func() { conn.Close() })
	var attempts authAttempts
	sc, chans, greqs, err := ssh.NewServerConn(conn, c.srv.connConfig(c.st, cfg, c.person, &attempts, false))
	timer.Stop()
	if err != nil {
		c.srv.log.Debug("jump handshake failed", "host", name, "err", err)
		if attempts.count > 0 {
			e := attempts.event(c.source, "jump", false)
			e.Host = name
			c.srv.recordPreauth(e)
		}
		return
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	inner := &clientConn{srv: c.srv, st: c.st, conn: sc, source: c.source, outer: c, slot: &connSlot{}}
	if err := inner.identify(sc.Permissions); err != nil {
		return
	}
	// Registered like the outer connection: a lock or a removed key closes
	// it (through the outer connection, which never waits on the client).
	c.srv.live.addConn(inner)
	defer c.srv.live.removeConn(inner)
	inner.serve(ctx, chans, greqs, route{host: c.st.cfg.Host(name), hostName: name, login: sc.User(), jump: true})
}

// chanConn lets an SSH channel carry a nested SSH connection.
type chanConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *chanConn) LocalAddr() net.Addr                { return c.local }
func (c *chanConn) RemoteAddr() net.Addr               { return c.remote }
func (c *chanConn) SetDeadline(t time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(t time.Time) error { return nil }
