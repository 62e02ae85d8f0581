package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/upstream"
)

// sharedSession is an interactive session others may join (`ssh gw join`).
type sharedSession struct {
	sess  *session.Session
	host  *config.Host
	owner string
	login string

	mu     sync.Mutex
	joiner map[string]string // person → fingerprint of the key they joined with
}

// noteJoiner remembers the key a joiner authenticated with, so that a
// reload can decide their place in the session again (FIDO2, lock).
func (s *sharedSession) noteJoiner(person, keyFP string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.joiner == nil {
		s.joiner = map[string]string{}
	}
	s.joiner[person] = keyFP
}

func (s *sharedSession) joinerKeyFP(person string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joiner[person]
}

// chanTerminal adapts a client's session channel to a session.Terminal.
// A client's EOF is not the end of its presence: with a terminal, OpenSSH
// sends EOF when its own stdin ends (`ssh -tt host cmd < /dev/null`) and
// sshd ignores it. So Read reports EOF only once the channel is closed.
type chanTerminal struct {
	ch     ssh.Channel
	closed <-chan struct{} // closed when the client's requests end (channel closed)
}

func (t *chanTerminal) Read(p []byte) (int, error) {
	n, err := t.ch.Read(p)
	if err == io.EOF && n == 0 {
		<-t.closed
	}
	return n, err
}

func (t *chanTerminal) Write(p []byte) (int, error) { return t.ch.Write(p) }
func (t *chanTerminal) Close() error                { return t.ch.Close() }

// ptyReq is the payload of a pty-req (RFC 4254 §6.2).
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

func parsePTY(pty *ssh.Request) (ptyReq, bool) {
	var req ptyReq
	return req, pty != nil && ssh.Unmarshal(pty.Payload, &req) == nil
}

// ptyTerm reads TERM from a pty-req.
func ptyTerm(pty *ssh.Request) string {
	req, _ := parsePTY(pty)
	return req.Term
}

// ptySize reads the window size from a pty-req and a later window-change.
func ptySize(pty, winch *ssh.Request) session.Size {
	var sz session.Size
	if req, ok := parsePTY(pty); ok {
		sz = session.Size{Cols: req.Cols, Rows: req.Rows}
	}
	if winch != nil {
		if w, ok := parseWinch(winch.Payload); ok {
			sz = w
		}
	}
	return sz
}

func parseWinch(p []byte) (session.Size, bool) {
	var w struct{ Cols, Rows, Width, Height uint32 }
	if ssh.Unmarshal(p, &w) != nil {
		return session.Size{}, false
	}
	return session.Size{Cols: w.Cols, Rows: w.Rows}, true
}

func winchPayload(sz session.Size) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], sz.Cols)
	binary.BigEndian.PutUint32(b[4:], sz.Rows)
	return b
}

// withSize rewrites a pty-req to carry sz, keeping TERM and modes.
func withSize(pty *ssh.Request, sz session.Size) []byte {
	req, ok := parsePTY(pty)
	if !ok || sz.Cols == 0 {
		return pty.Payload
	}
	req.Cols, req.Rows, req.Width, req.Height = sz.Cols, sz.Rows, 0, 0
	return ssh.Marshal(req)
}

// upstreamHolder lets the owner's request loop reach the target once it
// is connected.
type upstreamHolder struct {
	mu   sync.Mutex
	ch   ssh.Channel
	size session.Size   // the owner's latest window size
	rec  *record.Writer // the session's recording, for resizes
}

func (u *upstreamHolder) setSize(sz session.Size) {
	u.mu.Lock()
	u.size = sz
	rec := u.rec
	u.mu.Unlock()
	if rec != nil {
		_ = rec.Resize(int(sz.Cols), int(sz.Rows))
	}
}

func (u *upstreamHolder) currentSize() session.Size {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.size
}

func (u *upstreamHolder) set(ch ssh.Channel) {
	u.mu.Lock()
	u.ch = ch
	u.mu.Unlock()
}

func (u *upstreamHolder) send(name string, payload []byte) bool {
	u.mu.Lock()
	ch := u.ch
	u.mu.Unlock()
	if ch == nil {
		return false
	}
	ok, err := ch.SendRequest(name, false, payload)
	return ok || err == nil
}

