package cli

import (
	"context"
	"fmt"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/store"
)

func storePath(cfg *config.Config) string { return filepath.Join(cfg.Gateway.DataDir, "state.db") }

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
	st, err := store.Open(storePath(cfg))
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

func newLockCmds() []*cobra.Command {
	var path, reason string
	var dur time.Duration
	lock := &cobra.Command{
		Use:   "lock PERSON --reason TEXT [--for DURATION]",
		Short: "lock a person: new logins are refused and their live sessions end within a second (M5)",
		Long: `Lock a person. The running gateway notices within a fifth of a second:
it refuses their new logins with the reason, ends every session they own or
take part in, and closes their connections. The lock persists across
restarts until "tandem unlock" (or --for runs out), and is written to the
audit log by the gateway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason is required: it is shown to the person and recorded")
			}
			cfg, st, err := openStore(path)
			if err != nil {
				return err
			}
			defer st.Close()
			if cfg.Person(args[0]) == nil {
				return fmt.Errorf("unknown person %q", args[0])
			}
			l := store.Lock{Person: args[0], Reason: reason, By: localActor(), Created: time.Now()}
			if dur > 0 {
				l.Until = l.Created.Add(dur)
			}
			if err := st.Lock(cmd.Context(), l); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is locked\n", args[0])
			return nil
		},
	}
	configFlag(lock, &path)
	lock.Flags().StringVar(&reason, "reason", "", "why (required; shown to the person and recorded)")
	lock.Flags().DurationVar(&dur, "for", 0, "lift the lock automatically after this long (default: until unlocked)")

	var upath string
	unlock := &cobra.Command{
		Use:   "unlock PERSON",
		Short: "lift a person's lock",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := openStore(upath)
			if err != nil {
				return err
			}
			defer st.Close()
			removed, err := st.Unlock(cmd.Context(), args[0], localActor())
			if err != nil {
				return err
			}
			if !removed {
				return fmt.Errorf("%s was not locked", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is unlocked\n", args[0])
			return nil
		},
	}
	configFlag(unlock, &upath)

	var lpath string
	locks := &cobra.Command{
		Use:   "locks",
		Short: "list active locks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(lpath)
			if err != nil {
				return err
			}
			defer st.Close()
			return listLocks(cmd.Context(), cmd, st)
		},
	}
	configFlag(locks, &lpath)
	return []*cobra.Command{lock, unlock, locks}
}

func listLocks(ctx context.Context, cmd *cobra.Command, st *store.Store) error {
	m, err := st.Locks(ctx, time.Now())
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PERSON\tSINCE\tUNTIL\tBY\tREASON")
	for _, id := range ids {
		l := m[id]
		until := "unlocked"
		if !l.Until.IsZero() {
			until = l.Until.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, l.Created.Format(time.RFC3339), until, l.By, l.Reason)
	}
	return tw.Flush()
}
