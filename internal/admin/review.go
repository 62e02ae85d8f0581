package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/safetext"
)

// Spot checks (M29): `tandem review sample` draws sessions and access
// requests of a tenant at random and records the draw (review.sampled);
// a reviewer replays each and records a verdict here. Only what was drawn
// can be judged, only by a person who may read the tenant's audit events
// (audit: true), and never by someone who took part: the owner or a
// joiner of the session, the requester or an approver of the request.

const reviewUsage = "usage: review record ID --verdict ok|finding [--note TEXT]\n" +
	"  e.g.  ssh gw review record 7f3a9c01de --verdict finding --note \"sudo without ticket\""

// MaxNote bounds a reviewer's note.
const MaxNote = 2000

func (c *call) reviewCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "record" {
		return errors.New(reviewUsage)
	}
	var verdict, note string
	fs := flag.NewFlagSet("review record", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&verdict, "verdict", "", "ok or finding")
	fs.StringVar(&note, "note", "", "what the reviewer found (free text, last)")
	id, err := commandArgs(fs, args[1:], "note", "session or request id")
	if err != nil {
		return err
	}
	if verdict != "ok" && verdict != "finding" {
		return fmt.Errorf("--verdict must be ok or finding\n%s", reviewUsage)
	}
	if verdict == "finding" && strings.TrimSpace(note) == "" {
		return errors.New("a finding needs --note: say what was found")
	}
	if len(note) > MaxNote {
		return fmt.Errorf("--note is longer than %d bytes", MaxNote)
	}
	item, err := c.drawn(id)
	if err != nil {
		return err
	}
	if !c.eng.MayReadAudit(c.who.Person, item.tenant) {
		return fmt.Errorf("%s may not review items of tenant %s: no role of theirs has audit: true for it", c.who.ID(), item.tenant)
	}
	if role, err := c.tookPart(item); err != nil {
		return fmt.Errorf("cannot read the audit log: %w", err)
	} else if role != "" {
		return fmt.Errorf("%s may not review %s %s: they are its %s (a review is by someone who did not take part)", c.who.ID(), item.kind, id, role)
	}
	ev := audit.ReviewVerdictEvent{Conn: c.who.conn(), Tenant: item.tenant, Verdict: verdict, Note: note}
	if item.kind == "session" {
		ev.Session = id
	} else {
		ev.Request = id
	}
	if err := audit.OrRefuse(c.ctx, gatewaySink{c.gw}, ev.Event()); err != nil {
		return errors.New("the audit log is unavailable, so the verdict is not recorded")
	}
	fmt.Fprintf(out, "verdict %s on %s %s of %s recorded\n", verdict, item.kind, safetext.Line(id), safetext.Line(item.tenant))
	return nil
}

// reviewItem is a drawn session or request.
type reviewItem struct {
	kind, id, tenant string
}

// drawn finds id among the items spot checks drew.
func (c *call) drawn(id string) (reviewItem, error) {
	var found *reviewItem
	err := c.gw.AuditEvents(audit.Filter{Types: []audit.Type{audit.ReviewSampled}}, func(r audit.Record) error {
		a := r.Event.Attrs
		for _, k := range [][2]string{{"session", audit.KeySampledSessions}, {"request", audit.KeySampledRequests}} {
			if slices.Contains(strings.Split(a[k[1]], ","), id) {
				found = &reviewItem{kind: k[0], id: id, tenant: r.Event.Tenant}
			}
		}
		return nil
	})
	if err != nil {
		return reviewItem{}, fmt.Errorf("cannot read the audit log: %w", err)
	}
	if found == nil {
		return reviewItem{}, fmt.Errorf("%s was not drawn for review (tandem review sample draws sessions and requests)", safetext.Line(id))
	}
	return *found, nil
}

// tookPart says the part the caller played in item, "" for none.
func (c *call) tookPart(item reviewItem) (string, error) {
	me := c.who.ID()
	f := audit.Filter{Session: item.id, Types: []audit.Type{audit.SessionStart, audit.SessionJoin}}
	if item.kind == "request" {
		f = audit.Filter{Request: item.id, Types: []audit.Type{audit.RequestCreate, audit.RequestApprove}}
	}
	role := ""
	err := c.gw.AuditEvents(f, func(r audit.Record) error {
		e := r.Event
		switch {
		case e.Type == audit.SessionStart && e.Person == me:
			role = "owner"
		case e.Type == audit.SessionJoin && e.Attrs[audit.KeyParticipant] == me:
			role = "second person"
		case e.Type == audit.RequestCreate && e.Person == me:
			role = "requester"
		case e.Type == audit.RequestApprove && e.Person == me:
			role = "approver"
		}
		return nil
	})
	return role, err
}
