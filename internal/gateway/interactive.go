package gateway

import (
	"context"
	"fmt"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
)

// interactive runs a PTY session through the session package: on a
// four-eyes host it waits for a second person before the target sees any
// login (M6); elsewhere it is live at once, and others may still observe.
//
// A session under an access request that granted a terminal for a command
// runs alone, ends with the request, and is recorded like every PTY
// session.
func (c *clientConn) interactive(ctx context.Context, l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, d policy.Decision) {
	h := &ptyHooks{leaveWaiting: func() {}}
	if l.fourEyes {
		refused := l.tgt
		refused.Source = c.source // a refusal names the client's address, as the start would have
		if h.leaveWaiting = c.enterWaiting(l.ch, ss, refused); h.leaveWaiting == nil {
			return // limits.waiting_per_person
		}
		defer h.leaveWaiting()
	}
	size := ptySize(ss.pty, ss.winch)
	if err := l.begin(ctx, record.Meta{Kind: record.KindPTY, Term: ptyTerm(ss.pty),
		Cols: int(size.Cols), Rows: int(size.Rows), Command: ss.command, Env: ss.envNames}); err != nil {
		refuse(l.ch, ss, err.Error())
		return
	}
	_ = ss.start.Reply(true, nil)
	warn(l.ch, ss, d.Warnings)
	closed := make(chan struct{})
	c.share(l, h, size, ss.command, closed)
	c.srv.register(ctx, l)
	if l.fourEyes {
		fmt.Fprintf(l.ch.Stderr(), "tandem: %s\r\n  ask a colleague to run:  ssh -t gw join %s\r\n  (gw as `tandem client-config` sets it up; without it: ssh -t %s join %s)\r\n",
			safetext.Line(d.Reason), l.id, safetext.Line(c.srv.gatewayHint(c.st)), l.id)
	}
	loop := &sharedLoop{c: c, live: l, up: &upstreamHolder{size: size, rec: l.rec}, ss: ss,
		reqs: reqs, closed: closed, recFailed: l.rec.Failed(), auditFull: l.events.Full()}
	res, err := loop.run(ctx)
	loop.release()
	if err != nil {
		l.sess.End("", err.Error())
	}
	if res.status == nil && res.signal == nil {
		one := uint32(1)
		if err == nil && h.endReason == "" {
			one = 0
		}
		res = exitCode(one)
	}
	// The owner's last output and the closing notice go first.
	closeChannel(l.ch, res, l.sess.OwnerFlushed())
	l.finish(outcome{err: err, reason: h.endReason})
}

// share makes l a session others may join: its participants and state
// live in the session package, with the owner's channel as the first
// terminal, and its audit events go through a queue of their own.
// command is what the owner asked to run ("" for a shell).
func (c *clientConn) share(l *liveSession, h *ptyHooks, size session.Size, command string, closed <-chan struct{}) {
	l.events = newAuditQueue(c.srv)
	h.rec, h.events, h.base = l.rec, l.events, l.tgt
	pol := c.st.cfg.Policy
	l.sess = session.New(session.Options{
		ID: l.id, Host: l.host.Name, Owner: session.Participant{Person: l.owner}, Command: command,
		FourEyes: l.fourEyes, WaitTimeout: pol.WaitTimeout.Duration, Grace: pol.Grace.Duration,
		Hooks: h.hooks(), Now: c.srv.now,
	}, &chanTerminal{ch: l.ch, closed: closed}, size)
}

// ptyHooks are an interactive session's hooks into the recording and the
// audit log. They run under the session's lock: they hand audit events to
// the queue (auditqueue.go) and never wait for the log. The recording
// calls buffer in memory; the recorder's timer writes and syncs.
type ptyHooks struct {
	rec          *record.Writer
	events       *auditQueue
	base         audit.Target // what every event of the session says
	leaveWaiting func()       // frees the owner's waiting place (limits.go)
	endReason    string       // why the session ended, once it has
}

func (h *ptyHooks) hooks() session.Hooks {
	return session.Hooks{
		OnOutput: func(p []byte) { _ = h.rec.Output(p) },
		OnInput:  func(person string, p []byte) { _ = h.rec.Input(person, p) },
		OnState:  h.state,
		OnJoin: func(p session.Participant) {
			_ = h.rec.Marker(fmt.Sprintf("%s joined as %s", p.Person, p.Mode))
			h.events.add(audit.SessionJoinEvent{Target: h.base, Participant: p.Person, Mode: string(p.Mode), External: p.External}.Event())
		},
		OnLeave: func(p session.Participant, reason string) {
			_ = h.rec.Marker(fmt.Sprintf("%s left: %s", p.Person, reason))
			h.events.add(audit.SessionLeaveEvent{Target: h.base, Participant: p.Person, Reason: reason}.Event())
		},
	}
}

func (h *ptyHooks) state(from, to session.State, reason string) {
	if from == session.Waiting {
		h.leaveWaiting()
	}
	if to == session.Ended {
		h.endReason = reason
	}
	if t, ok := stateEvent(from, to); ok {
		_ = h.rec.Marker(fmt.Sprintf("%s: %s", t, reason))
		h.events.add(audit.SessionStateEvent{State: t, Target: h.base, Reason: reason}.Event())
	}
}

// stateEvent maps a session state change to its audit event type.
func stateEvent(from, to session.State) (audit.Type, bool) {
	switch {
	case to == session.Waiting:
		return audit.SessionWaiting, true
	case to == session.Live && from == session.Waiting:
		return audit.SessionLive, true
	case to == session.Live && from == session.Paused:
		return audit.SessionResumed, true
	case to == session.Paused:
		return audit.SessionPaused, true
	case to == session.Ended:
		return audit.SessionEnded, true
	}
	return "", false
}

// gatewayHint is how a colleague reaches this gateway without the "gw"
// alias of `tandem client-config`, for join hints.
func (s *Server) gatewayHint(st *state) string {
	host, port := "gw", ""
	if len(st.cfg.Gateway.Names) > 0 {
		host = st.cfg.Gateway.Names[0]
	}
	if i := lastColon(st.cfg.Gateway.Listen); i >= 0 {
		port = st.cfg.Gateway.Listen[i+1:]
	}
	if port != "" && port != "22" {
		return "-p " + port + " " + host
	}
	return host
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}
