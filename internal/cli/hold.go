package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"tandem.dev/tandem/internal/clock"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/retention"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

func newHoldCmd() *cobra.Command {
	var path, tenant, person, session, reason, ref, by string
	cmd := &cobra.Command{
		Use:   "hold (--tenant T | --person P | --session S) --reason R --ref REF --by PERSON",
		Short: "place a legal hold: keep data keys past their period until released (or retention.hold_max)",
		Long: `Place a legal hold. While it lasts, the retention job destroys none of the
keys it covers: a tenant hold keeps every key of the tenant; a person or
session hold keeps the keys of every (tenant, day) in which that person or
session has events in the audit log. A hold ends when released or, unless
renewed, after retention.hold_max (default 180 days).

PERSON must be a configured person whose role has the permission hold. The
hold is audited (retention.hold) and shown by "tandem retention status".`,
		Example: `  tandem hold --tenant klinik-sued --reason "court order" --ref "AZ 3 O 12/26" --by alice
  tandem hold --person bob --reason "internal investigation" --ref INV-7 --by alice
  tandem hold release 1a2b3c4d --by alice
  tandem hold renew 1a2b3c4d --by alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := holdScope(tenant, person, session)
			if err != nil {
				return err
			}
			h.Reason, h.Ref, h.By = reason, ref, by
			return placeHold(cmd, path, h)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&tenant, "tenant", "", "hold every key of this tenant")
	cmd.Flags().StringVar(&person, "person", "", "hold the days in which this person has events")
	cmd.Flags().StringVar(&session, "session", "", "hold the days in which this session has events")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().StringVar(&ref, "ref", "", "the case or order it serves (required)")
	byFlag(cmd, &by)
	cmd.AddCommand(newHoldChangeCmd("release", "release a legal hold: its keys go on the next retention run if due",
		`  tandem hold release 1a2b3c4d --by alice`),
		newHoldChangeCmd("renew", "renew a legal hold for another retention.hold_max from now",
			`  tandem hold renew 1a2b3c4d --by alice`))
	return cmd
}

func byFlag(cmd *cobra.Command, by *string) {
	cmd.Flags().StringVar(by, "by", "", "the configured person who acts; their role needs the permission hold (required)")
}

// holdScope checks that exactly one subject is named.
func holdScope(tenant, person, session string) (store.Hold, error) {
	var hs []store.Hold
	for _, h := range []store.Hold{{Scope: store.HoldTenant, Subject: tenant}, {Scope: store.HoldPerson, Subject: person}, {Scope: store.HoldSession, Subject: session}} {
		if h.Subject != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) != 1 {
		return store.Hold{}, errors.New("name exactly one of --tenant, --person, --session")
	}
	return hs[0], nil
}

// holdActor checks that by may act on holds.
func holdActor(cfg *config.Config, by string) error {
	if d := policy.New(cfg).MayHold(cfg.Person(by)); d.Verdict != policy.Allow {
		return fmt.Errorf("%s (%s)", d.Reason, d.Hint)
	}
	return nil
}

func placeHold(cmd *cobra.Command, path string, h store.Hold) error {
	if h.Reason == "" || h.Ref == "" {
		return errors.New("--reason and --ref are required")
	}
	cfg, st, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := holdActor(cfg, h.By); err != nil {
		return err
	}
	if h.Scope == store.HoldTenant && cfg.Tenant(h.Subject) == nil {
		return fmt.Errorf("unknown tenant %q", h.Subject)
	}
	now := clock.Now().UTC()
	h.ID, h.Created, h.Expires = newID(), now, now.Add(cfg.Retention.HoldMax.Duration)
	if err := st.PutHold(cmd.Context(), h, holdEvent(h, false, now)); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "hold %s placed on %s %s until %s\n", h.ID, h.Scope, safetext.Line(h.Subject), h.Expires.Format(time.RFC3339))
	return nil
}

func holdEvent(h store.Hold, renewed bool, now time.Time) audit.Event {
	b := audit.RetentionHoldEvent{ID: h.ID, Scope: h.Scope, Reason: h.Reason, Ref: h.Ref, Expires: h.Expires, Renewed: renewed, By: h.By, Actor: localActor()}
	switch h.Scope {
	case store.HoldTenant:
		b.Tenant = h.Subject
	case store.HoldPerson:
		b.Person = h.Subject
	case store.HoldSession:
		b.Session = h.Subject
	}
	e := b.Event()
	e.Time = now
	return e
}

// newHoldChangeCmd is `hold release` or `hold renew`.
func newHoldChangeCmd(verb, short, example string) *cobra.Command {
	var path, by string
	cmd := &cobra.Command{
		Use:     verb + " ID --by PERSON",
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, st, err := openStore(path)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := holdActor(cfg, by); err != nil {
				return err
			}
			h, err := st.Hold(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !h.Released.IsZero() {
				return fmt.Errorf("hold %s was released at %s", h.ID, h.Released.Format(time.RFC3339))
			}
			now := clock.Now().UTC()
			ev := audit.RetentionReleasedEvent{ID: h.ID, By: by, Actor: localActor()}.Event()
			ev.Time = now
			if verb == "renew" {
				h.Expires = now.Add(cfg.Retention.HoldMax.Duration)
				ev = holdEvent(h, true, now)
				ev.Attrs[audit.KeyBy] = by
			} else {
				h.Released, h.ReleasedBy = now, by
			}
			if err := st.PutHold(cmd.Context(), h, ev); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "hold %s %sd\n", h.ID, verb)
			return nil
		},
	}
	configFlag(cmd, &path)
	byFlag(cmd, &by)
	return cmd
}

// classStatus is one tenant's class in `tandem retention status`.
type classStatus struct {
	Tenant          string `json:"tenant"`
	Class           string `json:"class"`
	PeriodDays      int    `json:"period_days"`
	Keys            int    `json:"keys"`
	Destroyed       int    `json:"destroyed"`
	Held            int    `json:"held,omitempty"`
	OldestReadable  string `json:"oldest_readable,omitempty"`
	NextDestruction string `json:"next_destruction,omitempty"`
}

type retentionStatus struct {
	Classes    []*classStatus    `json:"classes"`
	Holds      []store.Hold      `json:"holds"`
	Extensions []store.Extension `json:"extensions"`
	Notices    []store.Notice    `json:"pending_notices"`
	Problems   []string          `json:"problems,omitempty"`
}

func newRetentionStatusCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "per tenant and class: oldest readable day, next destruction; holds, extensions, pending DPO notices",
		Example: `  tandem retention status -c /etc/tandem/tandem.yaml
  tandem retention status --json | jq '.classes[] | select(.tenant == "klinik-sued")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, v, err := localRetention(path)
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := collectStatus(cmd, cfg, st, v)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return printStatus(cmd.OutOrStdout(), s)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func collectStatus(cmd *cobra.Command, cfg *config.Config, st *store.Store, v *vault.Vault) (*retentionStatus, error) {
	ctx, now := cmd.Context(), clock.Now()
	keys, err := v.List()
	if err != nil {
		return nil, err
	}
	s := &retentionStatus{}
	// A forged table is shown as far as it reads, and said so.
	if s.Holds, err = st.Holds(ctx); err != nil {
		s.Problems = append(s.Problems, err.Error()+": the retention job destroys nothing until this is resolved")
	}
	if s.Extensions, err = st.Extensions(ctx); err != nil {
		s.Problems = append(s.Problems, err.Error())
	}
	ns, err := st.Notices(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		if n.Delivered.IsZero() {
			s.Notices = append(s.Notices, n)
		}
	}
	job := newRetentionJob(cfg, v, st, nil, nil)
	holds, err := retention.ResolveHolds(s.Holds, now, job.Days)
	if err != nil {
		s.Problems = append(s.Problems, err.Error())
	}
	var exts []retention.Extension
	for _, x := range s.Extensions {
		exts = append(exts, retention.Extension{ID: x.ID, Tenant: x.Tenant, Class: vault.Class(x.Class), Until: x.Until})
	}
	s.Classes = summarize(cfg, keys, retention.Plan(now, keys, job.Period, exts, holds), job.Period)
	return s, nil
}

// overdue is the next destruction of a class with keys already due: the
// next run destroys them.
const overdue = "now (overdue)"

// summarize groups keys and the plan by tenant and class.
func summarize(cfg *config.Config, keys []vault.KeyInfo, plan []retention.Action, period retention.PeriodFunc) []*classStatus {
	by := map[string]*classStatus{}
	get := func(tenant string, c vault.Class) *classStatus {
		k := tenant + "/" + string(c)
		if by[k] == nil {
			by[k] = &classStatus{Tenant: tenant, Class: string(c), PeriodDays: period(tenant, c)}
		}
		return by[k]
	}
	for _, t := range cfg.Tenants {
		for _, c := range vault.Classes {
			get(t.ID, c)
		}
	}
	for _, k := range keys {
		cs := get(k.Tenant, k.Class)
		if k.Shredded {
			cs.Destroyed++
			continue
		}
		cs.Keys++
		if cs.OldestReadable == "" || k.Day < cs.OldestReadable {
			cs.OldestReadable = k.Day
		}
	}
	for _, a := range plan {
		cs := get(a.Key.Tenant, a.Key.Class)
		next := vault.Day(a.Due)
		switch {
		case len(a.HeldBy) > 0:
			cs.Held++
			continue
		case a.Verdict != retention.Keep:
			next = overdue
		case a.Due.IsZero():
			continue
		}
		if next == overdue || cs.NextDestruction == "" || (cs.NextDestruction != overdue && next < cs.NextDestruction) {
			cs.NextDestruction = next
		}
	}
	out := make([]*classStatus, 0, len(by))
	for _, cs := range by {
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Class < out[j].Class
	})
	return out
}

func printStatus(w io.Writer, s *retentionStatus) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tCLASS\tPERIOD\tKEYS\tDESTROYED\tHELD\tOLDEST READABLE\tNEXT DESTRUCTION")
	for _, c := range s.Classes {
		fmt.Fprintf(tw, "%s\t%s\t%dd\t%d\t%d\t%d\t%s\t%s\n", c.Tenant, c.Class, c.PeriodDays, c.Keys, c.Destroyed, c.Held, dash(c.OldestReadable), dash(c.NextDestruction))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nHOLDS")
	for _, h := range s.Holds {
		state := "active until " + h.Expires.Format(time.RFC3339)
		switch {
		case !h.Released.IsZero():
			state = "released " + h.Released.Format(time.RFC3339) + " by " + safetext.Line(h.ReleasedBy)
		case !h.Active(clock.Now()):
			state = "expired " + h.Expires.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s  %s %s  %s  by %s  ref %s: %s\n", h.ID, h.Scope, safetext.Line(h.Subject), state,
			safetext.Line(h.By), safetext.Line(h.Ref), safetext.Line(h.Reason))
	}
	fmt.Fprintln(w, "\nEXTENSIONS")
	for _, x := range s.Extensions {
		fmt.Fprintf(w, "  %s  %s %s through %s  by %s  request %s\n", x.ID, x.Tenant, x.Class, x.Until.Format("2006-01-02"),
			safetext.Line(x.By), safetext.Line(x.RequestRef))
	}
	fmt.Fprintln(w, "\nPENDING DPO NOTICES")
	for _, n := range s.Notices {
		fmt.Fprintf(w, "  extension %s  %d attempt(s)  next %s  last error: %s\n", n.Extension, n.Attempts, n.Next.Format(time.RFC3339), dash(safetext.Line(n.LastError)))
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "\nPROBLEM: %s\n", safetext.Line(p))
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
