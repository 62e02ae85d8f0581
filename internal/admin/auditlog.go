package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/auditcli"
)

// Reading the audit log through the gateway (M9): a person sees the events
// of the tenants their audit grants name, and nothing else: events of no
// tenant (logins, the gateway's start, configuration changes, these reads
// themselves) are for the operator's `tandem audit show` on the gateway
// host. Every read is audited before any event is shown (fail closed).

// defaultAuditLimit bounds what one read shows: the most recent events
// that match.
const defaultAuditLimit = 1000

// auditShow is one `audit show`: the filters asked for and the output form.
type auditShow struct {
	since           time.Duration
	types           string
	person, session string
	limit           int
	json            bool
}

const auditUsage = "usage: audit show [--since 24h] [--type T,…] [--person P] [--session S] [--limit N] [--json]\n" +
	"  e.g.  ssh gw audit show --since 2h --type session.start,session.end"

func (c *call) auditCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "show" {
		return errors.New(auditUsage)
	}
	var q auditShow
	fs := flag.NewFlagSet("audit show", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&q.since, "since", 24*time.Hour, "only events of the last DURATION")
	fs.StringVar(&q.types, "type", "", "only these event types, comma-separated (docs/AUDIT.md)")
	fs.StringVar(&q.person, "person", "", "only events naming this person in any role")
	fs.StringVar(&q.session, "session", "", "only this session")
	fs.IntVar(&q.limit, "limit", defaultAuditLimit, "show at most the N most recent events")
	fs.BoolVar(&q.json, "json", false, "print JSON lines (original bytes, JSON-escaped)")
	if _, err := commandArgs(fs, args[1:], "", ""); err != nil {
		return err
	}
	if q.limit <= 0 || q.limit > defaultAuditLimit || q.since <= 0 {
		return fmt.Errorf("--limit must be 1 to %d and --since positive\n%s", defaultAuditLimit, auditUsage)
	}
	return c.showAudit(q, out)
}

// showAudit reads the events q selects of the tenants the caller may read,
// records the read, and only then writes them.
func (c *call) showAudit(q auditShow, out io.Writer) error {
	tenants := c.auditTenants()
	if len(tenants) == 0 {
		return fmt.Errorf("%s may read the audit events of no tenant: no role of theirs has audit: true for a host\n"+
			"  ask for a role with audit: true, or ask the operator (tandem audit show on the gateway host)", c.who.ID())
	}
	rows, matched, err := c.readAudit(q, tenants)
	if err != nil {
		return fmt.Errorf("cannot read the audit log: %w", err)
	}
	ev := audit.AuditReadEvent{Conn: audit.Conn{Person: c.who.ID(), Source: c.who.Source}, Filter: q.String(),
		Count: len(rows), Truncated: matched > len(rows), Tenants: tenants}
	if err := audit.OrRefuse(c.ctx, gatewaySink{c.gw}, ev.Event()); err != nil {
		return errors.New("the audit log is unavailable, so it cannot be read either")
	}
	return writeAudit(out, rows, matched, q.json)
}

// auditTenants are the tenants whose events the caller may read, as the
// configuration in force says.
func (c *call) auditTenants() []string {
	var out []string
	for _, t := range c.cfg.Tenants {
		if c.eng.MayReadAudit(c.who.Person, t.ID) {
			out = append(out, t.ID)
		}
	}
	return out
}

// readAudit returns the last q.limit events that q selects among those of
// tenants, and how many matched in all.
func (c *call) readAudit(q auditShow, tenants []string) ([]audit.Record, int, error) {
	f := audit.Filter{Since: c.gw.Now().Add(-q.since), Person: q.person, Session: q.session}
	for _, t := range strings.Split(q.types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			f.Types = append(f.Types, audit.Type(t))
		}
	}
	may := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		may[t] = true
	}
	var rows []audit.Record
	matched := 0
	err := c.gw.AuditEvents(f, func(r audit.Record) error {
		if !may[r.Event.Tenant] {
			return nil
		}
		matched++
		if rows = append(rows, r); len(rows) > q.limit {
			rows = rows[1:]
		}
		return nil
	})
	return rows, matched, err
}

// String is the filter as the audit.read event records it.
func (q auditShow) String() string {
	return fmt.Sprintf("since=%s type=%s person=%s session=%s limit=%d", q.since, q.types, q.person, q.session, q.limit)
}

// writeAudit writes rows as lines for people (person-supplied text
// escaped, as `tandem audit show` does) or as JSON lines.
func writeAudit(out io.Writer, rows []audit.Record, matched int, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		for _, r := range rows {
			if err := enc.Encode(struct {
				Index uint64 `json:"index"`
				audit.Event
			}{r.Index, r.Event}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no audit events you may read match")
		return nil
	}
	for _, r := range rows {
		fmt.Fprintln(out, auditcli.FormatLine(r))
	}
	if matched > len(rows) {
		fmt.Fprintf(out, "(the last %d of %d matching events; narrow with --since, --type, --person or --session)\n", len(rows), matched)
	}
	return nil
}

// gatewaySink is the gateway's audit as an audit.Sink, for OrRefuse.
type gatewaySink struct{ gw Gateway }

func (s gatewaySink) Append(ctx context.Context, e audit.Event) error { return s.gw.Audit(ctx, e) }
