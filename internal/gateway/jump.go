package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/upstream"
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
	if h := c.st.cfg.Host(dst.Host); h != nil && !rt.jump {
		if d := c.st.engine.MayJump(c.person, c.key, h, c.srv.now(), c.srv.lockReason(c.person.ID)); d.Verdict != policy.Allow {
			c.srv.record(audit.Event{Type: audit.SessionDenied, Person: c.person.ID, Host: h.Name, Tenant: h.Tenant,
				Source: c.source, Attrs: map[string]string{"mode": "jump", "reason": d.Reason, "verdict": d.Verdict.String()}})
			_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Line(strings.ReplaceAll(joinReason(d), "\n ", ";")))
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

// forward handles port forwarding (M4). A forward belongs to a host route
// (jump or user name) and leaves from that target: the gateway opens it as
// direct-tcpip on its own connection to the target, so "localhost" means
// the target, never the gateway, and the target's sshd (AllowTcpForwarding,
// PermitOpen) decides last. The policy must allow it for the route's host
// and login (the rule's selector and its forward list). Every forward is
// a session of its own: audited at start and end with byte counts, and
// recorded like an exec (both directions counted and hashed).
func (c *clientConn) forward(ctx context.Context, nch ssh.NewChannel, dest string, rt route) {
	ev := audit.Event{Person: c.person.ID, Source: c.source, Host: rt.hostName, Login: rt.login,
		Attrs: map[string]string{"kind": "local", "destination": dest, "mode": modeName(rt)}}
	if rt.host != nil {
		ev.Tenant = rt.host.Tenant
	}
	now := c.srv.now()
	d := c.st.engine.Authorize(policy.Request{Person: c.person, Key: c.key, Host: rt.host, Login: rt.login,
		Action: policy.ActionForward, ForwardTo: dest, Now: now, Lock: c.srv.lockReason(c.person.ID),
		Requests: c.srv.requestWindows(ctx, c.person.ID, now)})
	if d.Verdict != policy.Allow {
		ev.Type = audit.ForwardDenied
		ev.Attrs["reason"] = d.Reason
		ev.Attrs["verdict"] = d.Verdict.String()
		c.srv.record(ev)
		msg := strings.ReplaceAll(joinReason(d), "\n ", ";")
		if rt.hostName == "" {
			// On a bare gateway connection this is most often `ssh -J gw`
			// to a host name the gateway does not know.
			host, _, _ := net.SplitHostPort(dest)
			msg = "unknown host " + host + " (`ssh gw whoami` lists the hosts you may reach); " + msg
		}
		_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Line(msg))
		return
	}
	id := newSessionID()
	ev.Type, ev.Session, ev.Request = audit.ForwardStart, id, d.Request
	if err := c.srv.audit.Append(ctx, ev); err != nil {
		_ = nch.Reject(ssh.Prohibited, "tandem: the audit log is unavailable")
		return
	}
	end := withAttrs(ev, audit.ForwardEnd, map[string]string{"destination": dest})
	rec, err := c.srv.startRecording(record.Meta{SessionID: id, Tenant: rt.host.Tenant, Kind: record.KindForward,
		Started: now, Host: rt.host.Name, Login: rt.login, Owner: c.person.ID, Command: "direct-tcpip " + dest})
	if err != nil {
		_ = nch.Reject(ssh.ResourceShortage, "tandem: the forward cannot be recorded, so it cannot start")
		end.Attrs["error"] = err.Error()
		c.srv.record(end)
		return
	}
	res, why, err := c.relayForward(ctx, nch, dest, rt, id, rec, d.Request)
	sum, recErr := rec.Close()
	end.Attrs["bytes_in"] = strconv.FormatInt(res.In, 10)
	end.Attrs["bytes_out"] = strconv.FormatInt(res.Out, 10)
	summaryAttrs(end.Attrs, record.KindForward, rec, sum, recErr)
	if err != nil {
		end.Attrs["error"] = err.Error()
	}
	if why != "" {
		end.Attrs["reason"] = why
	}
	c.srv.record(end)
}

// relayForward dials the target, opens dest there and copies both ways
// until either side ends, through the recording. The forward is in the
// registry meanwhile, so locks, revocations and reloads end it.
//
// why is the reason it was ended from outside, if it was.
func (c *clientConn) relayForward(ctx context.Context, nch ssh.NewChannel, dest string, rt route, id string, rec *record.Writer, request string) (res relay.Result, why string, err error) {
	host, portText, _ := net.SplitHostPort(dest)
	port, _ := strconv.ParseUint(portText, 10, 32)
	up, err := c.st.dialer.Dial(ctx, upstream.Target{Host: rt.host, Login: rt.login, SessionID: id, Person: c.person.ID, Forward: true})
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: "+safetext.Lines(err.Error()))
		return relay.Result{}, "", err
	}
	defer up.Close()
	out, outReqs, err := up.OpenChannel("direct-tcpip", ssh.Marshal(struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{host, uint32(port), "127.0.0.1", 0}))
	if err != nil {
		msg := fmt.Sprintf("%s refused to open %s: %v", rt.host.Name, dest, err)
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: "+safetext.Line(msg))
		return relay.Result{}, "", errors.New(msg)
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		out.Close()
		return relay.Result{}, "", err
	}
	go ssh.DiscardRequests(outReqs)
	live := &liveSession{id: id, person: c.person.ID, keyFP: c.keyFP, host: rt.host.Name, login: rt.login,
		action: policy.ActionForward, conn: c, ch: ch, eol: "\n", rec: rec, forwardTo: dest}
	if request != "" {
		if r, err := c.srv.requestByID(ctx, request); err == nil {
			live.request, live.requestUntil = r.ID, r.ValidUntil
		}
	}
	c.srv.register(live)
	defer c.srv.live.remove(id)
	if !live.setUpstream(up) {
		ch.Close()
		out.Close()
		return relay.Result{}, live.endReason(), errors.New("ended before it started")
	}
	recDone := make(chan struct{})
	go watchRecording(rec, live, recDone)
	defer close(recDone)
	res = relay.Stream(ch, reqs, out, relay.Taps{In: streamTap{rec, "stdin"}, Out: streamTap{rec, "stdout"}})
	return res, live.endReason(), nil
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
