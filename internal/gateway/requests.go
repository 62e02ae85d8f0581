package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// Access requests (M8): non-interactive work on four-eyes hosts runs only
// inside a time-boxed, purpose-bound request that a second person approved.

// requestWindows reads the person's current access requests for the
// policy, which decides whether one covers an action. An unreadable store
// yields none: without a request nothing that needs one is allowed (fail
// closed).
func (s *Server) requestWindows(ctx context.Context, person string, now time.Time) []policy.RequestWindow {
	if s.store == nil {
		return nil
	}
	rs, err := s.store.ActiveRequests(ctx, person, now)
	if err != nil && !errors.Is(err, store.ErrForged) { // forged rows are left out, reported by the store
		s.log.Error("request store unreadable", "err", err)
		return nil
	}
	ws := make([]policy.RequestWindow, len(rs))
	for i, r := range rs {
		ws[i] = window(r)
	}
	return ws
}

// requestByID loads a request the policy named as covering an action.
func (s *Server) requestByID(ctx context.Context, id string) (*store.Request, error) {
	if s.store == nil {
		return nil, errors.New("this gateway has no state store")
	}
	r, err := s.store.GetRequest(ctx, id)
	if err == nil && r == nil {
		err = fmt.Errorf("request %s vanished", id)
	}
	return r, err
}

func window(r store.Request) policy.RequestWindow {
	return policy.RequestWindow{ID: r.ID, Requester: r.Requester, Hosts: r.Hosts, Login: r.Login,
		From: r.ValidFrom, Until: r.ValidUntil, Approved: r.State == store.RequestApproved, TTY: r.TTY}
}

// recordRequest audits a request's transition; the action has already
// been stored, so a failure is logged (the audit watcher ends sessions if
// the log is gone).
func (c *clientConn) recordRequest(t audit.Type, r store.Request, attrs map[string]string) error {
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["hosts"] = strings.Join(r.Hosts, ",")
	attrs["login"] = r.Login
	attrs["requester"] = r.Requester
	return c.srv.audit.Append(context.Background(), audit.Event{Type: t, Person: c.person.ID, Request: r.ID, Source: c.source, Attrs: attrs})
}

func (c *clientConn) cmdRequest(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("request", flag.ContinueOnError)
	fs.SetOutput(out)
	sel := fs.String("hosts", "", "hosts: names or globs, or tenant=…, environment=…, label:key=value, comma-separated")
	login := fs.String("login", "", "the target login")
	dur := fs.Duration("for", time.Hour, "how long the approval lasts once approved")
	tty := fs.Bool("tty", false, "also allow commands with a terminal (ssh -tt host cmd) without a second person; approvers must accept this with --terminals")
	reason := fs.String("reason", "", "purpose and ticket (required); may be the last flag, unquoted")
	if _, err := commandArgs(fs, args, "reason", ""); err != nil {
		return err
	}
	if c.srv.store == nil {
		return errors.New("this gateway has no state store")
	}
	hosts, err := c.st.engine.ResolveHosts(*sel)
	if err != nil {
		return err
	}
	now := c.srv.now()
	d := c.st.engine.CheckRequest(c.person, c.key, hosts, *login, *dur, *reason, now, c.srv.lockReason(c.person.ID))
	if d.Verdict != policy.Allow {
		return errors.New(joinReason(d))
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	r, err := c.srv.store.CreateRequest(context.Background(), store.Request{
		Requester: c.person.ID, Hosts: names, Selector: *sel, Login: *login, Duration: *dur, Reason: *reason, Created: now, TTY: *tty,
	})
	if err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestCreate, r, map[string]string{"duration": dur.String(), "reason": *reason, "tty": fmt.Sprint(*tty)}); err != nil {
		return fmt.Errorf("request %s stored, but the audit log is unavailable: %v", r.ID, err)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(out, "note: %s\n", safetext.Line(w))
	}
	need := c.st.engine.ApproversNeeded(hosts)
	fmt.Fprintf(out, "request %s: %s on %s for %s%s — waiting for %d approval(s)\n", r.ID, safetext.Line(r.Login),
		safetext.Line(strings.Join(r.Hosts, ", ")), r.Duration, ttyWords(r), need)
	fmt.Fprintf(out, "a colleague approves with:  ssh gw approve %s\n", r.ID)
	return nil
}

