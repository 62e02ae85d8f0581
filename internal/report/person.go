package report

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/vault"
)

// The access report of a person (GDPR Art. 15): what Tandem stores about
// them — their entry in the configuration, their keys, and every audit
// record that names them in any role — with other persons left out
// wherever they are not what the person has a right to learn. Who read
// the person's recordings is kept: the recipients of their data are part
// of the answer (Art. 15(1)(c)). Every other person a record names (the
// second person of their session, the approver of their request, the
// locker) shows as "another person".

// Another is what the report shows instead of another person's id.
const Another = "(another person)"

// gatewayLabel names the records without a tenant.
const gatewayLabel = "(gateway)"

// PersonReport is the access report of one person.
type PersonReport struct {
	Person    string         `json:"person"`
	Generated string         `json:"generated"`
	Config    *PersonConfig  `json:"config,omitempty"` // nil: not in the configuration (any more)
	Sections  []Section      `json:"sections"`
	Retention []string       `json:"retention"`
	Records   int            `json:"records"`
	Shredded  int            `json:"records_partly_destroyed"`
	ByTenant  map[string]int `json:"records_by_tenant"`
}

// PersonConfig is the person's entry in the configuration in force.
type PersonConfig struct {
	ID           string            `json:"id"`
	Name         string            `json:"name,omitempty"`
	Email        string            `json:"email,omitempty"`
	Account      string            `json:"account,omitempty"`
	Roles        []string          `json:"roles"`
	AgeRecipient bool              `json:"age_recipient"`
	Keys         []PersonKey       `json:"keys"`
	Obligations  map[string]string `json:"obligations,omitempty"`
}

// PersonKey is one registered key: what it is, since when.
type PersonKey struct {
	Person      string `json:"person,omitempty"` // in an evidence report's key ages
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	Comment     string `json:"comment,omitempty"`
	Added       string `json:"added,omitempty"`
	AgeDays     int    `json:"age_days,omitempty"`
}

// Section is one kind of record naming the person.
type Section struct {
	Title string `json:"title"`
	Lines []Line `json:"records"`
}

// Line is one record as the person sees it.
type Line struct {
	Index  uint64            `json:"index"`
	Time   string            `json:"time"`
	Type   string            `json:"type"`
	Role   string            `json:"role"` // the part the person plays in it
	Fields map[string]string `json:"fields"`
}

// PersonOptions say whose data to report.
type PersonOptions struct {
	AuditDir string
	Keys     audit.KeyReader
	Config   *config.Config
	Person   string
	Now      time.Time
}

// sections sorts event types into the report's sections, in order.
var sections = []struct {
	title string
	types []audit.Type
}{
	{"Logins and refused logins", []audit.Type{audit.AuthSuccess, audit.AuthFailure, audit.AuthBlocked, audit.AuthUnblocked}},
	{"Sessions (owned and joined)", []audit.Type{audit.SessionStart, audit.SessionEnd, audit.SessionDenied, audit.Exec,
		audit.SessionWaiting, audit.SessionLive, audit.SessionPaused, audit.SessionResumed, audit.SessionEnded,
		audit.SessionJoin, audit.SessionLeave, audit.ForwardStart, audit.ForwardEnd, audit.ForwardDenied, audit.ChannelLimited}},
	{"Access requests and approvals", []audit.Type{audit.RequestCreate, audit.RequestApprove, audit.RequestDeny, audit.RequestRevoke, audit.RequestExpired}},
	{"Reads of recordings and of the audit log", []audit.Type{audit.RecordingRead, audit.RecordingExport, audit.AuditRead}},
	{"Locks", []audit.Type{audit.Lock, audit.Unlock, audit.StateForged}},
	{"Gateway commands", []audit.Type{audit.Command}},
	{"Configuration changes and reloads", []audit.Type{audit.ConfigReload, audit.ConfigChange}},
	{"Retention and legal holds", []audit.Type{audit.RetentionHold, audit.RetentionReleased, audit.RetentionExtended}},
}

