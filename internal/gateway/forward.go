package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/safetext"
)

// forward handles port forwarding (M4). A forward belongs to a host route
// (jump or user name) and leaves from that target: the gateway opens it as
// direct-tcpip on its own connection to the target, so "localhost" means
// the target, never the gateway, and the target's sshd (AllowTcpForwarding,
// PermitOpen) decides last. The policy must allow it for the route's host
// and login (the rule's selector and its forward list). Every forward is
// a session of its own: audited at start and end with byte counts, and
// recorded like an exec (both directions counted and hashed).
func (c *clientConn) forward(ctx context.Context, nch ssh.NewChannel, dest string, rt route) {
	ev := audit.ForwardStartEvent{Target: c.routeTarget(rt), Kind: "local", Destination: dest, Mode: modeName(rt)}
	now := c.srv.now()
	d := c.st.engine.Authorize(policy.Request{Person: c.person, Key: c.key, Host: rt.host, Login: rt.login,
		Action: policy.ActionForward, ForwardTo: dest, Now: now, Lock: c.srv.lockReason(c.person.ID),
		Requests: c.srv.requestWindows(ctx, c.person.ID, now), Freezes: c.srv.freezesNow()})
	if d.Verdict != policy.Allow {
		c.denyForward(nch, ev, d, dest, rt)
		return
	}
	ev.Request = d.Request
	l := &liveSession{owner: c.person.ID, keyFP: c.keyFP, host: rt.host, login: rt.login, action: policy.ActionForward,
		forwardTo: dest, conn: c, eol: "\n", startEv: ev.Event(), tgt: ev.Target}
	if err := l.begin(ctx, record.Meta{Kind: record.KindForward, Started: now, Command: "direct-tcpip " + dest}); err != nil {
		if errors.Is(err, errNoAudit) {
			_ = nch.Reject(ssh.Prohibited, "tandem: the audit log is unavailable")
		} else {
			_ = nch.Reject(ssh.ResourceShortage, "tandem: the forward cannot be recorded, so it cannot start")
		}
		return
	}
	res, err := c.relayForward(ctx, nch, l, d.Request)
	l.finish(outcome{res: &res, err: err})
}

// denyForward refuses a forward the policy does not allow, audited.
func (c *clientConn) denyForward(nch ssh.NewChannel, ev audit.ForwardStartEvent, d policy.Decision, dest string, rt route) {
	c.srv.record(ev.Denied(d.Reason, d.Verdict.String()).Event())
	msg := strings.ReplaceAll(d.Message(), "\n ", ";")
	if rt.hostName == "" {
		// On a bare gateway connection this is most often `ssh -J gw`
		// to a host name the gateway does not know.
		host, _, _ := net.SplitHostPort(dest)
		msg = "unknown host " + host + " (`ssh gw whoami` lists the hosts you may reach); " + msg
	}
	_ = nch.Reject(ssh.Prohibited, "tandem: "+safetext.Line(msg))
}

// relayForward dials the target, opens the destination there and copies
// both ways until either side ends, through the recording. The forward is
// in the registry from when the client's channel is accepted, so locks,
// revocations and reloads end it.
func (c *clientConn) relayForward(ctx context.Context, nch ssh.NewChannel, l *liveSession, request string) (relay.Result, error) {
	host, portText, _ := net.SplitHostPort(l.forwardTo)
	port, _ := strconv.ParseUint(portText, 10, 32)
	up, err := c.st.dialer.Dial(ctx, l.target())
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: "+safetext.Lines(err.Error()))
		return relay.Result{}, err
	}
	defer up.Close()
	out, outReqs, err := up.OpenChannel("direct-tcpip", ssh.Marshal(struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{host, uint32(port), "127.0.0.1", 0}))
	if err != nil {
		msg := fmt.Sprintf("%s refused to open %s: %v", l.host.Name, l.forwardTo, err)
		_ = nch.Reject(ssh.ConnectionFailed, "tandem: "+safetext.Line(msg))
		return relay.Result{}, errors.New(msg)
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		out.Close()
		return relay.Result{}, err
	}
	go ssh.DiscardRequests(outReqs)
	l.ch = ch
	if request != "" {
		if r, err := c.srv.requestByID(ctx, request); err == nil {
			l.request, l.requestUntil = r.ID, r.ValidUntil
		}
	}
	c.srv.register(ctx, l)
	if !l.setUpstream(up) {
		ch.Close()
		out.Close()
		return relay.Result{}, errors.New("ended before it started")
	}
	defer l.watchRecording()()
	return relay.Stream(ch, reqs, out, relay.Taps{In: streamTap{l.rec, "stdin"}, Out: streamTap{l.rec, "stdout"}}), nil
}
