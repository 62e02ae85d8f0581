package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
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
	// In a cluster a NODE column names the node that holds each session
	// (join works from any node).
	clustered := slices.ContainsFunc(rows, func(s SessionInfo) bool { return s.Node != "" })
	header := "ID\tHOST\tOWNER\tSTATE\tSINCE\tPARTICIPANTS"
	if clustered {
		header = "ID\tNODE\tHOST\tOWNER\tSTATE\tSINCE\tPARTICIPANTS"
	}
	return list(out, header, "no sessions you may join", rows, func(in SessionInfo) string {
		// Every field escaped: in a cluster the other nodes' rows are
		// what they wrote to the store, id, state and modes included.
		var ps []string
		for _, p := range in.Participants[1:] {
			ps = append(ps, safetext.Line(p.Person)+"("+safetext.Line(string(p.Mode))+")")
		}
		id := safetext.Line(in.ID)
		if clustered {
			id += "\t" + safetext.Line(in.Node)
		}
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", id, safetext.Line(in.Host), safetext.Line(in.Owner.Person), safetext.Line(string(in.State)),
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
	// Node is the cluster node that holds the session ("" outside a
	// cluster); the node that holds the session decides again.
	Node string
	policy.JoinDecision
}

// Join decides `join SESSION-ID [--observer|--peer]`: the arguments, a
// terminal (terminal says whether the caller has one), the session, its
// host as configured now and the policy. The error explains a refusal to
// the caller.
func Join(ctx context.Context, gw Gateway, who Caller, args []string, terminal bool) (Ticket, error) {
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
	d, err := DecideJoin(ctx, gw, who, JoinAsk{Session: id, Owner: s.Owner.Person, Host: s.HostConfig.Name, Mode: mode})
	if err != nil {
		return Ticket{}, err
	}
	return Ticket{SessionID: id, Node: s.Node, JoinDecision: d}, nil
}

// JoinAsk is a join to decide: the session, its owner and host, the mode
// asked for ("" for what the policy grants) and, for a join another node
// of a cluster relayed, that node.
type JoinAsk struct {
	Session, Owner, Host, Mode string
	RelayedBy                  string
}

// DecideJoin decides whether who may join a session of a.Owner on the
// host a.Host, as configured now, in a.Mode. The node of a cluster that
// holds a session calls it again for a join relayed from another node, on
// its own state. The error explains a refusal to the caller. A refusal is
// audited (session.denied, action join) here, so that every node records
// the joins it refused, whichever node the person typed the command on.
func DecideJoin(ctx context.Context, gw Gateway, who Caller, a JoinAsk) (policy.JoinDecision, error) {
	c := newCall(ctx, gw, who)
	h := c.cfg.Host(a.Host) // as configured now
	if h == nil {
		err := fmt.Errorf("host %s is no longer configured", a.Host)
		RefuseJoin(ctx, gw, who, a, "", err.Error(), "")
		return policy.JoinDecision{}, err
	}
	d := c.eng.Join(policy.JoinRequest{
		Person: who.Person, Key: who.Key, Owner: a.Owner, Host: h, Mode: a.Mode,
		Now: gw.Now(), Lock: c.lock(), Freezes: gw.Freezes(),
	})
	if d.Verdict != policy.Allow {
		RefuseJoin(ctx, gw, who, a, h.Tenant, d.Reason, d.Verdict.String())
		return policy.JoinDecision{}, errors.New(d.Message())
	}
	return d, nil
}

// RefuseJoin audits a refused join (best effort: the refusal happens
// whether or not it could be recorded). tenant is the host's, when known.
func RefuseJoin(ctx context.Context, gw Gateway, who Caller, a JoinAsk, tenant, reason, verdict string) {
	audit.BestEffort(ctx, audit.SinkFunc(gw.Audit), nil, JoinDenied(who.conn(), a, tenant, reason, verdict))
}

// JoinDenied is the audit event of a refused join by conn: session.denied
// with action join. The node holding a session also builds it for a
// relayed join it refuses before it knows the person (not configured
// there), hence conn rather than a Caller.
func JoinDenied(conn audit.Conn, a JoinAsk, tenant, reason, verdict string) audit.Event {
	return audit.SessionDeniedEvent{
		Target:   audit.Target{Person: conn.Person, Source: conn.Source, Session: a.Session, Tenant: tenant, Host: a.Host},
		Action:   "join",
		JoinMode: a.Mode, RelayedBy: a.RelayedBy, Reason: reason, Verdict: verdict,
	}.Event()
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
