package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/store"
)

// targetSession serves one session channel addressed to a target: it
// collects what the client asks for, asks the policy, and runs what the
// policy allows.
func (c *clientConn) targetSession(ctx context.Context, nch ssh.NewChannel, rt route) {
	c, ch, reqs, ss, ok := c.acceptSession(nch)
	if !ok {
		return
	}
	defer ch.Close()
	rt.host = c.st.cfg.Host(rt.hostName) // as configured now (see recheck)
	l, d := c.decideSession(ctx, ch, ss, rt)
	switch {
	case l == nil: // refused, and told so
	case l.pty:
		c.interactive(ctx, l, reqs, ss, d)
	default:
		c.execSession(ctx, l, reqs, ss, d.Warnings)
	}
}

// decideSession asks the policy whether the session on ch may start and
// describes it, or records and tells the client why not and returns nil.
//
// Everything with a terminal that the policy lets start runs through the
// session package (interactive: l.pty is set): four-eyes sessions wait for
// the second person, and a command with a terminal under a request that
// granted terminals is recorded exactly like a PTY session, input
// attributed. Everything else runs as a command (execSession).
//
// It is a function of its own, never inlined, so that its locals (the
// audit events, the policy's request) are off the stack while the session
// runs: targetSession's goroutine waits for the whole session, and the
// garbage collector shrinks a waiting goroutine's stack only while the
// frames on it need less than a quarter of it (8 KiB per session instead
// of 16).
//
//go:noinline
func (c *clientConn) decideSession(ctx context.Context, ch ssh.Channel, ss *sessionStart, rt route) (*liveSession, policy.Decision) {
	ev := audit.SessionStartEvent{Target: c.routeTarget(rt), Action: string(actionOf(ss)), Mode: modeName(rt), Command: ss.command}
	if rt.host == nil {
		c.srv.record(ev.Denied("unknown host", "").Event())
		refuse(ch, ss, fmt.Sprintf("unknown host %s; `ssh gw whoami` lists the hosts you may reach", rt.hostName))
		return nil, policy.Decision{}
	}
	if ss.start.Type == "subsystem" && ss.command != "sftp" {
		// Only sftp is served, and the policy decides it as sftp: any
		// other name is refused before a session starts that the audit
		// log would call sftp.
		msg := fmt.Sprintf("subsystem %q is not supported (only sftp)", ss.command)
		c.srv.record(ev.Denied(msg, "").Event())
		refuse(ch, ss, msg)
		return nil, policy.Decision{}
	}
	now := c.srv.now()
	d, req := c.authorize(ctx, rt, ss, now)
	if req != nil {
		ev.Request = req.ID
	}
	switch {
	case ss.pty != nil && (d.Verdict == policy.Allow || d.Verdict == policy.NeedsSecondPerson):
		fourEyes := d.Verdict == policy.NeedsSecondPerson
		ev.Terminal, ev.FourEyes = d.Terminal, &fourEyes
	case d.Verdict != policy.Allow:
		c.srv.record(ev.Denied(d.Reason, d.Verdict.String()).Event())
		refuse(ch, ss, d.Message()+c.srv.forgedNote(ctx, c.person.ID, now))
		return nil, d
	}
	return c.newLive(rt, ss, ch, ev, req), d
}

// authorize asks the policy whether the session may start, on the lock
// and the access requests in force now. The request that allows it, if
// any, must be readable and genuine, or the session is refused.
func (c *clientConn) authorize(ctx context.Context, rt route, ss *sessionStart, now time.Time) (policy.Decision, *store.Request) {
	d := c.st.engine.Authorize(policy.Request{
		Person: c.person, Key: c.key, Host: rt.host, Login: rt.login, Action: actionOf(ss), PTY: ss.pty != nil,
		Now: now, Lock: c.srv.lockReason(c.person.ID), Requests: c.srv.requestWindows(ctx, c.person.ID, now),
		Freezes: c.srv.freezesNow(),
	})
	if d.Verdict != policy.Allow || d.Request == "" {
		return d, nil
	}
	r, err := c.srv.requestByID(ctx, d.Request)
	switch {
	case errors.Is(err, store.ErrForged):
		return policy.Decision{Reason: err.Error()}, nil
	case err != nil:
		c.srv.failed(ctx, "request store unreadable", err)
		return policy.Decision{Reason: "the access request cannot be read; try again, or tell the gateway's operators"}, nil
	}
	return d, r
}

