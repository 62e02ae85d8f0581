package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/store"
)

// The gateway's commands (`ssh gw whoami` …) are the admin package's; this
// file serves them on a session channel and gives admin its view of the
// gateway (admin.Gateway) for one connection.

// errNoStore refuses what needs the state store on a gateway without one
// (tests of other parts).
var errNoStore = errors.New("this gateway has no state store")

// commandSession serves a session channel on the gateway itself.
func (c *clientConn) commandSession(ctx context.Context, nch ssh.NewChannel) {
	c, ch, reqs, ss, ok := c.acceptSession(nch)
	if !ok {
		return
	}
	defer ch.Close()
	if ss.start.Type == "subsystem" {
		// Its name is no command line: refused whole, so that no reply
		// says it failed while a command of that name runs (`sftp gw`).
		refuse(ch, ss, fmt.Sprintf("the gateway has no subsystems (%q); name a command (`ssh gw help`), or reach a host: sftp -J gw LOGIN@HOST", ss.command))
		go ssh.DiscardRequests(reqs)
		return
	}
	_ = ss.start.Reply(true, nil)
	var status uint32
	if args, ok := admin.JoinArgs(ss.command); ok {
		// join attaches this channel to a running session, so the
		// gateway serves it; admin audits and decides.
		if !admin.AuditCommand(ctx, adminGateway{c}, c.caller(), ss.command, ch.Stderr()) {
			status = 1
		} else {
			status = c.joinSession(ctx, ch, reqs, ss, args)
		}
	} else {
		go ssh.DiscardRequests(reqs)
		status = c.runCommand(ctx, ss, ch)
	}
	endChannel(ch, status)
}

// runCommand runs one command line on the channel, returning its exit
// status.
func (c *clientConn) runCommand(ctx context.Context, ss *sessionStart, ch ssh.Channel) uint32 {
	var out, errOut io.Writer = ch, ch.Stderr()
	if ss.pty != nil {
		out, errOut = crlf{ch}, crlf{ch.Stderr()}
	}
	who := c.caller()
	who.Input = ch // read only by a command that asks for input, bounded
	status := admin.Run(ctx, adminGateway{c}, who, ss.command, out, errOut)
	if ss.start.Type == "shell" && ss.pty != nil {
		// `ssh gw` alone: the list of commands above, and why no shell.
		fmt.Fprintln(out, "\nThis gateway has no shell: name a command, or reach a host with `ssh -J gw login@host`.")
	}
	return uint32(status)
}

// caller is the connection's person as admin sees them.
func (c *clientConn) caller() admin.Caller {
	return admin.Caller{Person: c.person, Key: c.key, Source: c.source}
}

// crlf turns \n into \r\n for clients with a terminal.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// adminGateway is admin.Gateway for the commands of one connection: the
// configuration and policy it decides on (as of its last refresh), the
// server's store, sessions and audit log.
type adminGateway struct{ c *clientConn }

func (a adminGateway) Policy() (*config.Config, *policy.Engine) { return a.c.st.cfg, a.c.st.engine }
func (a adminGateway) Now() time.Time                           { return a.c.srv.now() }
func (a adminGateway) LockReason(person string) string          { return a.c.srv.lockReason(person) }
func (a adminGateway) Freezes() []policy.Freeze                 { return a.c.srv.freezesNow() }
func (a adminGateway) Log() *slog.Logger                        { return a.c.srv.log }
func (a adminGateway) Library() readable.Library                { return a.c.library() }

func (a adminGateway) Audit(ctx context.Context, e audit.Event) error {
	return a.c.srv.audit.Append(ctx, e)
}

// errNoAuditReader refuses `ssh gw audit` on a gateway wired without a
// reader of its log (tests of other parts).
var errNoAuditReader = errors.New("this gateway cannot read its audit log")

func (a adminGateway) AuditEvents(f audit.Filter, fn func(audit.Record) error) error {
	if a.c.srv.opts.ReadAudit == nil {
		return errNoAuditReader
	}
	return a.c.srv.opts.ReadAudit(f, fn)
}

// errNoReload refuses `ssh gw reload` on a gateway wired without a
// reloader (tests of other parts).
var errNoReload = errors.New("this gateway cannot reload its configuration")

func (a adminGateway) Reload(ctx context.Context, who admin.Caller) ([]config.Change, error) {
	if a.c.srv.opts.Reload == nil {
		return nil, errNoReload
	}
	return a.c.srv.opts.Reload(ctx, who.ID(), who.Source)
}

func (a adminGateway) Requests() admin.Requests {
	if a.c.srv.store == nil {
		return nil // not a nil *store.Store in a non-nil interface
	}
	return a.c.srv.store
}

func (a adminGateway) Lock(ctx context.Context, l store.Lock) error {
	return a.c.srv.lockPerson(ctx, l.Person, l.By, l.Reason, l.Until)
}

func (a adminGateway) Unlock(ctx context.Context, person, by string) (bool, error) {
	s := a.c.srv
	if s.store == nil {
		return false, errNoStore
	}
	removed, err := s.store.Unlock(ctx, person, by)
	if err != nil || !removed {
		return removed, err
	}
	return true, s.refreshLocks(ctx)
}

// Sessions are this node's shared sessions and, in a cluster, those the
// other nodes publish.
func (a adminGateway) Sessions() []admin.SessionInfo {
	shared := a.c.srv.live.allShared()
	out := make([]admin.SessionInfo, len(shared))
	for i, sh := range shared {
		out[i] = a.sessionInfo(sh)
	}
	return append(out, a.c.srv.remoteSessions(a.c.st.cfg)...)
}

func (a adminGateway) Session(id string) (admin.SessionInfo, bool) {
	if sh := a.c.srv.live.sharedByID(id); sh != nil {
		return a.sessionInfo(sh), true
	}
	for _, in := range a.c.srv.remoteSessions(a.c.st.cfg) {
		if in.ID == id {
			return in, true
		}
	}
	return admin.SessionInfo{}, false
}

func (a adminGateway) sessionInfo(sh *liveSession) admin.SessionInfo {
	return admin.SessionInfo{Info: sh.sess.Info(), HostConfig: sh.host, Node: a.c.srv.nodeName()}
}

func (a adminGateway) EndRequestSessions(id, msg string) int {
	return a.c.srv.endRequestSessions(id, msg)
}

func (a adminGateway) Connections(who admin.Caller) []admin.Connection {
	this := a.c.root().slot
	var out []admin.Connection
	for _, s := range a.c.srv.slots.of(who.ID()) {
		out = append(out, admin.Connection{Source: s.source, Since: s.since, Channels: s.channels.Load(), This: s == this})
	}
	return out
}