func (c *clientConn) cmdRequests(args []string, out io.Writer) error {
	if len(args) > 0 {
		return errUsage
	}
	if c.srv.store == nil {
		return errors.New("this gateway has no state store")
	}
	now := c.srv.now()
	rs, err := c.srv.store.ListRequests(context.Background(), store.RequestFilter{
		States: []store.RequestState{store.RequestOpen, store.RequestApproved}, Since: now.Add(-7 * 24 * time.Hour),
	})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tLOGIN\tHOSTS\tFOR\tTERMINALS\tUNTIL\tREASON")
	n := 0
	for _, r := range rs {
		state := r.StateAt(now)
		if state == store.RequestExpired {
			continue
		}
		mine := r.Requester == c.person.ID
		if !mine && (state != store.RequestOpen || !c.mayDecide(r, now)) {
			continue
		}
		until := "-"
		if !r.ValidUntil.IsZero() {
			until = r.ValidUntil.UTC().Format("2006-01-02 15:04 UTC")
		}
		terminals := "no"
		if r.TTY {
			terminals = "YES"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Line(r.ID), state, safetext.Line(r.Requester), safetext.Line(r.Login),
			safetext.Line(strings.Join(r.Hosts, ",")), r.Duration, terminals, until, safetext.Line(r.Reason))
		n++
	}
	if n == 0 {
		fmt.Fprintln(out, "no open requests you own or may decide")
		return nil
	}
	return tw.Flush()
}

