package gateway

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// A client's session channel: what it asks for before its session starts,
// and how the gateway refuses and ends it.

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

// acceptSession accepts a session channel and collects what the client
// asks for before its session starts; false means the channel is already
// closed (or never opened) and there is nothing left to do. It returns
// the connection as decided again once the start request arrived (see
// recheck), which the session must use instead of c.
func (c *clientConn) acceptSession(nch ssh.NewChannel) (*clientConn, ssh.Channel, <-chan *ssh.Request, *sessionStart, bool) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return nil, nil, nil, nil, false
	}
	ss, ok := c.collectStart(ch, reqs)
	if !ok {
		_ = ch.Close()
		return nil, nil, nil, nil, false
	}
	cc, ok := c.recheck(ch, ss)
	if !ok {
		return nil, nil, nil, nil, false
	}
	return cc, ch, reqs, ss, true
}

// recheck decides the connection's person again (refresh) once the
// channel's start request has arrived. admit decided on the state of when
// the channel opened, and a client may wait startTimeout before it names
// its command: a reload or a lock in between must apply to that command,
// as it applies to a new channel. A refusal is audited and told, and ends
// the channel (and the connection when it has lost its right to exist).
func (c *clientConn) recheck(ch ssh.Channel, ss *sessionStart) (*clientConn, bool) {
	cc, gone, err := c.refresh()
	if err == nil {
		return cc, true
	}
	c.srv.record(audit.SessionDeniedEvent{Target: c.who(), Channel: "session", Reason: err.Error(), ConnectionClosed: &gone}.Event())
	refuse(ch, ss, err.Error())
	if gone {
		c.closeTransport()
	}
	return nil, false
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
		switch r.Type {
		case "shell":
			ss.start = r
			return ss, true
		case "exec", "subsystem":
			if !c.startCommand(ch, reqs, ss, &lim, r) {
				return nil, false
			}
			return ss, true
		}
		ok := c.setupRequest(ss, &lim, r)
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
	}
}

// startCommand takes an exec or subsystem request as the session's start;
// false when it cannot be one (malformed, or over its cap: refused).
func (c *clientConn) startCommand(ch ssh.Channel, reqs <-chan *ssh.Request, ss *sessionStart, lim *startLimits, r *ssh.Request) bool {
	var cmd struct{ Value string }
	if err := ssh.Unmarshal(r.Payload, &cmd); err != nil {
		_ = r.Reply(false, nil)
		return false
	}
	k := limitCommand
	if r.Type == "subsystem" {
		k = limitSubsystem
	}
	if len(cmd.Value) > k.max {
		c.exceeded(lim, k, r.Type, true)
		refuse(ch, &sessionStart{start: r, pty: ss.pty}, limitMessage(k, len(cmd.Value)))
		go ssh.DiscardRequests(reqs)
		return false
	}
	ss.start, ss.command = r, cmd.Value
	return true
}

// setupRequest decides one request before the start (terminal, window
// size, environment) and keeps what is allowed; it reports the answer.
func (c *clientConn) setupRequest(ss *sessionStart, lim *startLimits, r *ssh.Request) bool {
	switch r.Type {
	case "pty-req":
		if k, over := ptyOverLimit(r.Payload); over {
			c.exceeded(lim, k, r.Type, false)
			return false
		}
		ss.pty = r
		return true
	case "window-change":
		ss.winch = r
		return true
	case "env":
		return c.keepEnv(ss, lim, r)
	case "x11-req", "auth-agent-req@openssh.com":
		// Refused; audited once per kind and channel, so that
		// repeating the request cannot fill the audit log.
		if lim.forwards == nil {
			lim.forwards = map[string]bool{}
		}
		if !lim.forwards[r.Type] {
			lim.forwards[r.Type] = true
			c.srv.record(audit.ForwardDeniedEvent{Target: c.who(), Kind: r.Type}.Event())
		}
	}
	return false
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

// eol is the line end the client's terminal needs: with a PTY the target
// is not there to turn \n into \r\n.
func eol(ss *sessionStart) string {
	if ss.pty != nil {
		return "\r\n"
	}
	return "\n"
}

// warn shows the policy's warnings (a key about to expire) on the
// client's stderr.
func warn(ch ssh.Channel, ss *sessionStart, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(ch.Stderr(), "tandem: %s%s", safetext.Line(w), eol(ss))
	}
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

// exitResult is how a session ended for its client: the payload of an
// exit-status or, if set, of an exit-signal request.
type exitResult struct{ status, signal []byte }

func exitCode(status uint32) exitResult {
	return exitResult{status: ssh.Marshal(struct{ Status uint32 }{status})}
}

// endChannel ends a session channel with exit status status, at once.
func endChannel(ch ssh.Channel, status uint32) {
	closeChannel(ch, exitCode(status), nil)
}

// closeChannel ends a session channel the way RFC 4254 §6.10 orders it:
// exit-status (or exit-signal), then EOF, then CLOSE. Clients that take
// EOF as the end would otherwise miss the status.
//
// With flushed, the exit status and EOF wait until flushed is closed (the
// last output and notices went out), endGrace at most: a client that does
// not read gets only CLOSE then, never EOF while a write may be in
// progress.
func closeChannel(ch ssh.Channel, exit exitResult, flushed <-chan struct{}) {
	defer ch.Close()
	if flushed != nil {
		t := time.NewTimer(endGrace)
		defer t.Stop()
		select {
		case <-flushed:
		case <-t.C:
			return
		}
	}
	if exit.signal != nil {
		_, _ = ch.SendRequest("exit-signal", false, exit.signal)
	} else {
		_, _ = ch.SendRequest("exit-status", false, exit.status)
	}
	_ = ch.CloseWrite()
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
