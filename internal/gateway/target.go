package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/sftpproxy"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/upstream"
)

// startTimeout bounds the time between opening a session channel and
// asking for a shell, command or subsystem.
const startTimeout = 60 * time.Second

// sessionStart is what a client asked for before its session began.
type sessionStart struct {
	pty      *ssh.Request   // pty-req, if any
	env      []*ssh.Request // allowed env requests, in order
	winch    *ssh.Request   // last window-change before the start
	start    *ssh.Request   // shell, exec or subsystem
	command  string         // exec command or subsystem name
	envNames []string       // names of the variables passed on
}

func newSessionID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// targetSession serves one session channel addressed to a target.
func (c *clientConn) targetSession(ctx context.Context, nch ssh.NewChannel, rt route) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ss, ok := c.collectStart(ch, reqs)
	if !ok {
		return
	}
	action := actionOf(ss)
	ev := audit.Event{Person: c.person.ID, Login: rt.login, Host: rt.hostName, Source: c.source,
		Attrs: map[string]string{"action": string(action), "mode": modeName(rt)}}
	if ss.command != "" {
		ev.Attrs["command"] = ss.command
	}
	if rt.host == nil {
		ev.Type = audit.SessionDenied
		ev.Attrs["reason"] = "unknown host"
		c.srv.record(ev)
		refuse(ch, ss, fmt.Sprintf("unknown host %s; `ssh gw whoami` lists the hosts you may reach", rt.hostName))
		return
	}
	ev.Tenant = rt.host.Tenant
	now := c.srv.now()
	d := c.st.engine.Authorize(policy.Request{
		Person: c.person, Key: c.key, Host: rt.host, Login: rt.login, Action: action, PTY: ss.pty != nil,
		Now: now, Lock: c.srv.lockReason(c.person.ID), Requests: c.srv.requestWindows(ctx, c.person.ID, now),
	})
	var req *store.Request
	if d.Verdict == policy.Allow && d.Request != "" {
		r, err := c.srv.requestByID(ctx, d.Request)
		if errors.Is(err, store.ErrForged) {
			d = policy.Decision{Reason: err.Error()}
		} else if err != nil {
			c.srv.log.Error("request store unreadable", "err", err)
			d = policy.Decision{Reason: "the access request cannot be read; try again, or tell the gateway's operators"}
		} else {
			req = r
			ev.Request = r.ID
		}
	}
	// Everything with a terminal that the policy lets start runs through
	// the session package: four-eyes sessions wait for the second person,
	// and a command with a terminal under a request that granted terminals
	// is recorded exactly like a PTY session, input attributed.
	if ss.pty != nil && (d.Verdict == policy.Allow || d.Verdict == policy.NeedsSecondPerson) {
		if d.Terminal {
			ev.Attrs["terminal"] = "true"
		}
		c.interactive(ctx, ch, reqs, ss, rt, d, ev, req)
		return
	}
	if d.Verdict != policy.Allow {
		ev.Type = audit.SessionDenied
		ev.Attrs["reason"] = d.Reason
		ev.Attrs["verdict"] = d.Verdict.String()
		c.srv.record(ev)
		refuse(ch, ss, joinReason(d)+c.srv.forgedNote(ctx, c.person.ID, now))
		return
	}
	id := newSessionID()
	ev.Type, ev.Session = audit.SessionStart, id
	if err := c.srv.audit.Append(ctx, ev); err != nil {
		c.srv.log.Error("audit log unavailable: session refused", "err", err)
		refuse(ch, ss, "the audit log is unavailable, so no session can start; tell the gateway's operators")
		return
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(ch.Stderr(), "tandem: %s%s", safetext.Line(w), eol(ss))
	}
	live := c.newLive(id, rt, action, ss, ch)
	if req != nil {
		live.request, live.requestUntil = req.ID, req.ValidUntil
	}
	c.srv.register(live)
	defer c.srv.live.remove(id)
	kind := record.KindExec
	if ss.start.Type == "subsystem" {
		kind = record.KindSFTP
	}
	rec, err := c.srv.startRecording(record.Meta{SessionID: id, Tenant: rt.host.Tenant, Kind: kind, Started: c.srv.now(),
		Host: rt.host.Name, Login: rt.login, Owner: c.person.ID, Command: ss.command, Env: ss.envNames})
	if err != nil {
		c.srv.log.Error("recording unavailable: session refused", "err", err)
		refuse(ch, ss, "the session cannot be recorded, so it cannot start; tell the gateway's operators")
		c.srv.record(audit.Event{Type: audit.SessionEnd, Person: c.person.ID, Session: id, Host: rt.host.Name,
			Tenant: rt.host.Tenant, Login: rt.login, Request: ev.Request, Attrs: map[string]string{"error": err.Error()}})
		return
	}
	live.rec = rec
	recDone := make(chan struct{})
	go watchRecording(rec, live, recDone)
	res, err := c.runUpstream(ctx, live, reqs, ss, upstream.Target{
		Host: rt.host, Login: rt.login, SessionID: id, Person: c.person.ID, PTY: ss.pty != nil,
	}, relay.Taps{In: streamTap{rec, "stdin"}, Out: streamTap{rec, "stdout"}, Err: streamTap{rec, "stderr"}})
	close(recDone)
	switch {
	case res.ExitStatus != nil:
		_ = rec.Exit(int(*res.ExitStatus), "")
	case res.ExitSignal != "":
		_ = rec.Exit(-1, res.ExitSignal)
	}
	sum, recErr := rec.Close()
	end := audit.Event{Type: audit.SessionEnd, Person: c.person.ID, Session: id, Host: rt.host.Name,
		Tenant: rt.host.Tenant, Login: rt.login, Request: ev.Request, Attrs: map[string]string{
			"bytes_in": strconv.FormatInt(res.In, 10), "bytes_out": strconv.FormatInt(res.Out, 10),
			"bytes_err": strconv.FormatInt(res.Err, 10),
		}}
	summaryAttrs(end.Attrs, kind, rec, sum, recErr)
	if why := live.endReason(); why != "" {
		end.Attrs["reason"] = why
	}
	switch {
	case err != nil:
		end.Attrs["error"] = err.Error()
		refuse(ch, ss, err.Error())
	case res.ExitStatus != nil:
		end.Attrs["exit_status"] = strconv.FormatUint(uint64(*res.ExitStatus), 10)
	case res.ExitSignal != "":
		end.Attrs["exit_signal"] = res.ExitSignal
	}
	c.srv.record(end)
}