// hostsOf returns the configured hosts r names, leaving out those that are
// no longer configured (a denial may still close such a request).
func (c *clientConn) hostsOf(r store.Request) []*config.Host {
	var hs []*config.Host
	for _, n := range r.Hosts {
		if h := c.st.cfg.Host(n); h != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// allHostsOf returns a host for each name r lists, nil for one that is no
// longer configured, so that the policy refuses to approve it.
func (c *clientConn) allHostsOf(r store.Request) []*config.Host {
	hs := make([]*config.Host, len(r.Hosts))
	for i, n := range r.Hosts {
		hs[i] = c.st.cfg.Host(n)
	}
	return hs
}

// mayDecide reports whether the person may approve r (the listing shows
// them the open requests they can act on).
func (c *clientConn) mayDecide(r store.Request, now time.Time) bool {
	return c.canDecide(r, c.allHostsOf(r), now).Verdict == policy.Allow
}

// decisionArgs parses "ID [--comment|--reason TEXT]" for approve, deny,
// revoke; fs may carry further flags of the command (approve's
// --terminals).
func decisionArgs(fs *flag.FlagSet, textFlag string, args []string, out io.Writer) (id, text string, err error) {
	fs.SetOutput(out)
	t := fs.String(textFlag, "", "text recorded with the decision")
	id, err = commandArgs(fs, args, textFlag, "request id")
	return id, *t, err
}

func (c *clientConn) loadRequest(id string) (store.Request, error) {
	if c.srv.store == nil {
		return store.Request{}, errors.New("this gateway has no state store")
	}
	r, err := c.srv.store.GetRequest(context.Background(), id)
	if err != nil {
		return store.Request{}, err
	}
	if r == nil {
		return store.Request{}, fmt.Errorf("no request %s; `ssh gw requests` lists them", id)
	}
	return *r, nil
}

// ttyWords says in a request's summary that it allows terminals.
func ttyWords(r store.Request) string {
	if r.TTY {
		return ", WITH TERMINALS (commands with a terminal, no second person)"
	}
	return ""
}

func (c *clientConn) cmdApprove(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("approve", flag.ContinueOnError)
	terminals := fs.Bool("terminals", false, "accept that the request allows commands with a terminal without a second person")
	id, comment, err := decisionArgs(fs, "comment", args, out)
	if err != nil {
		return err
	}
	r, err := c.loadRequest(id)
	if err != nil {
		return err
	}
	if r.TTY && !*terminals {
		// The approver must have read this before the request can pass:
		// a terminal under a request is interactive work without a
		// second person at the screen (recorded, but not watched).
		return fmt.Errorf("request %s asks for terminals: %s could run commands with a terminal (ssh -tt) on %s without a second person; "+
			"each such session is recorded like a four-eyes session but nobody watches it live.\n"+
			"  if that is intended, approve with:  ssh gw approve %s --terminals", id, r.Requester, strings.Join(r.Hosts, ", "), id)
	}
	now := c.srv.now()
	hs := c.allHostsOf(r)
	if d := c.canDecide(r, hs, now); d.Verdict != policy.Allow {
		return errors.New(joinReason(d))
	}
	r, err = c.srv.store.Approve(context.Background(), id, store.Approval{By: c.person.ID, At: now, Comment: comment}, c.st.engine.ApproversNeeded(hs))
	if err != nil {
		return err
	}
	attrs := map[string]string{"comment": comment, "approvals": fmt.Sprint(len(r.Approvals)), "tty": fmt.Sprint(r.TTY)}
	if r.State == store.RequestApproved {
		attrs["valid_until"] = r.ValidUntil.UTC().Format(time.RFC3339)
	}
	if err := c.recordRequest(audit.RequestApprove, r, attrs); err != nil {
		return fmt.Errorf("approval stored, but the audit log is unavailable: %v", err)
	}
	if r.State == store.RequestApproved {
		fmt.Fprintf(out, "request %s approved: %s may use %s on %s%s until %s\n", safetext.Line(r.ID), safetext.Line(r.Requester), safetext.Line(r.Login),
			safetext.Line(strings.Join(r.Hosts, ", ")), ttyWords(r), r.ValidUntil.UTC().Format("2006-01-02 15:04:05 UTC"))
	} else {
		fmt.Fprintf(out, "request %s: approval recorded, %d more needed\n", safetext.Line(r.ID), c.st.engine.ApproversNeeded(hs)-len(r.Approvals))
	}
	return nil
}

// canDecide is the policy's verdict on this person deciding request r,
// whose hosts are hs, at now.
func (c *clientConn) canDecide(r store.Request, hs []*config.Host, now time.Time) policy.Decision {
	return c.st.engine.CanDecide(c.person, c.key, r.Requester, hs, now, c.srv.lockReason(c.person.ID))
}

// reasonedRequest reads `VERB ID --reason TEXT`, where the reason is
// required, and loads the request.
func (c *clientConn) reasonedRequest(verb string, args []string, out io.Writer) (store.Request, string, error) {
	id, reason, err := decisionArgs(flag.NewFlagSet(verb, flag.ContinueOnError), "reason", args, out)
	if err != nil {
		return store.Request{}, "", err
	}
	if strings.TrimSpace(reason) == "" {
		return store.Request{}, "", errors.New("--reason is required")
	}
	r, err := c.loadRequest(id)
	return r, reason, err
}

func (c *clientConn) cmdDeny(args []string, out io.Writer) error {
	r, reason, err := c.reasonedRequest("deny", args, out)
	if err != nil {
		return err
	}
	id, now := r.ID, c.srv.now()
	if d := c.canDecide(r, c.hostsOf(r), now); d.Verdict != policy.Allow {
		return errors.New(joinReason(d))
	}
	if r, err = c.srv.store.Deny(context.Background(), id, c.person.ID, reason, now); err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestDeny, r, map[string]string{"reason": reason}); err != nil {
		return fmt.Errorf("denial stored, but the audit log is unavailable: %v", err)
	}
	fmt.Fprintf(out, "request %s denied\n", safetext.Line(id))
	return nil
}

// cmdRevoke ends a request early. The requester may revoke their own; a
// person who may decide it may revoke it too. Live sessions under it end
// at once.
func (c *clientConn) cmdRevoke(args []string, out io.Writer) error {
	r, reason, err := c.reasonedRequest("revoke", args, out)
	if err != nil {
		return err
	}
	id, now := r.ID, c.srv.now()
	if d := c.st.engine.MayRevoke(c.person, c.key, r.Requester, c.hostsOf(r), now, c.srv.lockReason(c.person.ID)); d.Verdict != policy.Allow {
		return errors.New(joinReason(d))
	}
	if r, err = c.srv.store.Revoke(context.Background(), id, c.person.ID, reason, now); err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestRevoke, r, map[string]string{"reason": reason}); err != nil {
		c.srv.log.Error("audit log unavailable", "err", err)
	}
	n := c.srv.endRequestSessions(id, fmt.Sprintf("request %s was revoked by %s: %s", id, c.person.ID, reason))
	fmt.Fprintf(out, "request %s revoked; %d live session(s) ended\n", safetext.Line(id), n)
	return nil
}
