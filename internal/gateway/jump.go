package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
)

// directTCPIP answers a client's request to reach host:port. A configured
// host name in the outer connection is jump mode: the gateway itself is
// the "target" the client speaks SSH to. Anything else is port forwarding,
// refused unless a role grants the destination.
func (c *clientConn) directTCPIP(ctx context.Context, nch ssh.NewChannel, inJump bool) {
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
	if h := c.st.cfg.Host(dst.Host); h != nil && !inJump {
		if !c.hasGrantOn(h.Name) {
			c.srv.record(audit.Event{Type: audit.SessionDenied, Person: c.person.ID, Host: h.Name, Tenant: h.Tenant,
				Source: c.source, Attrs: map[string]string{"mode": "jump", "reason": "no grant on host"}})
			_ = nch.Reject(ssh.Prohibited, fmt.Sprintf("tandem: %s has no access to host %s", c.person.ID, h.Name))
			return
		}
		c.jump(ctx, nch, h.Name)
		return
	}
	c.forward(ctx, nch, net.JoinHostPort(dst.Host, strconv.Itoa(int(dst.Port))), inJump)
}

func (c *clientConn) hasGrantOn(host string) bool {
	for _, g := range c.st.engine.Grants(c.person) {
		if g.Host == host && len(g.Logins) > 0 {
			return true
		}
	}
	return false
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
	sc, chans, greqs, err := ssh.NewServerConn(conn, cfg)
	timer.Stop()
	if err != nil {
		c.srv.log.Debug("jump handshake failed", "host", name, "err", err)
		return
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	inner := &clientConn{srv: c.srv, st: c.st, conn: sc, source: c.source}
	if err := inner.identify(sc.Permissions); err != nil {
		return
	}
	inner.serve(ctx, chans, greqs, route{host: c.st.cfg.Host(name), hostName: name, login: sc.User(), jump: true})
}

// forward handles port forwarding: refused unless a role grants the
// destination, and audited either way.
func (c *clientConn) forward(ctx context.Context, nch ssh.NewChannel, dest string, inJump bool) {
	ev := audit.Event{Person: c.person.ID, Source: c.source, Attrs: map[string]string{"kind": "local", "destination": dest}}
	d := c.st.engine.Authorize(policy.Request{Person: c.person, Key: c.key, Action: policy.ActionForward, ForwardTo: dest, Now: c.srv.now()})
	if d.Verdict != policy.Allow {
		ev.Type = audit.ForwardDenied
		ev.Attrs["reason"] = d.Reason
		c.srv.record(ev)
		msg := "forwarding to " + dest + " is not granted"
		host, _, _ := net.SplitHostPort(dest)
		if !inJump && c.st.cfg.Host(host) == nil {
			msg = "unknown host " + host + ", and " + msg
		}
		_ = nch.Reject(ssh.Prohibited, "tandem: "+msg)
		return
	}
	ev.Type = audit.ForwardStart
	if err := c.srv.audit.Append(ctx, ev); err != nil {
		_ = nch.Reject(ssh.Prohibited, "tandem: the audit log is unavailable")
		return
	}
	var nd net.Dialer
	dctx, cancel := context.WithTimeout(ctx, c.st.cfg.Gateway.DialTimeout.Duration)
	out, err := nd.DialContext(dctx, "tcp", dest)
	cancel()
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: cannot reach "+dest)
		return
	}
	defer out.Close()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(out, ch)
		if tc, ok := out.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(ch, out)
	_ = ch.CloseWrite()
	_ = ch.Close()
	out.Close()
	wg.Wait()
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
