package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/disclose"
)

// newDiscloseCmd is "tandem disclose": the operator's part of a lawful
// disclosure (M15): the export of an approved case, and the recipient's
// check of what they received.
func newDiscloseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disclose",
		Short: "lawful disclosure: export an approved case encrypted to its recipient, or verify a received export",
		Example: `  ssh gw disclose request --tenant schule-nord --scope session:7f3a9c01de --legal-basis "AG Nord 12 Gs 345/26" --recipient-key - --reason "investigation 4711" < lka.asc
  ssh gw disclose approve 1a2b3c4d                         # two other persons, one with the permission dpo
  tandem disclose export -c /etc/tandem/tandem.yaml 1a2b3c4d --out case-1a2b3c4d.tar.gpg
  gpg -d case-1a2b3c4d.tar.gpg | tar x -C case && tandem disclose verify case --pubkey tandem-audit.pub   # the recipient`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var cfgPath, out string
	export := &cobra.Command{
		Use:   "export ID",
		Short: "write an approved disclosure case's records and recordings, encrypted to its recipient",
		Long: `Checks in the audit log that case ID is approved (two persons other than
its requester, one with the permission dpo), then writes one file: a tar
archive, encrypted to the recipient's key from the case (age, or OpenPGP),
of manifest.json (the case, the signed checkpoint, every record of the
scope with its inclusion proof and the keys that open it, the SHA-256 of
every file), events.jsonl (the records decoded) and the recordings of the
scope's sessions as asciicast (with the sealed keystrokes if the case says
so). The export is recorded (disclosure.exported) before the file appears.`,
		Example: `  tandem disclose export -c /etc/tandem/tandem.yaml 1a2b3c4d --out case-1a2b3c4d.tar.age`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("--out FILE is required")}
			}
			cfg, v, gw, done, err := openReportSources(cmd, cfgPath)
			if err != nil {
				return err
			}
			defer done()
			read := func(f audit.Filter, fn func(audit.Record) error) error {
				return audit.ReadKeys(auditDir(cfg), v, f, fn)
			}
			cs, err := disclose.Load(read, args[0])
			if err != nil {
				return err
			}
			rs, err := recordingStorage(cfg, gw.st, nil)
			if err != nil {
				return err
			}
			res, err := disclose.Export(disclose.ExportOptions{AuditDir: auditDir(cfg), DataDir: cfg.Gateway.DataDir, Recordings: rs, Vault: v, Case: cs, Out: out, Now: clock.Now(),
				Record: func(r disclose.Result) error {
					return gw.Audit(cmd.Context(), audit.DisclosureExportedEvent{DisclosureCase: audit.DisclosureCase{Tenant: cs.Tenant, ID: cs.ID},
						Path: r.Path, SHA256: r.SHA256, Records: r.Records, Recordings: r.Recordings}.Event())
				}})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "case %s exported to %s (%s): %d records, %d recordings\n", cs.ID, res.Path, cs.Recipient, res.Records, res.Recordings)
			fmt.Fprintf(w, "sha256 %s\n", res.SHA256)
			return nil
		},
	}
	configFlag(export, &cfgPath)
	export.Flags().StringVar(&out, "out", "", "the encrypted file to write (never replaced)")
	var pubkey string
	verify := &cobra.Command{
		Use:     "verify DIR",
		Short:   "check an unpacked export: checkpoint, every record's proof, every file's hash",
		Example: `  tandem disclose verify ./case-1a2b3c4d --pubkey tandem-audit.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubkey == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("--pubkey is required: the audit log's verifier key")}
			}
			key, err := readBounded(pubkey, 64<<10)
			if err != nil {
				return err
			}
			c, err := disclose.VerifyDir(args[0], strings.TrimSpace(string(key)))
			if err != nil {
				return fmt.Errorf("export %s does not verify: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "case %s of %s (%s): %d records proven against the checkpoint of size %d, %d files match the manifest\nresult:        OK\n",
				c.Case.ID, c.Case.Tenant, c.Case.Scope, c.Records, c.Size, c.Files)
			return nil
		},
	}
	verify.Flags().StringVar(&pubkey, "pubkey", "", "the audit log's verifier key file (any key of its hand-over chain)")
	cmd.AddCommand(export, verify)
	return cmd
}
