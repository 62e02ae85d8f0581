package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/vault"
)

// newAuditRotateKeyCmd is "tandem audit rotate-key": the checkpoint
// signing key is renewed like every other key (M2), without breaking the
// chain an auditor verifies.
func newAuditRotateKeyCmd() *cobra.Command {
	var path, by string
	cmd := &cobra.Command{
		Use:   "rotate-key --by PERSON",
		Short: "hand the checkpoint signing key over to a new key (gateway stopped)",
		Long: `Renew the audit log's checkpoint signing key (audit.signing_key).

The command creates the new key next to the current one (<signing_key>.next,
mode 0600, age-encrypted like the current key when that is), records a
log.key_handover event, and writes a hand-over checkpoint: the tree head over
every record so far, signed by the old key and the new one, naming both. It
goes to checkpoints.log and to the witness like every checkpoint. Then the
new key file replaces the old one, which is gone from then on; every later
checkpoint is signed by the new key.

tandem audit verify follows the hand-over in both directions: an auditor
holding the old verifier key checks the whole log, and so does one holding
the new key. A checkpoint signed by the old key after the hand-over, or a
second hand-over by it, is reported as a problem: a copy of the retired key
cannot continue the log.

Refused while tandem serve runs. An interrupted rotation is finished by
running the command again: it uses the .next key it created and does not
hand over twice.`,
		Example: `  systemctl stop tandem
  tandem audit rotate-key --by alice -c /etc/tandem/tandem.yaml
  systemctl start tandem
  # the old and the new verifier key both check the whole log:
  tandem audit verify -c /etc/tandem/tandem.yaml --pubkey old-audit.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if by == "" {
				return &usageError{cmd: cmd, err: errors.New("--by is required: name the person who asked for the rotation, it is recorded")}
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if err := requireWitness(cfg); err != nil {
				return err
			}
			release, err := lockDataDir(cfg.Gateway.DataDir, "tandem audit rotate-key")
			if err != nil {
				return fmt.Errorf("stop the gateway first, rotate, then start it: %w", err)
			}
			defer release()
			r, err := rotateSigningKey(cmd.Context(), cfg, by)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if r.resumed {
				fmt.Fprintln(out, "an interrupted rotation was found: its hand-over is in the log; the new key is now in place")
			}
			fmt.Fprintf(out, "old verifier key: %s\nnew verifier key: %s\n", r.old, r.next)
			fmt.Fprintf(out, "hand-over written to %s and the witness %s; %s now holds the new key.\n", filepath.Join(auditDir(cfg), "checkpoints.log"), cfg.Audit.WitnessFile, cfg.Audit.SigningKey)
			fmt.Fprintln(out, "Give the new verifier key to whoever checks the log (tandem audit pubkey); the old one keeps working through the hand-over.")
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&by, "by", "", "the person who asked for the rotation (recorded)")
	return cmd
}

type keyRotation struct {
	old, next string // verifier keys
	resumed   bool
}

// rotateSigningKey runs the three steps, each of which a second run
// recognises as done: the .next key exists; the log's last checkpoint is
// the hand-over to it; the key file is replaced.
func rotateSigningKey(ctx context.Context, cfg *config.Config, by string) (*keyRotation, error) {
	old, err := openSigningKey(cfg, false)
	if err != nil {
		return nil, fmt.Errorf("the current signing key does not open, nothing was changed: %w", err)
	}
	next, err := openNextSigningKey(cfg)
	if err != nil {
		return nil, err
	}
	r := &keyRotation{old: old.Verifier(), next: next.Verifier()}
	ho, hn, done, err := audit.LastHandover(auditDir(cfg))
	if err != nil {
		return nil, err
	}
	if r.resumed = done && ho == r.old && hn == r.next; !r.resumed {
		if err := handOverLog(ctx, cfg, old, next, by); err != nil {
			return nil, err
		}
	}
	// The rename retires the old key: its file is replaced, not kept.
	if err := os.Rename(nextKeyPath(cfg), cfg.Audit.SigningKey); err != nil {
		return nil, fmt.Errorf("the hand-over is written, but the new key could not replace the old one (run the command again to finish): %w", err)
	}
	return r, vault.SyncDir(filepath.Dir(cfg.Audit.SigningKey))
}

// handOverLog appends log.key_handover and the hand-over checkpoint.
func handOverLog(ctx context.Context, cfg *config.Config, old, next *audit.SigningKey, by string) error {
	keys, err := openVault(cfg, false)
	if err != nil {
		return err
	}
	alog, err := openAuditLog(cfg, keys)
	if err != nil {
		return err
	}
	e := audit.LogKeyHandoverEvent{OldKey: old.Verifier(), NewKey: next.Verifier(), By: by, Actor: localActor()}
	if err := alog.Append(ctx, e.Event()); err != nil {
		alog.Close()
		return fmt.Errorf("record the hand-over, nothing was handed over: %w", err)
	}
	_, err = alog.HandOver(next)
	if cerr := alog.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("hand-over: %w", err)
	}
	return nil
}

func nextKeyPath(cfg *config.Config) string { return cfg.Audit.SigningKey + ".next" }

// openNextSigningKey opens the key an earlier, interrupted run created,
// or creates it, sealed like the current key.
func openNextSigningKey(cfg *config.Config) (*audit.SigningKey, error) {
	path := nextKeyPath(cfg)
	if _, err := os.Stat(path); err == nil {
		return audit.LoadSigningKey(path, ageDecrypter(cfg))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("new signing key: %w", err)
	}
	cur, err := os.ReadFile(cfg.Audit.SigningKey)
	if err != nil {
		return nil, err
	}
	var seal func([]byte) ([]byte, error)
	if audit.IsAgeEncrypted(cur) {
		kek, err := record.AgeKEK(cfg.Recording.AgeIdentity)
		if err != nil {
			return nil, fmt.Errorf("the current key is age-encrypted, so is the new one: %w", err)
		}
		seal = kek.Wrap
	}
	return audit.CreateSealedSigningKey(path, cfg.Audit.Origin, seal)
}
