package cli

import (
	"context"
	"fmt"
	"io"
	"os/user"
	"path/filepath"
	"sort"
	"tandem.dev/tandem/internal/clock"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// storePath is the state file: store.path, data_dir/state.db by default.
func storePath(cfg *config.Config) string {
	if cfg.Store.Path != "" {
		return cfg.Store.Path
	}
	return filepath.Join(cfg.Gateway.DataDir, "state.db")
}

// localActor names the operator of a command run on the gateway host.
func localActor() string {
	if u, err := user.Current(); err == nil {
		return "local:" + u.Username
	}
	return "local"
}

func openStore(path string) (*config.Config, *store.Store, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	// Locks and requests are sealed with the state key, kept with the
	// gateway's keys: only a process that may read them can change them.
	st, err := store.Open(storePath(cfg), store.WithKeyDir(keyDir(cfg)))
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

func newLockCmds() []*cobra.Command {
	var path, reason string
	var dur time.Duration
	var noWait bool
	lock := &cobra.Command{
		Use:   "lock PERSON --reason TEXT [--for DURATION] [--no-wait]",
		Short: "lock a person: new logins are refused and their live sessions end within a second (M5)",
		Long: `Lock a person: the gateway refuses their new logins with the reason, ends
every session they own or take part in, and closes their connections.

The command returns once the running gateway has ended the person's sessions
and connections (within about a second), so nothing they start afterwards
gets through. With no gateway running it returns at once: each gateway
applies the lock as it starts. If the gateway does not confirm within 3s, the
command warns and still succeeds, as the lock is stored. --no-wait returns as
soon as the lock is stored.

The lock persists across restarts until "tandem unlock" (or --for runs out),
and is written to the audit log by the gateway.`,
		Example: `  tandem lock alice --reason "laptop stolen, INC-1234"
  tandem lock bob --reason "suspicious logins" --for 2h
  tandem lock carol --reason "offboarding" --no-wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocal(cmd, path, func(gw *localGateway) error {
				if err := admin.Lock(cmd.Context(), gw, gw.operatorCaller(), args[0], reason, dur); err != nil {
					return err
				}
				confirmChange(cmd, gw.st, args[0], lockDone, !noWait)
				return nil
			})
		},
	}
	configFlag(lock, &path)
	lock.Flags().StringVar(&reason, "reason", "", "why (required; shown to the person and recorded)")
	lock.Flags().DurationVar(&dur, "for", 0, "lift the lock automatically after this long (default: until unlocked)")
	noWaitFlag(lock, &noWait)

	var upath string
	var uNoWait bool
	unlock := &cobra.Command{
		Use:   "unlock PERSON [--no-wait]",
		Short: "lift a person's lock",
		Long: `Lift a person's lock, so that they may log in again.

The command returns once the running gateway has lifted the lock (within
about a second), so the person's next login is accepted. With no gateway
running it returns at once: each gateway loads the change as it starts. If
the gateway does not confirm within 3s, the command warns and still
succeeds, as the unlock is stored. --no-wait returns as soon as the unlock
is stored.`,
		Example: `  tandem unlock alice
  tandem unlock bob --no-wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocal(cmd, upath, func(gw *localGateway) error {
				if err := admin.Unlock(cmd.Context(), gw, gw.operatorCaller(), args[0]); err != nil {
					return err
				}
				confirmChange(cmd, gw.st, args[0], unlockDone, !uNoWait)
				return nil
			})
		},
	}
	configFlag(unlock, &upath)
	noWaitFlag(unlock, &uNoWait)

	var lpath string
	var reseal bool
	locks := &cobra.Command{
		Use:   "locks [--reseal]",
		Short: "list active locks",
		Long: `List the active locks.

Locks are sealed with the state key (data_dir/keys/state_mac). If the lock
table was changed by something other than Tandem (a lock deleted or edited
in state.db by hand, or state.db replaced), it fails its integrity check:
the gateway then counts every person as locked, and this command says so.
Review the locks listed against the audit log's lock and unlock events,
lock again whoever is missing, and accept the table with --reseal; that is
recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openResealed(cmd, lpath, reseal, "lock", (*store.Store).ResealLocks)
			if err != nil {
				return err
			}
			defer st.Close()
			return listLocks(cmd.Context(), cmd, st)
		},
	}
	configFlag(locks, &lpath)
	locks.Flags().BoolVar(&reseal, "reseal", false, "accept the lock table as it is now after it failed its integrity check (audited)")
	return []*cobra.Command{lock, unlock, locks}
}

func noWaitFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "no-wait", false, "return once the change is stored, without waiting for the running gateway")
}

// gatewayWait bounds how long lock and unlock wait for the running gateways
// to confirm; a gateway confirms within a poll (a fifth of a second) plus
// the time it takes to end the person's sessions.
const gatewayWait = 3 * time.Second

// gatewayWaitPoll is how often lock and unlock look for the confirmation.
const gatewayWaitPoll = 50 * time.Millisecond

// lockChange words the outcome of a lock or unlock.
type lockChange struct {
	noun    string // "lock" or "unlock", for the messages about the gateway
	state   string // "is locked": the person's state once the change is stored
	applied string // what the running gateways did once they confirmed
}

var (
	lockDone   = lockChange{"lock", "is locked", "ended their sessions and connections"}
	unlockDone = lockChange{"unlock", "is unlocked", "lifted the lock"}
)

// confirmChange waits, unless wait is false, until the running gateways
// have applied the change just stored, and tells the operator how it went.
// The change is stored whatever happens here, so the command succeeds even
// when no gateway confirms: a failure to confirm is a warning, not an
// error.
func confirmChange(cmd *cobra.Command, st *store.Store, person string, c lockChange, wait bool) {
	waitAndReport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), st, person, c, wait, gatewayWait)
}

// waitAndReport is confirmChange with the writers and the timeout given.
func waitAndReport(ctx context.Context, out, errOut io.Writer, st *store.Store, person string, c lockChange,
	wait bool, timeout time.Duration) {
	person = safetext.Line(person)
	if !wait {
		fmt.Fprintf(out, "%s %s\n", person, c.state)
		return
	}
	// Read after the change: a later change by someone else only raises
	// the generation, which makes the wait stricter, never looser.
	gen, err := st.Generation(ctx)
	applied, gateways := false, 0
	if err == nil {
		applied, gateways, err = st.WaitApplied(ctx, gen, timeout, gatewayWaitPoll, time.Now)
	}
	switch {
	case err != nil:
		fmt.Fprintf(out, "%s %s\n", person, c.state)
		fmt.Fprintf(errOut, "warning: could not confirm the %s with the gateway: %v\n", c.noun, err)
	case applied:
		fmt.Fprintf(out, "%s %s; %s %s\n", person, c.state, runningGateways(gateways), c.applied)
	case gateways == 0:
		fmt.Fprintf(out, "%s %s; no gateway is running, so the %s applies as each gateway starts\n",
			person, c.state, c.noun)
	default:
		fmt.Fprintf(out, "%s %s\n", person, c.state)
		fmt.Fprintf(errOut, "warning: the gateway has not confirmed the %s within %s; "+
			"check that it is running (`tandem serve` logs)\n", c.noun, timeout)
	}
}

// runningGateways names the gateways that confirmed: usually one, but
// several may share the store.
func runningGateways(n int) string {
	if n == 1 {
		return "the running gateway"
	}
	return fmt.Sprintf("the %d running gateways", n)
}

func listLocks(ctx context.Context, cmd *cobra.Command, st *store.Store) error {
	m, err := st.Locks(ctx, clock.Now())
	if m == nil {
		return err
	}
	// A table that failed its check is listed as it is; the error says so.
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PERSON\tSINCE\tUNTIL\tBY\tREASON")
	for _, id := range ids {
		l := m[id]
		until := "–" // until somebody unlocks: no end of its own
		if !l.Until.IsZero() {
			until = l.Until.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", safetext.Line(id), l.Created.Format(time.RFC3339), until,
			safetext.Line(l.By), safetext.Line(l.Reason))
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	return err
}

// openResealed opens the store for `tandem locks` or `tandem freezes` and,
// when asked (--reseal), first accepts the sealed table of what (lock or
// freeze) as it is now, audited by the store.
func openResealed(cmd *cobra.Command, path string, reseal bool, what string,
	resealFn func(*store.Store, context.Context, string, time.Time) (int, error)) (*store.Store, error) {
	_, st, err := openStore(path)
	if err != nil || !reseal {
		return st, err
	}
	n, err := resealFn(st, cmd.Context(), localActor(), clock.Now())
	if err != nil {
		st.Close()
		return nil, err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s table re-sealed with %d %s(s)\n", what, n, what)
	return st, nil
}
