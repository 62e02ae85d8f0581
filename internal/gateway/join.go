package gateway

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
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
	id, mode, err := parseJoinArgs(args)
	if err != nil {
		return fail("%v\n  usage: ssh -t gw join SESSION-ID [--observer]", err)
	}
	if ss.pty == nil {
		return fail("joining needs a terminal: use ssh -t … join %s", id)
	}
	sh := c.srv.live.sharedByID(id)
	if sh == nil {
		return fail("no session %s; `ssh gw sessions` lists the sessions you may join", id)
	}
	host := c.st.cfg.Host(sh.host.Name) // as configured now
	if host == nil {
		return fail("host %s is no longer configured", sh.host.Name)
	}
	d := c.st.engine.Join(policy.JoinRequest{
		Person: c.person, Key: c.key, Owner: sh.owner, Host: host, Mode: mode,
		Now: c.srv.now(), Lock: c.srv.lockReason(c.person.ID),
	})
	if d.Verdict != policy.Allow {
		return fail("%s", joinReason(d.Decision))
	}
	sh.noteJoiner(c.person.ID, c.keyFP)
	reason, err := sh.sess.Join(session.Participant{
		Person: c.person.ID, Mode: session.Mode(d.Mode), External: d.External,
	}, &chanTerminal{ch: ch, closed: closed})
	if err != nil {
		return fail("%v", err)
	}
	c.srv.log.Debug("participant left", "session", id, "person", c.person.ID, "reason", reason)
	return 0
}

func parseJoinArgs(args []string) (id, mode string, err error) {
	for _, a := range args {
		switch a {
		case "--observer", "--observe":
			mode = config.JoinObserver
		case "--peer":
			mode = config.JoinPeer
		default:
			if strings.HasPrefix(a, "-") || id != "" {
				return "", "", fmt.Errorf("unexpected argument %q", a)
			}
			id = a
		}
	}
	if id == "" {
		return "", "", fmt.Errorf("name the session to join")
	}
	return id, mode, nil
}

// cmdSessions lists the sessions the person owns or may join.
func (c *clientConn) cmdSessions(args []string, out io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	var rows []session.Info
	for _, sh := range c.srv.live.allShared() {
		if c.st.engine.MayListSession(c.person, sh.owner, sh.host) {
			rows = append(rows, sh.sess.Info())
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no sessions you may join")
		return nil
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Started.Before(rows[j].Started) })
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tOWNER\tSTATE\tSINCE\tPARTICIPANTS")
	for _, in := range rows {
		var ps []string
		for _, p := range in.Participants[1:] {
			ps = append(ps, safetext.Line(p.Person)+"("+string(p.Mode)+")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, safetext.Line(in.Host), safetext.Line(in.Owner.Person), in.State,
			in.Started.UTC().Format(time.TimeOnly), strings.Join(ps, " "))
	}
	return tw.Flush()
}
