package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

var (
	freezeDone   = lockChange{"freeze", "is frozen", "ended the sessions there"}
	unfreezeDone = lockChange{"unfreeze", "is unfrozen", "lifted the freeze"}
)

func newFreezeCmds() []*cobra.Command {
	var path, reason, by string
	var noWait bool
	freeze := &cobra.Command{
		Use:   "freeze host|tenant|label VALUE --reason TEXT --by PERSON [--no-wait]",
		Short: "freeze a host, a tenant or a label after a security finding: no new sessions, live ones end (M27)",
		Long: `Freeze a host, every host of a tenant, or every host with a label
(KEY=VALUE). The gateway then refuses every new session, command, sftp,
forward and jump there with the reason, and ends the sessions running
there. The one exception is an incident session: a terminal session opened
by a person whose rule for the host has incident: true, which needs a
second person joined before it starts, whatever the host's environment.

PERSON must be a configured person whose role has the permission freeze.
The freeze is audited (freeze), listed by "tandem freezes" and lasts until
"tandem unfreeze". The command returns once the running gateway has applied
it (within about a second); --no-wait returns once it is stored.`,
		Example: `  tandem freeze host db1 --reason "CVE-2026-1234 on postgres, INC-77" --by sina
  tandem freeze tenant klinik-sued --reason "credential leak, INC-78" --by sina
  tandem freeze label role=db --reason "ransomware on db hosts" --by sina`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, st, err := openStore(path)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := freezeActor(cfg, by); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: it is shown to everyone refused or ended, and recorded")
			}
			if err := checkFreezeTarget(cfg, args[0], args[1]); err != nil {
				return err
			}
			now := clock.Now().UTC()
			f := store.Freeze{ID: newID(), Kind: args[0], Value: args[1], Reason: reason, By: by, Created: now}
			b := audit.FreezeEvent{ID: f.ID, Kind: f.Kind, Value: f.Value, Reason: reason, By: by, Actor: localActor()}
			b.Tenant, b.Host = freezeWhere(cfg, f)
			ev := b.Event()
			ev.Time = now
			if err := st.PutFreeze(cmd.Context(), f, ev); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "freeze %s: ", f.ID)
			confirmChange(cmd, st, f.Kind+" "+f.Value, freezeDone, !noWait)
			return nil
		},
	}
	configFlag(freeze, &path)
	freeze.Flags().StringVar(&reason, "reason", "", "why (required; shown to everyone refused or ended, and recorded)")
	freezeByFlag(freeze, &by)
	noWaitFlag(freeze, &noWait)

	var upath, uby string
	var uNoWait bool
	unfreeze := &cobra.Command{
		Use:   "unfreeze ID | unfreeze host|tenant|label VALUE --by PERSON [--no-wait]",
		Short: "lift a freeze, by its id or by what it freezes",
		Long: `Lift a freeze: by its id (from "tandem freezes"), or every active freeze of
a host, tenant or label. PERSON must have the permission freeze. Audited
(unfreeze); the command returns once the running gateway has lifted it.`,
		Example: `  tandem unfreeze 1a2b3c4d --by sina
  tandem unfreeze host db1 --by sina`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, st, err := openStore(upath)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := freezeActor(cfg, uby); err != nil {
				return err
			}
			fs, err := st.Freezes(cmd.Context())
			if err != nil {
				return err // a forged table is re-sealed first, never changed
			}
			now := clock.Now().UTC()
			lifted := 0
			for _, f := range fs {
				if !f.Active() || !selectedBy(f, args) {
					continue
				}
				f.Lifted, f.LiftedBy = now, uby
				b := audit.UnfreezeEvent{ID: f.ID, Kind: f.Kind, Value: f.Value, By: uby, Actor: localActor()}
				b.Tenant, b.Host = freezeWhere(cfg, f)
				ev := b.Event()
				ev.Time = now
				if err := st.PutFreeze(cmd.Context(), f, ev); err != nil {
					return err
				}
				lifted++
			}
			if lifted == 0 {
				return fmt.Errorf("no active freeze matches %s; `tandem freezes` lists them", safetext.Line(strings.Join(args, " ")))
			}
			confirmChange(cmd, st, strings.Join(args, " "), unfreezeDone, !uNoWait)
			return nil
		},
	}
	configFlag(unfreeze, &upath)
	freezeByFlag(unfreeze, &uby)
	noWaitFlag(unfreeze, &uNoWait)

	var lpath string
	var asJSON, all, reseal bool
	freezes := &cobra.Command{
		Use:   "freezes [--all] [--json] [--reseal]",
		Short: "list the freezes in force",
		Long: `List the freezes in force (--all: lifted ones too).

Freezes are sealed with the state key like locks. If the freeze table was
changed by something other than Tandem, it fails its integrity check: the
gateway then counts every host as frozen, and this command says so. Review
the freezes against the audit log's freeze and unfreeze events, freeze
again what is missing, and accept the table with --reseal (audited).`,
		Example: `  tandem freezes
  tandem freezes --all --json
  tandem freezes --reseal`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openResealed(cmd, lpath, reseal, "freeze", (*store.Store).ResealFreezes)
			if err != nil {
				return err
			}
			defer st.Close()
			fs, ferr := st.Freezes(cmd.Context())
			if ferr != nil && !errors.Is(ferr, store.ErrForged) {
				return ferr
			}
			shown := make([]store.Freeze, 0, len(fs))
			for _, f := range fs {
				if all || f.Active() {
					shown = append(shown, f)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(shown); err != nil {
					return err
				}
				return ferr
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tVALUE\tSINCE\tBY\tLIFTED\tREASON")
			for _, f := range shown {
				lifted := "–"
				if !f.Active() {
					lifted = f.Lifted.Format(time.RFC3339) + " by " + safetext.Line(f.LiftedBy)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Line(f.ID), safetext.Line(f.Kind), safetext.Line(f.Value),
					f.Created.Format(time.RFC3339), safetext.Line(f.By), lifted, safetext.Line(f.Reason))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return ferr // a table that failed its check is listed as it is; the error says so
		},
	}
	configFlag(freezes, &lpath)
	freezes.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	freezes.Flags().BoolVar(&all, "all", false, "list lifted freezes too")
	freezes.Flags().BoolVar(&reseal, "reseal", false, "accept the freeze table as it is now after it failed its integrity check (audited)")
	return []*cobra.Command{freeze, unfreeze, freezes}
}

func freezeByFlag(cmd *cobra.Command, by *string) {
	cmd.Flags().StringVar(by, "by", "", "the configured person who acts; their role needs the permission freeze (required)")
}

// freezeActor checks that by may freeze and unfreeze.
func freezeActor(cfg *config.Config, by string) error {
	if d := policy.New(cfg).MayFreeze(cfg.Person(by)); d.Verdict != policy.Allow {
		return fmt.Errorf("%s (%s)", d.Reason, d.Hint)
	}
	return nil
}

// checkFreezeTarget refuses a freeze that selects no configured host: in
// the haste after a finding, a typo must not leave the host open while
// the operator believes it frozen.
func checkFreezeTarget(cfg *config.Config, kind, value string) error {
	switch kind {
	case store.FreezeHost, store.FreezeTenant:
	case store.FreezeLabel:
		if k, _, ok := strings.Cut(value, "="); !ok || k == "" {
			return fmt.Errorf("a label freeze names KEY=VALUE, e.g. role=db; got %q", value)
		}
	default:
		return fmt.Errorf("freeze host, tenant or label, not %q", kind)
	}
	for i := range cfg.Hosts {
		if _, ok := policy.Frozen(&cfg.Hosts[i], []policy.Freeze{{Kind: kind, Value: value}}); ok {
			return nil
		}
	}
	return fmt.Errorf("no configured host is %s %q; `tandem freezes` would show a freeze that freezes nothing", kind, value)
}

// selectedBy reports whether the arguments of unfreeze (an id, or kind
// and value) name f.
func selectedBy(f store.Freeze, args []string) bool {
	if len(args) == 1 {
		return f.ID == args[0]
	}
	return f.Kind == args[0] && f.Value == args[1]
}

// freezeWhere is the tenant and host the audit event names, so that the
// tenant's auditors see the freezes of their hosts.
func freezeWhere(cfg *config.Config, f store.Freeze) (tenant, host string) {
	switch f.Kind {
	case store.FreezeTenant:
		return f.Value, ""
	case store.FreezeHost:
		if h := cfg.Host(f.Value); h != nil {
			return h.Tenant, h.Name
		}
		return "", f.Value
	}
	return "", ""
}

// Freezes reads the freezes in force from the store; a table that cannot
// be read counts as every host frozen (fail closed).
func (g *localGateway) Freezes() []policy.Freeze {
	fs, err := gateway.InForce(g.st.Freezes(g.ctx))
	if err != nil && fs == nil {
		return []policy.Freeze{{ID: "*", Kind: policy.FreezeAll, Reason: "the freeze table cannot be read: " + err.Error()}}
	}
	return fs
}