// newLive describes a session channel's session about to begin: what its
// audit events say and what enforcement needs to decide it again later.
func (c *clientConn) newLive(rt route, ss *sessionStart, ch ssh.Channel, start audit.SessionStartEvent, req *store.Request) *liveSession {
	l := &liveSession{owner: c.person.ID, keyFP: c.keyFP, host: rt.host, login: rt.login,
		action: actionOf(ss), pty: ss.pty != nil, conn: c, ch: ch, eol: eol(ss), startEv: start.Event(), tgt: start.Target}
	l.readOnly = l.action == policy.ActionSFTP && c.st.engine.SFTPReadOnly(c.person, rt.host, rt.login)
	l.tgt.Source = "" // only the start names the client's address; the later events never did
	if start.FourEyes != nil {
		l.fourEyes = *start.FourEyes
	}
	if req != nil {
		l.request, l.requestUntil = req.ID, req.ValidUntil
	}
	return l
}

// routeTarget is what the audit events of a session or forward on route
// rt name: the person and address, the host as the client named it and
// the login.
func (c *clientConn) routeTarget(rt route) audit.Target {
	t := c.who()
	t.Host, t.Login = rt.hostName, rt.login
	if rt.host != nil {
		t.Tenant = rt.host.Tenant
	}
	return t
}

func modeName(rt route) string {
	if rt.jump {
		return "jump"
	}
	return "user"
}

// execSession runs a command (or a shell without a terminal) or the sftp
// subsystem on the target, recorded stream by stream (or operation by
// operation), and reports its exit status in session.end.
func (c *clientConn) execSession(ctx context.Context, l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, warnings []string) {
	kind := record.KindExec
	if ss.start.Type == "subsystem" {
		kind = record.KindSFTP
	}
	if err := l.begin(ctx, record.Meta{Kind: kind, Command: ss.command, Env: ss.envNames}); err != nil {
		refuse(l.ch, ss, err.Error())
		return
	}
	warn(l.ch, ss, warnings)
	c.srv.register(ctx, l)
	stop := l.watchRecording()
	res, err := c.runUpstream(ctx, l, reqs, ss)
	stop()
	switch {
	case res.ExitStatus != nil:
		_ = l.rec.Exit(int(*res.ExitStatus), "")
	case res.ExitSignal != "":
		_ = l.rec.Exit(-1, res.ExitSignal)
	}
	if err != nil {
		refuse(l.ch, ss, err.Error())
	}
	l.finish(outcome{res: &res, err: err})
}

// runUpstream dials the target and runs the session there until it ends.
func (c *clientConn) runUpstream(ctx context.Context, l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart) (relay.Result, error) {
	client, err := c.st.dialer.Dial(ctx, l.target())
	if err != nil {
		return relay.Result{}, err
	}
	defer client.Close()
	if !l.setUpstream(client) {
		return relay.Result{}, fmt.Errorf("session ended before it started")
	}
	if ss.start.Type == "subsystem" {
		return c.serveSFTP(ctx, l, reqs, ss, client)
	}
	return relayExec(l, reqs, ss, client)
}

// relayExec replays the client's set-up requests on a fresh session
// channel of the target, starts it and relays until it ends.
func relayExec(l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, client *ssh.Client) (relay.Result, error) {
	up, upReqs, err := client.OpenChannel("session", nil)
	if err != nil {
		return relay.Result{}, fmt.Errorf("%s refused the session: %v", l.host.Name, err)
	}
	replay := []*ssh.Request{ss.pty}
	replay = append(replay, ss.env...)
	replay = append(replay, ss.winch)
	for _, r := range replay {
		if r == nil {
			continue
		}
		ok, err := up.SendRequest(r.Type, r.Type == "pty-req", r.Payload)
		if r.Type == "pty-req" && (err != nil || !ok) {
			up.Close()
			return relay.Result{}, fmt.Errorf("%s refused a terminal", l.host.Name)
		}
	}
	ok, err := up.SendRequest(ss.start.Type, true, ss.start.Payload)
	if err != nil || !ok {
		up.Close()
		_ = ss.start.Reply(false, nil)
		return relay.Result{}, nil
	}
	_ = ss.start.Reply(true, nil)
	return relay.Session(l.ch, reqs, up, upReqs,
		relay.Taps{In: streamTap{l.rec, "stdin"}, Out: streamTap{l.rec, "stdout"}, Err: streamTap{l.rec, "stderr"}}), nil
}