// interactive runs a PTY session through the session package: on a
// four-eyes host it waits for a second person before the target sees any
// login (M6); elsewhere it is live at once, and others may still observe.
//
// req is the access request that granted a terminal for a command, if
// any: the session then runs alone, ends with the request, and is recorded
// like every PTY session.
func (c *clientConn) interactive(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, ss *sessionStart, rt route, d policy.Decision, ev audit.Event, req *store.Request) {
	fourEyes := d.Verdict == policy.NeedsSecondPerson
	leaveWaiting := func() {}
	if fourEyes {
		if leaveWaiting = c.enterWaiting(ch, ss, ev); leaveWaiting == nil {
			return // limits.waiting_per_person
		}
		defer leaveWaiting()
	}
	id := newSessionID()
	ev.Type, ev.Session = audit.SessionStart, id
	ev.Attrs["four_eyes"] = strconv.FormatBool(fourEyes)
	if err := c.srv.audit.Append(ctx, ev); err != nil {
		c.srv.log.Error("audit log unavailable: session refused", "err", err)
		refuse(ch, ss, "the audit log is unavailable, so no session can start; tell the gateway's operators")
		return
	}
	_ = ss.start.Reply(true, nil)
	for _, w := range d.Warnings {
		fmt.Fprintf(ch.Stderr(), "tandem: %s\r\n", safetext.Line(w))
	}
	closed := make(chan struct{})
	size := ptySize(ss.pty, ss.winch)
	up := upstreamHolder{size: size}
	var endReason string
	base := audit.Event{Person: c.person.ID, Session: id, Host: rt.host.Name, Tenant: rt.host.Tenant, Login: rt.login, Request: ev.Request}
	rec, err := c.srv.startRecording(record.Meta{SessionID: id, Tenant: rt.host.Tenant, Kind: record.KindPTY,
		Started: c.srv.now(), Host: rt.host.Name, Login: rt.login, Owner: c.person.ID, Term: ptyTerm(ss.pty),
		Cols: int(size.Cols), Rows: int(size.Rows), Command: ss.command, Env: ss.envNames})
	if err != nil {
		c.srv.log.Error("recording unavailable: session refused", "err", err)
		fmt.Fprint(ch.Stderr(), "tandem: the session cannot be recorded, so it cannot start; tell the gateway's operators\r\n")
		endChannel(ch, 1)
		c.srv.record(withAttrs(base, audit.SessionEnd, map[string]string{"error": err.Error()}))
		return
	}
	up.rec = rec
	// The hooks run under the session's lock: they hand audit events to
	// the queue (auditqueue.go) and never wait for the log. The recording
	// calls buffer in memory; the recorder's timer writes and syncs.
	events := newAuditQueue(c.srv)
	hooks := session.Hooks{
		OnOutput: func(p []byte) { _ = rec.Output(p) },
		OnInput:  func(person string, p []byte) { _ = rec.Input(person, p) },
		OnState: func(from, to session.State, reason string) {
			if from == session.Waiting {
				leaveWaiting()
			}
			if to == session.Ended {
				endReason = reason
			}
			if t, ok := stateEvent(from, to); ok {
				_ = rec.Marker(fmt.Sprintf("%s: %s", t, reason))
				events.add(withAttrs(base, t, map[string]string{"reason": reason}))
			}
		},
		OnJoin: func(p session.Participant) {
			_ = rec.Marker(fmt.Sprintf("%s joined as %s", p.Person, p.Mode))
			events.add(withAttrs(base, audit.SessionJoin, map[string]string{
				"participant": p.Person, "mode": string(p.Mode), "external": strconv.FormatBool(p.External)}))
		},
		OnLeave: func(p session.Participant, reason string) {
			_ = rec.Marker(fmt.Sprintf("%s left: %s", p.Person, reason))
			events.add(withAttrs(base, audit.SessionLeave, map[string]string{"participant": p.Person, "reason": reason}))
		},
	}
	pol := c.st.cfg.Policy
	sess := session.New(session.Options{
		ID: id, Host: rt.host.Name, Owner: session.Participant{Person: c.person.ID},
		FourEyes: fourEyes, WaitTimeout: pol.WaitTimeout.Duration, Grace: pol.Grace.Duration,
		Hooks: hooks, Now: c.srv.now,
	}, &chanTerminal{ch: ch, closed: closed}, size)
	shared := &sharedSession{sess: sess, host: rt.host, owner: c.person.ID, login: rt.login}
	live := c.newLive(id, rt, actionOf(ss), ss, ch)
	live.shared, live.fourEyes = sess, fourEyes
	if req != nil {
		live.request, live.requestUntil = req.ID, req.ValidUntil
	}
	c.srv.register(live)
	c.srv.live.addShared(id, shared)
	defer c.srv.live.remove(id)
	defer c.srv.live.removeShared(id)
	if fourEyes {
		fmt.Fprintf(ch.Stderr(), "tandem: %s\r\n  ask a colleague to run:  ssh -t gw join %s\r\n  (gw as `tandem client-config` sets it up; without it: ssh -t %s join %s)\r\n",
			safetext.Line(d.Reason), id, safetext.Line(c.srv.gatewayHint(c.st)), id)
	}
	loop := &sharedLoop{c: c, live: live, sess: sess, up: &up, ss: ss, owner: c.person.ID,
		reqs: reqs, closed: closed, recFailed: rec.Failed(), auditFull: events.Full(),
		target: upstream.Target{Host: rt.host, Login: rt.login, SessionID: id, Person: c.person.ID, PTY: true}}
	res, err := loop.run(ctx)
	loop.release()
	if err != nil {
		sess.End("", err.Error())
	}
	if res.status == nil && res.signal == nil {
		one := uint32(1)
		if err == nil && endReason == "" {
			one = 0
		}
		res.status = ssh.Marshal(struct{ Status uint32 }{one})
	}
	// The owner's last output and the closing notice go first; a client
	// that does not read gets endGrace, then only CLOSE (never EOF while a
	// write may be in progress).
	select {
	case <-sess.OwnerFlushed():
		if res.signal != nil {
			_, _ = ch.SendRequest("exit-signal", false, res.signal)
		} else {
			_, _ = ch.SendRequest("exit-status", false, res.status)
		}
		_ = ch.CloseWrite()
	case <-time.After(endGrace):
	}
	_ = ch.Close()
	end := withAttrs(base, audit.SessionEnd, map[string]string{"reason": endReason})
	if err != nil {
		end.Attrs["error"] = err.Error()
	}
	sum, recErr := rec.Close()
	summaryAttrs(end.Attrs, record.KindPTY, rec, sum, recErr)
	// session.end goes through the queue too, so it follows the session's
	// other events; the handler waits for them a bounded time.
	events.add(end)
	if !events.wait(auditDrainWait) {
		c.srv.log.Error("audit log slow: the session's last events are still queued", "session", id)
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

func withAttrs(e audit.Event, t audit.Type, attrs map[string]string) audit.Event {
	e.Type, e.Attrs = t, attrs
	return e
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
