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
// they leave. It returns the exit status for the joiner's client.
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
	fail := func(format string, a ...any) uint32 {
		msg := safetext.Lines(fmt.Sprintf(format, a...))
		fmt.Fprintf(ch.Stderr(), "tandem: %s\r\n", strings.ReplaceAll(msg, "\n", "\r\n"))
		return 1
	}
	if msg := c.srv.storeRefusal(); msg != "" {
		return fail("%s", msg)
	}
	t, err := admin.Join(ctx, adminGateway{c}, c.caller(), args, ss.pty != nil)
	if err != nil {
		return fail("%v", err)
	}
	id := t.SessionID
	sh := c.srv.live.sharedByID(id)
	if sh == nil { // ended since admin.Join looked
		return fail("%v", admin.NoSession(id))
	}
	sh.noteJoiner(c.person.ID, c.keyFP)
	reason, err := sh.sess.Join(session.Participant{
		Person: c.person.ID, Mode: session.Mode(t.Mode), External: t.External,
	}, &chanTerminal{ch: ch, closed: closed})
	if err != nil {
		return fail("%v", err)
	}
	c.srv.log.Debug("participant left", "session", id, "person", c.person.ID, "reason", reason)
	return 0
}