// collectStart gathers the requests a client sends before starting the
// session. Only allowed environment variables are kept; agent and X11
// forwarding are refused. What a client may send is capped (limits.go):
// a request over a cap is refused and the first such request of the
// channel audited; a client that goes on past maxStartRequests has its
// channel closed.
func (c *clientConn) collectStart(ch ssh.Channel, reqs <-chan *ssh.Request) (*sessionStart, bool) {
	ss := &sessionStart{}
	var lim startLimits
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	for {
		var r *ssh.Request
		select {
		case r = <-reqs:
			if r == nil {
				return nil, false
			}
		case <-timer.C:
			fmt.Fprint(ch.Stderr(), "tandem: no command within a minute; closing\n")
			return nil, false
		}
		lim.requests++
		if lim.requests > maxStartRequests {
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
			c.exceeded(&lim, limitRequests, r.Type, true)
			fmt.Fprintf(ch.Stderr(), "tandem: %s (at most %d); closing\n", limitRequests.what, maxStartRequests)
			go ssh.DiscardRequests(reqs)
			return nil, false
		}
		ok := false
		switch r.Type {
		case "pty-req":
			if k, over := ptyOverLimit(r.Payload); over {
				c.exceeded(&lim, k, r.Type, false)
				break
			}
			ss.pty, ok = r, true
		case "window-change":
			ss.winch, ok = r, true
		case "env":
			ok = c.keepEnv(ss, &lim, r)
		case "shell":
			ss.start = r
			return ss, true
		case "exec", "subsystem":
			var cmd struct{ Value string }
			if err := ssh.Unmarshal(r.Payload, &cmd); err != nil {
				_ = r.Reply(false, nil)
				return nil, false
			}
			k := limitCommand
			if r.Type == "subsystem" {
				k = limitSubsystem
			}
			if len(cmd.Value) > k.max {
				c.exceeded(&lim, k, r.Type, true)
				refuse(ch, &sessionStart{start: r, pty: ss.pty}, limitMessage(k, len(cmd.Value)))
				go ssh.DiscardRequests(reqs)
				return nil, false
			}
			ss.start, ss.command = r, cmd.Value
			return ss, true
		case "x11-req", "auth-agent-req@openssh.com":
			// Refused; audited once per kind and channel, so that
			// repeating the request cannot fill the audit log.
			if lim.forwards == nil {
				lim.forwards = map[string]bool{}
			}
			if !lim.forwards[r.Type] {
				lim.forwards[r.Type] = true
				c.srv.record(audit.Event{Type: audit.ForwardDenied, Person: c.person.ID, Source: c.source,
					Attrs: map[string]string{"kind": r.Type}})
			}
		}
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
	}
}

