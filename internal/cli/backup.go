package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/backup"
	"tandem.dev/tandem/internal/config"
)

func newBackupCmd() *cobra.Command {
	var path, out string
	var recordings bool
	c := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write an encrypted, consistent backup of the data directory while the gateway runs",
		Long: `Writes state, audit log, vault tombstones and (escrow-encrypted) data keys,
the rest of data_dir and the configuration file into one file, encrypted
to backup.recipients. Data keys destroyed later stay destroyed when the
backup is restored (docs/BACKUP.md).`,
		Example: `  tandem backup --config /etc/tandem/tandem.yaml --out /backup/tandem-2026-05-01.tar.age
  tandem backup --out b.tar.age --recordings
  tandem backup verify b.tar.age --identity /secure/backup-identity.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			o, err := backupOptions(cfg)
			if err != nil {
				return err
			}
			o.Recordings = recordings
			res, err := backup.Create(cmd.Context(), out, o)
			if err != nil {
				return err
			}
			if err := auditLocalBackup(cmd.Context(), cfg, res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s: %d bytes, sha256 %s, %d files, audit log %d records (checkpoint %d)\n",
				res.Path, res.Size, res.SHA256, len(res.Manifest.Files), res.Manifest.AuditRecords, res.Manifest.AuditCheckpoint)
			return nil
		},
	}
	configFlag(c, &path)
	c.Flags().StringVar(&out, "out", "", "the backup file to write (must not exist)")
	c.Flags().BoolVar(&recordings, "recordings", false, "include recordings and sealed keystrokes")
	_ = c.MarkFlagRequired("out")
	c.AddCommand(newBackupVerifyCmd())
	return c
}

// backupOptions is what a backup of cfg's gateway needs from it.
func backupOptions(cfg *config.Config) (backup.Options, error) {
	rcps, err := cfg.Backup.ParsedRecipients()
	if err != nil || len(rcps) == 0 {
		return backup.Options{}, errors.New("backup.recipients: give at least one age recipient in the configuration")
	}
	e, err := backup.OpenEscrow(cfg.Backup.KeyStore)
	if err != nil {
		return backup.Options{}, err
	}
	return backup.Options{DataDir: cfg.Gateway.DataDir, StateFile: storePath(cfg), ConfigFile: cfg.Path, Escrow: e, Recipients: rcps}, nil
}

func readIdentities(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, errors.New("give --identity: the age identity a backup is encrypted to")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return age.ParseIdentities(f)
}

func newBackupVerifyCmd() *cobra.Command {
	var path, identity string
	c := &cobra.Command{
		Use:     "verify FILE --identity ID",
		Short:   "Check a backup without restoring it: decryption, every file's SHA-256, the manifest and the audit log",
		Example: `  tandem backup verify /backup/tandem-2026-05-01.tar.age --identity /secure/backup-identity.txt`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, ids, key, err := backupReader(path, identity)
			if err != nil {
				return err
			}
			chk, err := backup.Verify(args[0], ids, key)
			if err != nil {
				return err
			}
			m := chk.Manifest
			fmt.Fprintf(cmd.OutOrStdout(), "backup of %s: %d files, %d data keys; every file matches the manifest\n",
				m.Created.Format("2006-01-02 15:04:05Z"), len(m.Files), len(m.Keys))
			if chk.Audit != nil {
				if !chk.Audit.OK() {
					return fmt.Errorf("backup verification FAILED: the audit log in it: %v", chk.Audit.Problems)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "audit log: %d records, signed checkpoint at size %d, root %s\n", m.AuditRecords, m.AuditCheckpoint, m.AuditRoot)
			}
			return nil
		},
	}
	configFlag(c, &path)
	c.Flags().StringVar(&identity, "identity", "", "age identity file that decrypts the backup")
	return c
}

func newRestoreCmd() *cobra.Command {
	var path, identity, to string
	var acceptBehind bool
	c := &cobra.Command{
		Use:   "restore FILE --to DIR --identity ID",
		Short: "Restore a backup into DIR and verify its audit log against the witness",
		Long: `Restores data_dir as DIR/data and the configuration as DIR/config. Data
keys come back only while their escrow identity exists in backup.key_store:
keys destroyed since the backup are restored as destroyed. The restored
audit log is then checked against audit.witness_file; a backup older than
the latest witnessed checkpoint is reported as behind and the command
fails unless --accept-behind.`,
		Example: `  tandem restore /backup/tandem-2026-05-01.tar.age --to /srv/tandem-restore --identity /secure/backup-identity.txt`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ids, key, err := backupReader(path, identity)
			if err != nil {
				return err
			}
			e, err := backup.OpenEscrow(cfg.Backup.KeyStore)
			if err != nil {
				return err
			}
			res, err := backup.Restore(args[0], backup.RestoreOptions{To: to, Identities: ids, Escrow: e,
				LiveVault: vaultDir(cfg), VerifierKey: key, WitnessFile: cfg.Audit.WitnessFile})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "restored %d files into %s: %d data keys, %d destroyed since the backup (restored as destroyed)\n",
				len(res.Manifest.Files), to, res.Keys, len(res.Shredded))
			if res.Audit != nil && !res.Audit.OK() {
				return fmt.Errorf("restored audit log verification FAILED: %v", res.Audit.Problems)
			}
			if res.Behind {
				msg := fmt.Sprintf("the backup is behind the witness: it ends at size %d, the witness knows size %d", res.Manifest.AuditRecords, res.WitnessSize)
				if res.SegmentsGone > 0 {
					msg += fmt.Sprintf(" and %d later segment(s)", res.SegmentsGone)
				}
				if !acceptBehind {
					return errors.New(msg + " (--accept-behind to keep it all the same)")
				}
				fmt.Fprintln(out, "warning: "+msg)
			} else if res.Audit != nil && cfg.Audit.WitnessFile == "" {
				fmt.Fprintln(out, "warning: no audit.witness_file configured: whether the backup is behind cannot be told")
			} else if res.Audit != nil {
				fmt.Fprintf(out, "audit log: agrees with the witness, which knows nothing beyond it\n")
			}
			return nil
		},
	}
	configFlag(c, &path)
	c.Flags().StringVar(&identity, "identity", "", "age identity file that decrypts the backup")
	c.Flags().StringVar(&to, "to", "", "directory to restore into (must not exist or be empty)")
	c.Flags().BoolVar(&acceptBehind, "accept-behind", false, "succeed even if the backup is older than the witness")
	_ = c.MarkFlagRequired("to")
	return c
}

// auditLocalBackup queues backup.created in the store's outbox for the
// gateway (now, or at its next start).
func auditLocalBackup(ctx context.Context, cfg *config.Config, res *backup.Result) error {
	st, err := store.Open(storePath(cfg), store.WithKeyDir(keyDir(cfg)))
	if err != nil {
		return fmt.Errorf("the backup %s is written, but cannot be audited: %w", res.Path, err)
	}
	defer st.Close()
	if err := newLocalGateway(ctx, cfg, st, nil).Audit(ctx, backupEvent(res, "command")); err != nil {
		return fmt.Errorf("the backup %s is written, but cannot be audited: %w", res.Path, err)
	}
	return nil
}

// backupReader is what reading a backup needs: the configuration, the
// identities that decrypt it and the signing key whose verifier checks
// the audit log in it (the configured one, not a copy in the backup).
// backupReader opens what checking a backup needs: the configuration,
// the age identities, and the verifier key to check the copied audit log
// with — the log's first key, found through the live log's hand-overs,
// so that a backup taken before a signing key rotation verifies too.
func backupReader(path, identity string) (*config.Config, []age.Identity, string, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, "", err
	}
	ids, err := readIdentities(identity)
	if err != nil {
		return nil, nil, "", err
	}
	key, err := openSigningKey(cfg, false)
	if err != nil {
		return nil, nil, "", err
	}
	first, err := audit.FirstKey(auditDir(cfg), cfg.Audit.WitnessFile, key.Verifier())
	if err != nil {
		return nil, nil, "", err
	}
	return cfg, ids, first, nil
}
