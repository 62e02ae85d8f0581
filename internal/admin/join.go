package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// sessions lists the live sessions the caller owns or may join.
func (c *call) sessions(args []string, out io.Writer) error {
	if err := noArgs(args); err != nil {
		return err
	}
	var rows []SessionInfo
	for _, s := range c.gw.Sessions() {
		if c.eng.MayListSession(c.who.Person, s.Owner.Person, s.HostConfig) {
			rows = append(rows, s)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Started.Before(rows[j].Started) })
	return list(out, "ID\tHOST\tOWNER\tSTATE\tSINCE\tPARTICIPANTS", "no sessions you may join", rows, func(in SessionInfo) string {
		var ps []string
		for _, p := range in.Participants[1:] {
			ps = append(ps, safetext.Line(p.Person)+"("+string(p.Mode)+")")
		}
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", in.ID, safetext.Line(in.Host), safetext.Line(in.Owner.Person), in.State,
			in.Started.UTC().Format(time.TimeOnly), strings.Join(ps, " "))
	})
}

// JoinArgs reports whether line is a `join` command, and its arguments.
// The gateway serves join itself, as it attaches the caller's terminal to
// a running session; the command is audited first (AuditCommand), and
// Join decides.
func JoinArgs(line string) (args []string, ok bool) {
	words, err := splitArgs(line)
	if err != nil || len(words) == 0 || words[0] != "join" {
		return nil, false
	}
	return words[1:], true
}

// Ticket is the policy's leave for a caller to join a session: the mode
// granted and whether they count as external (M7).
type Ticket struct {
	SessionID string
	policy.JoinDecision
}

// Join decides `join SESSION-ID [--observer|--peer]`: the arguments, a
// terminal (terminal says whether the caller has one), the session, its
// host as configured now and the policy. The error explains a refusal to
// the caller.
func Join(ctx context.Context, gw Gateway, who Caller, args []string, terminal bool) (Ticket, error) {
	c := newCall(ctx, gw, who)
	id, mode, err := parseJoinArgs(args)
	if err != nil {
		return Ticket{}, fmt.Errorf("%v\n  usage: ssh -t gw join SESSION-ID [--observer]", err)
	}
	if !terminal {
		return Ticket{}, fmt.Errorf("joining needs a terminal: use ssh -t … join %s", id)
	}
	s, ok := gw.Session(id)
	if !ok {
		return Ticket{}, NoSession(id)
	}
	host := c.cfg.Host(s.HostConfig.Name) // as configured now
	if host == nil {
		return Ticket{}, fmt.Errorf("host %s is no longer configured", s.HostConfig.Name)
	}
	d := c.eng.Join(policy.JoinRequest{
		Person: who.Person, Key: who.Key, Owner: s.Owner.Person, Host: host, Mode: mode,
		Now: gw.Now(), Lock: c.lock(), Freezes: gw.Freezes(),
	})
	if d.Verdict != policy.Allow {
		return Ticket{}, errors.New(d.Message())
	}
	return Ticket{SessionID: id, JoinDecision: d}, nil
}

// NoSession is the refusal to join a session that is not (or no longer)
// running.
func NoSession(id string) error {
	return fmt.Errorf("no session %s; `ssh gw sessions` lists the sessions you may join", id)
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
