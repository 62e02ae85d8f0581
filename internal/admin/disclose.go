package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/disclose"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// Lawful disclosure (M15): a person with the permission disclose or dpo
// opens a case with a legal basis, a scope and the recipient's public key;
// two other persons approve it, one of them with the permission dpo; the
// operator then exports it (`tandem disclose export`), encrypted to the
// recipient. Every step is in the audit log before it answers, and the
// case is read back from the log alone (internal/disclose).

const discloseUsage = "usage: disclose request --tenant T --scope session:ID|period:FROM..TO --legal-basis TEXT\n" +
	"                        (--recipient-key - < KEYFILE | --recipient age1…) [--sealed] [--no-notify HOLD-ID] --reason TEXT\n" +
	"       disclose approve ID\n" +
	"       disclose show ID"

// inputTimeout bounds how long a command waits for its standard input.
const inputTimeout = 30 * time.Second

func (c *call) discloseCmd(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(discloseUsage)
	}
	if d := c.eng.MayDisclose(c.who.Person, c.who.Key, c.gw.Now(), c.lock()); d.Verdict != policy.Allow {
		return errors.New(d.Reason)
	}
	switch args[0] {
	case "request":
		return c.discloseRequest(args[1:], out)
	case "approve", "show":
		fs := flag.NewFlagSet("disclose "+args[0], flag.ContinueOnError)
		fs.SetOutput(out)
		id, err := commandArgs(fs, args[1:], "", "case id")
		if err != nil {
			return err
		}
		cs, err := disclose.Load(c.gw.AuditEvents, id)
		if err != nil {
			return err
		}
		if args[0] == "show" {
			writeCase(out, cs)
			return nil
		}
		return c.discloseApprove(cs, out)
	}
	return errors.New(discloseUsage)
}

func (c *call) discloseRequest(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("disclose request", flag.ContinueOnError)
	fs.SetOutput(out)
	tenant := fs.String("tenant", "", "the tenant whose data is disclosed")
	scopeText := fs.String("scope", "", "session:ID or period:FROM..TO (UTC days)")
	basis := fs.String("legal-basis", "", "the legal basis: court order, Art. 6(1)(c) with the obligation, Art. 6(1)(f) with the investigation number, imminent danger")
	keyFlag := fs.String("recipient-key", "", "- to read the recipient's public key (age, SSH or armored OpenPGP) from standard input")
	inline := fs.String("recipient", "", "the recipient's age recipient (age1…) or SSH public key, instead of --recipient-key -")
	sealed := fs.Bool("sealed", false, "include keystrokes typed at secret prompts (only where the legal basis covers them)")
	noNotify := fs.String("no-notify", "", "a legal hold whose terms withhold the notice to the tenant's contact")
	reason := fs.String("reason", "", "the purpose (required); may be the last flag, unquoted")
	if _, err := commandArgs(fs, args, "reason", ""); err != nil {
		return err
	}
	t := c.cfg.Tenant(*tenant)
	switch {
	case t == nil:
		return fmt.Errorf("unknown tenant %q\n%s", *tenant, discloseUsage)
	case len(strings.TrimSpace(*basis)) < 5:
		return errors.New("--legal-basis is required: name the order, obligation or investigation")
	case strings.TrimSpace(*reason) == "":
		return errors.New("--reason is required: the purpose of the disclosure")
	case *keyFlag != "" && *keyFlag != "-":
		return errors.New("--recipient-key takes - and the key on standard input (ssh gw … --recipient-key - < key.asc): the gateway cannot read your files")
	case (*keyFlag == "-") == (*inline != ""):
		return fmt.Errorf("give the recipient's key with --recipient-key - (on standard input) or --recipient KEY\n%s", discloseUsage)
	}
	scope, err := disclose.ParseScope(*scopeText)
	if err != nil {
		return err
	}
	keyText := *inline
	if *keyFlag == "-" {
		if keyText, err = c.readInput(disclose.MaxRecipientKey); err != nil {
			return err
		}
	}
	rcpt, err := disclose.ParseRecipient(keyText)
	if err != nil {
		return err
	}
	if scope.Session != "" {
		if err := c.sessionOfTenant(scope.Session, t.ID); err != nil {
			return err
		}
	}
	contact := t.Contact
	if contact == "" {
		contact = "none configured (tenants.contact)"
	}
	if *noNotify != "" {
		if err := c.activeHold(*noNotify, t.ID); err != nil {
			return err
		}
		contact = "notice withheld under legal hold " + *noNotify
	}
	id, err := disclose.NewID()
	if err != nil {
		return err
	}
	ev := audit.DisclosureRequestedEvent{Conn: c.who.conn(), DisclosureCase: audit.DisclosureCase{Tenant: t.ID, ID: id},
		Scope: scope.String(), LegalBasis: *basis, Reason: *reason, Recipient: rcpt.String(), RecipientKey: rcpt.Text(),
		SealedInput: *sealed, Contact: contact}
	if err := audit.OrRefuse(c.ctx, gatewaySink{c.gw}, ev.Event()); err != nil {
		return errors.New("the audit log is unavailable, so no case is opened")
	}
	fmt.Fprintf(out, "disclosure case %s opened: %s of %s to %s\n", id, scope, safetext.Line(t.ID), safetext.Line(rcpt.String()))
	fmt.Fprintf(out, "  notify: %s\n", safetext.Line(contact))
	fmt.Fprintf(out, "  next: two other persons approve (one with the permission dpo): ssh gw disclose approve %s\n", id)
	return nil
}

