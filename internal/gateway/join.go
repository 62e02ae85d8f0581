package gateway

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
)

// joinSession serves `ssh -t gw join ID [--observer]`: it checks the
// joiner against the policy and hands their terminal to the session until
// they leave; a session another node of the cluster holds is joined
// through that node (joinRemote). It returns the exit status for the
// joiner's client.
func (c *clientConn) joinSession(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, ss *sessionStart, args []string) uint32 {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(r.Type == "window-change", nil) // the owner's size applies; see session docs
			}
		}
	}()
	if msg := c.srv.storeRefusal(); msg != "" {
		return failOn(ch, "%s", msg)
	}
	t, err := admin.Join(ctx, adminGateway{c}, c.caller(), args, ss.pty != nil)
	if err != nil {
		return failOn(ch, "%v", err)
	}
	if t.Node != "" && t.Node != c.srv.nodeName() {
		return c.joinRemote(ctx, ch, closed, t)
	}
	sh := c.srv.live.sharedByID(t.SessionID)
	if sh == nil { // ended since admin.Join looked
		return failOn(ch, "%v", admin.NoSession(t.SessionID))
	}
	return c.attach(sh, t.Mode, t.External, ch, closed)
}

// attach hands ch to the session sh as the terminal of c's person, joining
// in mode, until they leave; closed is closed when ch's requests end. A
// local join and one relayed from another node both come here.
func (c *clientConn) attach(sh *liveSession, mode string, external bool, ch ssh.Channel, closed <-chan struct{}) uint32 {
	sh.noteJoiner(c.person.ID, c.keyFP)
	reason, err := sh.sess.Join(session.Participant{
		Person: c.person.ID, Mode: session.Mode(mode), External: external,
	}, &chanTerminal{ch: ch, closed: closed})
	if err != nil {
		return failOn(ch, "%v", err)
	}
	c.srv.log.Debug("participant left", "session", sh.id, "person", c.person.ID, "reason", reason)
	return 0
}

// failOn tells the client on ch's stderr why their join failed and
// returns exit status 1.
func failOn(ch ssh.Channel, format string, a ...any) uint32 {
	msg := safetext.Lines(fmt.Sprintf(format, a...))
	fmt.Fprintf(ch.Stderr(), "tandem: %s\r\n", strings.ReplaceAll(msg, "\n", "\r\n"))
	return 1
}
