package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// Access requests (M8): non-interactive work on four-eyes hosts runs only
// inside a time-boxed, purpose-bound request that a second person approved.

// A person's open (undecided) requests of the last listedFor are at most
// maxOpenRequests: the approvers' listing shows the newest requests of
// that week (the store returns at most 500), and one person's flood must
// not bury the others' requests there. The week is the store's
// RequestOpenFor: an older request can no longer be approved.
const (
	listedFor       = store.RequestOpenFor
	maxOpenRequests = 20
)

// store is the request store, or errNoStore.
func (c *call) store() (Requests, error) {
	st := c.gw.Requests()
	if st == nil {
		return nil, errNoStore
	}
	return st, nil
}

// recordRequest audits a request's transition; the action has already
// been stored, so the caller reports a failure (the audit watcher ends
// sessions if the log is gone).
func (c *call) recordRequest(e audit.Event) error {
	return c.gw.Audit(c.ctx, e)
}

// requestRef names request r, and the caller as who acts on it, in its
// audit events.
func (c *call) requestRef(r store.Request) audit.RequestRef {
	return audit.RequestRef{Conn: c.who.conn(), Request: r.ID, Tenant: c.requestTenant(r), Hosts: r.Hosts, Login: r.Login, Requester: r.Requester}
}

// requestTenant is the tenant of a request whose hosts all belong to one
// tenant: its events are then that tenant's records (its keys, its
// retention, its auditors' reading and evidence report). A request across
// tenants, or naming a host no longer configured, stays the gateway's.
func (c *call) requestTenant(r store.Request) string {
	tenant := ""
	for _, name := range r.Hosts {
		h := c.cfg.Host(name)
		if h == nil || (tenant != "" && h.Tenant != tenant) {
			return ""
		}
		tenant = h.Tenant
	}
	return tenant
}

func (c *call) request(args []string, out io.Writer) error {
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
	st, err := c.store()
	if err != nil {
		return err
	}
	hosts, err := c.eng.ResolveHosts(*sel)
	if err != nil {
		return err
	}
	now := c.gw.Now()
	d := c.eng.CheckRequest(c.who.Person, c.who.Key, hosts, *login, *dur, *reason, now, c.lock())
	if d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	open, err := st.ListRequests(c.ctx, store.RequestFilter{
		States: []store.RequestState{store.RequestOpen}, Requester: c.who.ID(), Since: now.Add(-listedFor)})
	if err != nil {
		return err
	}
	if len(open) >= maxOpenRequests {
		return fmt.Errorf("you have %d undecided requests of the last %d days, the most one person may have; "+
			"ask for a decision, or revoke one you no longer need (ssh gw requests lists them)", len(open), listedFor/(24*time.Hour))
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	r, err := st.CreateRequest(c.ctx, store.Request{
		Requester: c.who.ID(), Hosts: names, Selector: *sel, Login: *login, Duration: *dur, Reason: *reason, Created: now, TTY: *tty,
	})
	if err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestCreateEvent{RequestRef: c.requestRef(r), Duration: *dur, Reason: *reason, TTY: *tty}.Event()); err != nil {
		return fmt.Errorf("request %s stored, but the audit log is unavailable: %v", r.ID, err)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(out, "note: %s\n", safetext.Line(w))
	}
	need := c.eng.ApproversNeeded(hosts)
	fmt.Fprintf(out, "request %s: %s on %s for %s%s — waiting for %d approval(s)\n", r.ID, safetext.Line(r.Login),
		safetext.Line(strings.Join(r.Hosts, ", ")), r.Duration, ttyWords(r), need)
	fmt.Fprintf(out, "a colleague approves with:  ssh gw approve %s\n", r.ID)
	return nil
}