func (c *call) discloseApprove(cs *disclose.Case, out io.Writer) error {
	me := c.who.ID()
	if cs.Requester == me {
		return disclose.ErrSelf
	}
	for _, a := range cs.Approvals {
		if a.Person == me {
			return fmt.Errorf("%s approved case %s already; a case needs two different persons", me, cs.ID)
		}
	}
	if cs.Approved() == nil {
		return fmt.Errorf("case %s is approved already", cs.ID)
	}
	ev := audit.DisclosureApprovedEvent{Conn: c.who.conn(), DisclosureCase: audit.DisclosureCase{Tenant: cs.Tenant, ID: cs.ID},
		DPO: c.eng.IsDPO(c.who.Person), Approvals: len(cs.Approvals) + 1}
	if err := audit.OrRefuse(c.ctx, gatewaySink{c.gw}, ev.Event()); err != nil {
		return errors.New("the audit log is unavailable, so the approval is not recorded")
	}
	cs.Approvals = append(cs.Approvals, disclose.Approval{Person: me, DPO: ev.DPO, At: c.gw.Now()})
	if err := cs.Approved(); err != nil {
		fmt.Fprintf(out, "approval of case %s recorded; %s\n", cs.ID, safetext.Line(err.Error()))
		return nil
	}
	fmt.Fprintf(out, "approval of case %s recorded; the case is approved: the operator exports it with tandem disclose export %s --out FILE\n", cs.ID, cs.ID)
	return nil
}

func writeCase(out io.Writer, cs *disclose.Case) {
	fmt.Fprintf(out, "case %s: %s of %s, opened %s by %s\n", cs.ID, cs.Scope, safetext.Line(cs.Tenant), cs.Requested.UTC().Format(time.RFC3339), safetext.Line(cs.Requester))
	fmt.Fprintf(out, "  legal basis: %s\n  reason: %s\n  recipient: %s\n  notify: %s\n  sealed input: %v\n",
		safetext.Line(cs.LegalBasis), safetext.Line(cs.Reason), safetext.Line(cs.Recipient), safetext.Line(cs.Contact), cs.SealedInput)
	for _, a := range cs.Approvals {
		dpo := ""
		if a.DPO {
			dpo = " (dpo)"
		}
		fmt.Fprintf(out, "  approved by %s%s at %s\n", safetext.Line(a.Person), dpo, a.At.UTC().Format(time.RFC3339))
	}
	state := "approved"
	if err := cs.Approved(); err != nil {
		state = err.Error()
	}
	fmt.Fprintf(out, "  state: %s; exported %d time(s)\n", safetext.Line(state), cs.Exports)
}

// readInput reads the command's standard input up to limit bytes, within
// inputTimeout. The reader runs apart; if the client never ends its
// input it stays blocked until the channel closes, which the command's
// return brings about.
func (c *call) readInput(limit int) (string, error) {
	if c.who.Input == nil {
		return "", errors.New("this command reads the key from standard input, and there is none")
	}
	type res struct {
		b   []byte
		err error
	}
	got := make(chan res, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(c.who.Input, int64(limit)+1))
		got <- res{b, err}
	}()
	t := time.NewTimer(inputTimeout)
	defer t.Stop()
	select {
	case r := <-got:
		if r.err != nil {
			return "", fmt.Errorf("read the key from standard input: %w", r.err)
		}
		if len(r.b) > limit {
			return "", fmt.Errorf("the key on standard input is longer than %d bytes", limit)
		}
		return string(r.b), nil
	case <-t.C:
		return "", fmt.Errorf("no key on standard input within %v (ssh gw disclose request … --recipient-key - < key.asc)", inputTimeout)
	case <-c.ctx.Done():
		return "", c.ctx.Err()
	}
}

// sessionOfTenant checks that session id ran on a host of tenant.
func (c *call) sessionOfTenant(id, tenant string) error {
	found := false
	err := c.gw.AuditEvents(audit.Filter{Session: id, Types: []audit.Type{audit.SessionStart}}, func(r audit.Record) error {
		found = found || r.Event.Tenant == tenant
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot read the audit log: %w", err)
	}
	if !found {
		return fmt.Errorf("no session %s of tenant %s in the audit log", safetext.Line(id), tenant)
	}
	return nil
}

// activeHold checks that hold id was placed on tenant (or a person or
// session) and is not released or expired, by the audit log.
func (c *call) activeHold(id, tenant string) error {
	var placed, released bool
	var expires time.Time
	types := []audit.Type{audit.RetentionHold, audit.RetentionReleased}
	err := c.gw.AuditEvents(audit.Filter{Types: types}, func(r audit.Record) error {
		if r.Event.Attrs[audit.KeyID] != id {
			return nil
		}
		if r.Event.Type == audit.RetentionReleased {
			released = true
			return nil
		}
		placed, released = true, false
		expires, _ = time.Parse(time.RFC3339, r.Event.Attrs[audit.KeyExpires])
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("cannot read the audit log: %w", err)
	case !placed || released:
		return fmt.Errorf("no legal hold %s in force: the notice to %s's contact can be withheld only under one", safetext.Line(id), tenant)
	case !expires.IsZero() && !c.gw.Now().Before(expires):
		return fmt.Errorf("legal hold %s expired at %s", safetext.Line(id), expires.Format(time.RFC3339))
	}
	return nil
}
