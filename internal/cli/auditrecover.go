package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// newAuditRecoverCmd is "tandem audit recover": the way back from a
// damaged audit log that keeps the gateway from starting.
func newAuditRecoverCmd() *cobra.Command {
	var path, reason string
	cmd := &cobra.Command{
		Use:   "recover --reason TEXT",
		Short: "Start a new audit log segment after damage, recording what was lost",
		Long: `Close the damaged audit log segment and start a new one, anchored to the
last checkpoint that the witness file confirms and the records still
reproduce. The damaged files are kept, untouched, in <data dir>/audit/segments/NNNN;
the new segment's first event (log.segment) records the anchor, the
indices and bytes lost, and the reason. "tandem audit verify" checks every
segment and reports the gap. Refused while the gateway runs, and when the
log verifies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reason == "" {
				return &usageError{cmd: cmd, err: errors.New("--reason is required: say what happened, it is recorded in the log")}
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if err := requireWitness(cfg); err != nil {
				return err
			}
			release, err := lockDataDir(cfg.Gateway.DataDir, "tandem audit recover")
			if err != nil {
				return err
			}
			defer release()
			key, err := openSigningKey(cfg, false)
			if err != nil {
				return err
			}
			if err := refuseUndamaged(cfg, key); err != nil {
				return err
			}
			keys, err := openVault(cfg, false)
			if err != nil {
				return err
			}
			r, err := audit.Recover(audit.RecoverOptions{
				Dir: auditDir(cfg), Key: key, Keys: keys, Origin: cfg.Audit.Origin, WitnessFile: cfg.Audit.WitnessFile, Reason: reason,
			})
			if err != nil {
				return err
			}
			printRecovery(cmd, r)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&reason, "reason", "", "what happened (recorded in the new segment's first event)")
	return cmd
}

// refuseUndamaged keeps recover from closing a log that verifies: it
// would set records after the last witnessed checkpoint aside for nothing.
func refuseUndamaged(cfg *config.Config, key *audit.SigningKey) error {
	rep, err := audit.Verify(auditDir(cfg), key.Verifier(), cfg.Audit.WitnessFile)
	if err != nil || !rep.OK() {
		return nil // unreadable or damaged: that is what recover is for
	}
	return fmt.Errorf("the audit log in %s verifies against the witness; there is nothing to recover", auditDir(cfg))
}

func printRecovery(cmd *cobra.Command, r *audit.Recovery) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "closed segment %d; its files are kept in %s\n", r.Closed, r.ClosedDir)
	fmt.Fprintf(out, "new segment %d starts from the witnessed checkpoint at size %d (root %s)\n", r.Closed+1, r.AnchorSize, r.AnchorRoot)
	if r.LostTo > r.LostFrom {
		fmt.Fprintf(out, "lost: indices %d–%d of segment %d (%d bytes)\n", r.LostFrom, r.LostTo-1, r.Closed, r.LostBytes)
	} else {
		fmt.Fprintf(out, "lost: no records (%d bytes after the anchor)\n", r.LostBytes)
	}
	fmt.Fprintln(out, "recorded as the new segment's first event (log.segment); tandem audit verify reports the gap. The gateway can start again.")
}

// newAuditPubkeyCmd is "tandem audit pubkey": the verifier key to hand to
// auditors, derived from the signing key rather than read from data_dir.
func newAuditPubkeyCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the audit log's verifier key (give it to auditors for audit verify --pubkey)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			key, err := openSigningKey(cfg, false)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), key.Verifier())
			return err
		},
	}
	configFlag(cmd, &path)
	return cmd
}