func (c *call) requests(args []string, out io.Writer) error {
	if len(args) > 0 {
		return errUsage
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	now := c.gw.Now()
	rs, err := st.ListRequests(c.ctx, store.RequestFilter{
		States: []store.RequestState{store.RequestOpen, store.RequestApproved}, Since: now.Add(-listedFor),
	})
	if err != nil {
		return err
	}
	var shown []store.Request
	for _, r := range rs {
		state := r.StateAt(now)
		if state == store.RequestExpired {
			continue
		}
		mine := r.Requester == c.who.ID()
		if !mine && (state != store.RequestOpen || !c.mayDecide(r, now)) {
			continue
		}
		shown = append(shown, r)
	}
	return list(out, "ID\tSTATE\tREQUESTER\tLOGIN\tHOSTS\tFOR\tTERMINALS\tUNTIL\tREASON", "no open requests you own or may decide", shown,
		func(r store.Request) string {
			until := "-"
			if !r.ValidUntil.IsZero() {
				until = r.ValidUntil.UTC().Format("2006-01-02 15:04 UTC")
			}
			terminals := "no"
			if r.TTY {
				terminals = "YES"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", safetext.Line(r.ID), r.StateAt(now), safetext.Line(r.Requester), safetext.Line(r.Login),
				safetext.Line(strings.Join(r.Hosts, ",")), r.Duration, terminals, until, safetext.Line(r.Reason))
		})
}

// hostsOf returns the configured hosts r names, leaving out those that are
// no longer configured (a denial may still close such a request).
func (c *call) hostsOf(r store.Request) []*config.Host {
	var hs []*config.Host
	for _, n := range r.Hosts {
		if h := c.cfg.Host(n); h != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// allHostsOf returns a host for each name r lists, nil for one that is no
// longer configured, so that the policy refuses to approve it.
func (c *call) allHostsOf(r store.Request) []*config.Host {
	hs := make([]*config.Host, len(r.Hosts))
	for i, n := range r.Hosts {
		hs[i] = c.cfg.Host(n)
	}
	return hs
}

// mayDecide reports whether the caller may approve r (the listing shows
// them the open requests they can act on).
func (c *call) mayDecide(r store.Request, now time.Time) bool {
	return c.canDecide(r, c.allHostsOf(r), now).Verdict == policy.Allow
}

// canDecide is the policy's verdict on the caller deciding request r,
// whose hosts are hs, at now.
func (c *call) canDecide(r store.Request, hs []*config.Host, now time.Time) policy.Decision {
	return c.eng.CanDecide(c.who.Person, c.who.Key, r.Requester, hs, now, c.lock())
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

func (c *call) loadRequest(id string) (store.Request, error) {
	st, err := c.store()
	if err != nil {
		return store.Request{}, err
	}
	r, err := st.GetRequest(c.ctx, id)
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

func (c *call) approve(args []string, out io.Writer) error {
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
	now := c.gw.Now()
	hs := c.allHostsOf(r)
	// The right comes first: what follows names the requester and the
	// hosts, which only a person who may decide the request may learn.
	if d := c.canDecide(r, hs, now); d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	if r.TTY && !*terminals {
		// The approver must have read this before the request can pass:
		// a terminal under a request is interactive work without a
		// second person at the screen (recorded, but not watched).
		return fmt.Errorf("request %s asks for terminals: %s could run commands with a terminal (ssh -tt) on %s without a second person; "+
			"each such session is recorded like a four-eyes session but nobody watches it live.\n"+
			"  if that is intended, approve with:  ssh gw approve %s --terminals", id, r.Requester, strings.Join(r.Hosts, ", "), id)
	}
	r, err = c.gw.Requests().Approve(c.ctx, id, store.Approval{By: c.who.ID(), At: now, Comment: comment}, c.eng.ApproversNeeded(hs))
	if err != nil {
		return err
	}
	ev := audit.RequestApproveEvent{RequestRef: c.requestRef(r), Comment: comment, Approvals: len(r.Approvals), TTY: r.TTY}
	if r.State == store.RequestApproved {
		ev.ValidUntil = r.ValidUntil
	}
	if err := c.recordRequest(ev.Event()); err != nil {
		return fmt.Errorf("approval stored, but the audit log is unavailable: %v", err)
	}
	if r.State == store.RequestApproved {
		fmt.Fprintf(out, "request %s approved: %s may use %s on %s%s until %s\n", safetext.Line(r.ID), safetext.Line(r.Requester), safetext.Line(r.Login),
			safetext.Line(strings.Join(r.Hosts, ", ")), ttyWords(r), r.ValidUntil.UTC().Format("2006-01-02 15:04:05 UTC"))
	} else {
		fmt.Fprintf(out, "request %s: approval recorded, %d more needed\n", safetext.Line(r.ID), c.eng.ApproversNeeded(hs)-len(r.Approvals))
	}
	return nil
}

// reasonedRequest reads `VERB ID --reason TEXT`, where the reason is
// required, and loads the request.
func (c *call) reasonedRequest(verb string, args []string, out io.Writer) (store.Request, string, error) {
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

func (c *call) deny(args []string, out io.Writer) error {
	r, reason, err := c.reasonedRequest("deny", args, out)
	if err != nil {
		return err
	}
	id, now := r.ID, c.gw.Now()
	if d := c.canDecide(r, c.hostsOf(r), now); d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	if r, err = c.gw.Requests().Deny(c.ctx, id, c.who.ID(), reason, now); err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestDenyEvent{RequestRef: c.requestRef(r), Reason: reason}.Event()); err != nil {
		return fmt.Errorf("denial stored, but the audit log is unavailable: %v", err)
	}
	fmt.Fprintf(out, "request %s denied\n", safetext.Line(id))
	return nil
}

// revoke ends a request early. The requester may revoke their own; a
// person who may decide it may revoke it too. Live sessions under it end
// at once.
func (c *call) revoke(args []string, out io.Writer) error {
	r, reason, err := c.reasonedRequest("revoke", args, out)
	if err != nil {
		return err
	}
	id, now := r.ID, c.gw.Now()
	if d := c.eng.MayRevoke(c.who.Person, c.who.Key, r.Requester, c.hostsOf(r), now, c.lock()); d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	if r, err = c.gw.Requests().Revoke(c.ctx, id, c.who.ID(), reason, now); err != nil {
		return err
	}
	if err := c.recordRequest(audit.RequestRevokeEvent{RequestRef: c.requestRef(r), Reason: reason}.Event()); err != nil {
		// The revocation is stored and its sessions end regardless: the
		// failure is the gateway's to report, the audit watcher's to act on.
		c.gw.Log().Error("audit log unavailable", "err", err)
	}
	n := c.gw.EndRequestSessions(id, fmt.Sprintf("request %s was revoked by %s: %s", id, c.who.ID(), reason))
	fmt.Fprintf(out, "request %s revoked; %d live session(s) ended\n", safetext.Line(id), n)
	return nil
}