// keepEnv decides one env request: it counts against maxEnvRequests
// whether or not gateway.env_allow allows it, and an allowed one is kept
// only while the kept names and values stay within maxEnvBytes.
func (c *clientConn) keepEnv(ss *sessionStart, lim *startLimits, r *ssh.Request) bool {
	lim.envs++
	if lim.envs > maxEnvRequests {
		c.exceeded(lim, limitEnvCount, r.Type, false)
		return false
	}
	var kv struct{ Name, Value string }
	if ssh.Unmarshal(r.Payload, &kv) != nil || !c.envAllowed(kv.Name) {
		return false
	}
	n := lim.envBytes + len(kv.Name) + len(kv.Value)
	if n > maxEnvBytes {
		c.exceeded(lim, limitEnvBytes, r.Type, false)
		return false
	}
	lim.envBytes = n
	ss.env = append(ss.env, r)
	ss.envNames = append(ss.envNames, kv.Name)
	return true
}

func (c *clientConn) envAllowed(name string) bool {
	for _, g := range c.st.cfg.Gateway.EnvAllow {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// actionOf is what the client asked for. Whether it has a terminal is a
// separate question (ss.pty), which the policy asks too: a shell always
// needs a second person on a four-eyes host, with or without a terminal.
func actionOf(ss *sessionStart) policy.Action {
	switch ss.start.Type {
	case "subsystem":
		return policy.ActionSFTP
	case "shell":
		return policy.ActionShell
	default:
		return policy.ActionExec
	}
}

// newLive describes a session about to start, for the registry: what
// enforcement needs to decide it again later.
func (c *clientConn) newLive(id string, rt route, action policy.Action, ss *sessionStart, ch ssh.Channel) *liveSession {
	return &liveSession{id: id, person: c.person.ID, keyFP: c.keyFP, host: rt.host.Name, login: rt.login,
		action: action, pty: ss.pty != nil, conn: c, ch: ch, eol: eol(ss)}
}

func modeName(rt route) string {
	if rt.jump {
		return "jump"
	}
	return "user"
}

// runUpstream dials the target, replays the client's set-up requests on a
// fresh session channel, starts it and relays until it ends.
func (c *clientConn) runUpstream(ctx context.Context, live *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, t upstream.Target, taps relay.Taps) (relay.Result, error) {
	if ss.start.Type == "subsystem" && ss.command != "sftp" {
		return relay.Result{}, fmt.Errorf("subsystem %q is not supported (only sftp)", ss.command)
	}
	client, err := c.st.dialer.Dial(ctx, t)
	if err != nil {
		return relay.Result{}, err
	}
	defer client.Close()
	if !live.setUpstream(client) {
		return relay.Result{}, fmt.Errorf("session ended before it started")
	}
	if ss.start.Type == "subsystem" {
		return c.serveSFTP(ctx, live, reqs, ss, client, t)
	}
	up, upReqs, err := client.OpenChannel("session", nil)
	if err != nil {
		return relay.Result{}, fmt.Errorf("%s refused the session: %v", t.Host.Name, err)
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
			return relay.Result{}, fmt.Errorf("%s refused a terminal", t.Host.Name)
		}
	}
	ok, err := up.SendRequest(ss.start.Type, true, ss.start.Payload)
	if err != nil || !ok {
		up.Close()
		_ = ss.start.Reply(false, nil)
		return relay.Result{}, nil
	}
	_ = ss.start.Reply(true, nil)
	return relay.Session(live.ch, reqs, up, upReqs, taps), nil
}

// serveSFTP answers the client's SFTP subsystem itself and forwards each
// operation to the target, so that every open, read, write, rename and
// remove is recorded with paths, sizes and SHA-256 (M9).
func (c *clientConn) serveSFTP(ctx context.Context, live *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, client *ssh.Client, t upstream.Target) (relay.Result, error) {
	target, err := sftp.NewClient(client, sftpproxy.TargetClientOptions()...)
	if err != nil {
		return relay.Result{}, fmt.Errorf("%s refused the sftp subsystem: %v", t.Host.Name, err)
	}
	defer target.Close()
	_ = ss.start.Reply(true, nil)
	go ssh.DiscardRequests(reqs)
	readOnly := c.st.engine.SFTPReadOnly(c.person, t.Host, t.Login)
	// Serve closes the client channel when it is done; the exit status
	// must go out first, or OpenSSH reports the transfer as failed.
	// Errors of single operations reach the client as SFTP status codes;
	// the exit status reports what ended the session as a whole.
	end := &sftpEnd{ch: live.ch, failed: func() bool { return live.rec.Err() != nil || ctx.Err() != nil }}
	err = sftpproxy.Serve(ctx, end, target, live.rec.Op, sftpproxy.Options{ReadOnly: readOnly, Now: c.srv.now})
	_ = end.Close()
	status := end.status
	// The SFTP protocol stream in each direction: what session.end reports
	// as bytes_in and bytes_out, like for any other session. The files'
	// own sizes and hashes are in the recording, per operation.
	return relay.Result{ExitStatus: &status, Counts: relay.Counts{In: end.in.Load(), Out: end.out.Load()}}, err
}

// sftpEnd is the client channel of an SFTP session whose Close sends the
// exit status, EOF and CLOSE in that order, once.
type sftpEnd struct {
	ch      ssh.Channel
	failed  func() bool // the recording failed: the session did not end well
	once    sync.Once
	status  uint32
	in, out atomic.Int64 // bytes from and to the client
}

func (e *sftpEnd) Read(p []byte) (int, error) {
	n, err := e.ch.Read(p)
	e.in.Add(int64(n))
	return n, err
}

func (e *sftpEnd) Write(p []byte) (int, error) {
	n, err := e.ch.Write(p)
	e.out.Add(int64(n))
	return n, err
}

func (e *sftpEnd) Close() error {
	e.once.Do(func() {
		if e.failed() {
			e.status = 1
		}
		endChannel(e.ch, e.status)
	})
	return nil
}

// refuse explains a refusal on the client's terminal and ends the channel
// the way a failed command would, so scripts see a non-zero exit status.
//
// A refused subsystem (sftp, scp) is accepted too: a client whose
// subsystem request fails exits at once and may not print the reason it
// already received.
func refuse(ch ssh.Channel, ss *sessionStart, msg string) {
	fmt.Fprintf(ch.Stderr(), "tandem: %s%s", strings.ReplaceAll(safetext.Lines(msg), "\n", eol(ss)), eol(ss))
	_ = ss.start.Reply(true, nil)
	endChannel(ch, 1)
}

// endChannel ends a session channel the way RFC 4254 §6.10 orders it:
// exit-status, then EOF, then CLOSE. Clients that take EOF as the end
// would otherwise miss the status.
func endChannel(ch ssh.Channel, status uint32) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
	_ = ch.CloseWrite()
	_ = ch.Close()
}

// eol is the line end the client's terminal needs: with a PTY the target
// is not there to turn \n into \r\n.
func eol(ss *sessionStart) string {
	if ss.pty != nil {
		return "\r\n"
	}
	return "\n"
}
