package cli

import (
	"fmt"
	"net/netip"
	"tandem.dev/tandem/internal/clock"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// newBlockCmds are `tandem blocks` and `tandem unblock`: blocks after
// failed logins (M19) as the running gateway reported them, and lifting
// one early.
func newBlockCmds() []*cobra.Command {
	var path string
	blocks := &cobra.Command{
		Use:   "blocks",
		Short: "list sources and persons blocked after failed logins (M19)",
		Long: `List the addresses and persons the running gateway refuses after too many
failed logins (limits.failures_per_source / failures_per_person within
limits.window), until when and why. A blocked client sees its connection
closed before the SSH handshake ("Connection reset by peer" or "Connection
closed"). "tandem unblock" lifts a block early.`,
		Example: `  tandem blocks -c /etc/tandem/tandem.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(path)
			if err != nil {
				return err
			}
			defer st.Close()
			bs, err := st.Blocks(cmd.Context(), clock.Now())
			if err != nil {
				return err
			}
			if len(bs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no blocks")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "SCOPE\tBLOCKED\tSINCE\tUNTIL\tWHY")
			for _, b := range bs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Scope, safetext.Line(b.Key), b.At.Format(time.RFC3339),
					b.Until.Format(time.RFC3339), safetext.Line(b.Reason))
			}
			return tw.Flush()
		},
	}
	configFlag(blocks, &path)

	var upath string
	unblock := &cobra.Command{
		Use:   "unblock ADDRESS|PERSON",
		Short: "lift a block after failed logins early (audited)",
		Long: `Lift the block of a source address or a person. The running gateway applies
it within a fifth of a second and writes auth.unblocked to the audit log,
naming you. Lift a block only once you know where the failed logins came
from: the block is what stops a password-less brute force of keys.`,
		Example: `  tandem unblock 127.0.0.1 -c /etc/tandem/tandem.yaml
  tandem unblock alice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, st, err := openStore(upath)
			if err != nil {
				return err
			}
			defer st.Close()
			key, scope := args[0], store.BlockSource
			if cfg.Person(key) != nil {
				scope = store.BlockPerson
			} else if _, err := netip.ParseAddr(key); err != nil {
				return fmt.Errorf("%q is neither a person in %s nor an IP address", safetext.Line(key), upath)
			}
			found, err := st.RequestUnblock(cmd.Context(), scope, key, localActor(), clock.Now())
			if err != nil {
				return err
			}
			if found {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s unblocked; the running gateway applies it within a fifth of a second\n", scope, safetext.Line(key))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s has no block on record; asked the gateway to clear its failures anyway\n", scope, safetext.Line(key))
			}
			return nil
		},
	}
	configFlag(unblock, &upath)
	return []*cobra.Command{blocks, unblock}
}