// BuildPerson collects the person's data.
func BuildPerson(o PersonOptions) (*PersonReport, error) {
	if o.Person == "" {
		return nil, fmt.Errorf("report: a person is needed")
	}
	r := &PersonReport{Person: o.Person, Generated: stamp(o.Now), ByTenant: map[string]int{}}
	if o.Config != nil {
		r.Config = personConfig(o.Config, o.Person, o.Now)
	}
	others := otherPersons(o.Config, o.Person)
	byTitle := map[string]*Section{}
	other := &Section{Title: "Other records"}
	err := audit.ReadKeys(o.AuditDir, o.Keys, audit.Filter{Person: o.Person}, func(rec audit.Record) error {
		r.Records++
		if len(rec.Unreadable) > 0 {
			r.Shredded++
		}
		t := rec.Event.Tenant
		if t == "" {
			t = gatewayLabel
		}
		r.ByTenant[t]++
		l := redact(rec.Index, rec.Event, o.Person, others)
		s := other
		for _, sec := range sections {
			if slices.Contains(sec.types, rec.Event.Type) {
				if s = byTitle[sec.title]; s == nil {
					s = &Section{Title: sec.title}
					byTitle[sec.title] = s
				}
				break
			}
		}
		s.Lines = append(s.Lines, l)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, sec := range sections {
		if s := byTitle[sec.title]; s != nil {
			r.Sections = append(r.Sections, *s)
		}
	}
	if len(other.Lines) > 0 {
		r.Sections = append(r.Sections, *other)
	}
	r.Sections = nonNil(r.Sections)
	if o.Config != nil {
		r.Retention = retentionText(o.Config, r.ByTenant)
	}
	return r, nil
}

func personConfig(c *config.Config, id string, now time.Time) *PersonConfig {
	p := c.Person(id)
	if p == nil {
		return nil
	}
	pc := &PersonConfig{ID: p.ID, Name: p.Name, Email: p.Email, Account: p.Account, Roles: nonNil(p.Roles),
		AgeRecipient: p.AgeRecipient != "", Obligations: map[string]string{}}
	pc.Keys = KeysOf(p, now)
	for name, d := range map[string]config.Date{
		"confidentiality_signed": p.Obligations.ConfidentialitySigned, "training_valid_until": p.Obligations.TrainingValidUntil,
		"contract_until": p.Obligations.ContractUntil, "nda_signed": p.Obligations.NDASigned,
	} {
		if !d.IsZero() {
			pc.Obligations[name] = d.String()
		}
	}
	return pc
}

// KeysOf describes p's registered keys and their age at now.
func KeysOf(p *config.Person, now time.Time) []PersonKey {
	out := []PersonKey{}
	for _, k := range p.Keys {
		pk := PersonKey{Fingerprint: k.Fingerprint, Comment: k.Comment}
		if k.PublicKey != nil {
			pk.Type = k.PublicKey.Type()
		}
		if !k.Added.IsZero() {
			pk.Added = k.Added.String()
			pk.AgeDays = int(now.Sub(k.Added.Time).Hours() / 24)
		}
		out = append(out, pk)
	}
	return out
}

// retentionText says how long each class of the person's records is
// kept, per tenant the records belong to.
func retentionText(c *config.Config, tenants map[string]int) []string {
	var out []string
	for _, t := range slices.Sorted(maps.Keys(tenants)) {
		id := t
		if t == gatewayLabel {
			id = audit.GatewayTenant
		}
		var parts []string
		for _, cl := range vault.Classes {
			parts = append(parts, fmt.Sprintf("%s %d days", cl, int(c.Period(id, string(cl)).Hours()/24)))
		}
		out = append(out, fmt.Sprintf("%s: %s", t, strings.Join(parts, ", ")))
	}
	return out
}

// otherPersons matches the ids of every configured person but p as
// whole words; nil when there are none.
func otherPersons(c *config.Config, p string) *regexp.Regexp {
	if c == nil {
		return nil
	}
	var ids []string
	for _, q := range c.Persons {
		if q.ID != p && q.ID != "" {
			ids = append(ids, regexp.QuoteMeta(q.ID))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Longest first, so that "bob" does not cut "bobby" short.
	slices.SortFunc(ids, func(a, b string) int { return len(b) - len(a) })
	return regexp.MustCompile(`\b(` + strings.Join(ids, "|") + `)\b`)
}

// redact turns a record into a line for person p: every field and
// attribute that names another person becomes Another, except the
// readers of p's recordings, who are recipients of p's data.
func redact(idx uint64, e audit.Event, p string, others *regexp.Regexp) Line {
	l := Line{Index: idx, Time: stamp(e.Time), Type: string(e.Type), Fields: map[string]string{}}
	spec, _ := audit.Lookup(e.Type)
	recipient := (e.Type == audit.RecordingRead || e.Type == audit.RecordingExport) && e.Attrs[audit.KeyOwner] == p
	roles := map[string]string{}
	for _, f := range spec.Fields {
		if f.Attr && f.Role != "" {
			roles[f.Name] = f.Role
		}
	}
	who := func(role, v string) string {
		switch {
		case v == p:
			if l.Role == "" {
				l.Role = role
			} else if !strings.Contains(l.Role, role) {
				l.Role += ", " + role
			}
			return v
		case recipient:
			return v
		case strings.Contains(v, ","): // a list of persons (co_holders)
			var out []string
			for _, x := range strings.Split(v, ",") {
				if x == p {
					out = append(out, x)
					l.Role = role
				} else {
					out = append(out, Another)
				}
			}
			return strings.Join(out, ",")
		}
		return Another
	}
	set := func(k, v string) {
		if v != "" {
			l.Fields[k] = v
		}
	}
	// Free text (reasons, notices) names persons too: "bob joined as
	// peer". Whole words that are another configured person's id go.
	text := func(v string) string {
		if others == nil || recipient {
			return v
		}
		return others.ReplaceAllString(v, Another)
	}
	if e.Person != "" {
		set("person", who(spec.PersonRole, e.Person))
	}
	set("session", e.Session)
	set("tenant", e.Tenant)
	set("host", e.Host)
	set("login", e.Login)
	set("source", e.Source)
	set("request", e.Request)
	for k, v := range e.Attrs {
		if r, ok := roles[k]; ok {
			v = who(r, v)
		} else {
			v = text(v)
		}
		set(k, v)
	}
	return l
}

// WriteText writes the report for people.
func (r *PersonReport) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "Access report for person %s (GDPR Art. 15), made %s\n", safetext.Line(r.Person), r.Generated)
	fmt.Fprintf(b, "Other persons named in these records show as %q, except those who read this person's recordings.\n\n", Another)
	b.WriteString("In the configuration:\n")
	if c := r.Config; c == nil {
		b.WriteString("  not in the configuration in force\n")
	} else {
		fmt.Fprintf(b, "  id %s, name %q, e-mail %q, account %s\n", safetext.Line(c.ID), c.Name, c.Email, dash(c.Account))
		fmt.Fprintf(b, "  roles: %s\n", safetext.Line(strings.Join(c.Roles, ", ")))
		fmt.Fprintf(b, "  age recipient for break-glass shares: %v\n", c.AgeRecipient)
		for _, k := range c.Keys {
			fmt.Fprintf(b, "  key %s %s %s, added %s (%d days ago)\n", k.Type, k.Fingerprint, safetext.Line(k.Comment), dash(k.Added), k.AgeDays)
		}
		for _, name := range slices.Sorted(maps.Keys(c.Obligations)) {
			fmt.Fprintf(b, "  %s: %s\n", name, c.Obligations[name])
		}
	}
	fmt.Fprintf(b, "\nIn the audit log: %d record(s) naming %s", r.Records, safetext.Line(r.Person))
	for _, t := range slices.Sorted(maps.Keys(r.ByTenant)) {
		fmt.Fprintf(b, "; %s %d", safetext.Line(t), r.ByTenant[t])
	}
	fmt.Fprintf(b, "\n%d of them with fields destroyed by retention (records whose person field is gone no longer name anyone and are not listed).\n", r.Shredded)
	for _, s := range r.Sections {
		fmt.Fprintf(b, "\n%s (%d):\n", s.Title, len(s.Lines))
		for _, l := range s.Lines {
			fmt.Fprintf(b, "  #%d %s %s", l.Index, l.Time, l.Type)
			if l.Role != "" {
				fmt.Fprintf(b, " [%s]", l.Role)
			}
			for _, k := range slices.Sorted(maps.Keys(l.Fields)) {
				fmt.Fprintf(b, " %s=%s", k, safetext.Line(l.Fields[k]))
			}
			b.WriteString("\n")
		}
	}
	if len(r.Retention) > 0 {
		b.WriteString("\nHow long these records are kept, by tenant (docs/RETENTION.md; legal holds above):\n")
		for _, s := range r.Retention {
			fmt.Fprintf(b, "  %s\n", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
