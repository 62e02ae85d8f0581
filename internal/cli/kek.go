package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

func newKEKCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kek",
		Short: "manage the key-encryption key that wraps the data keys",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newKEKRotateCmd())
	return cmd
}

func newKEKRotateCmd() *cobra.Command {
	var path, newFile, newAge string
	cmd := &cobra.Command{
		Use:   "rotate --new FILE | --new-age-identity FILE",
		Short: "wrap every data key with a new key-encryption key (gateway stopped)",
		Long: `Wrap every data key in data_dir/vault (recordings, audit log, every
retention class) with a new key-encryption key. The data keys stay the
same, so no recording or audit record is rewritten; destroyed keys stay
destroyed. The KEK configured now (recording.kek_file or
recording.age_identity) must open.

--new FILE names a 32-byte key file, created (mode 0600) if it does not
exist; --new-age-identity FILE an existing age identity file.

Refused while tandem serve runs: a gateway loading a key after it moved
would not open it with the old KEK. Stop the gateway, rotate, point the
configuration at the new file, start it. An interrupted rotation is
finished by running the same command again. Each run is recorded in the
audit log as kek.rotated.

With recording.storage: store (a cluster, docs/HA.md) the copies of the
data keys in the cluster's database are rewrapped too, in batches, and the
database records the new KEK as the cluster's: a node that still holds the
old one no longer starts. Run the command on every node, one after the
other, with the same new KEK (copied there first): the first run rewraps
the copies, each later one its own vault and what nodes still on the old
KEK copied meanwhile. Copies that open with neither KEK refuse the
rotation before anything changes, naming how many.`,
		Example: `  systemctl stop tandem
  tandem kek rotate --new /etc/tandem/kek-2027 -c /etc/tandem/tandem.yaml
  # set recording.kek_file: /etc/tandem/kek-2027, then
  systemctl start tandem
  tandem kek rotate --new-age-identity /etc/tandem/kek.age -c /etc/tandem/tandem.yaml
  # a cluster: then on node b, with the new key copied from node a
  scp -p a:/etc/tandem/kek-2027 /etc/tandem/kek-2027
  systemctl stop tandem
  tandem kek rotate --new /etc/tandem/kek-2027 -c /etc/tandem/tandem.yaml
  # set recording.kek_file: /etc/tandem/kek-2027, then
  systemctl start tandem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (newFile == "") == (newAge == "") {
				return &usageError{cmd: cmd, err: errors.New("name the new key-encryption key: --new FILE or --new-age-identity FILE")}
			}
			return runLocal(cmd, path, func(gw *localGateway) error {
				cfg := gw.cfg
				// The lock keeps tandem serve from running, or starting,
				// while keys move: it caches only the keys it loaded.
				release, err := lockDataDir(cfg.Gateway.DataDir, "tandem kek rotate")
				if err != nil {
					return fmt.Errorf("stop the gateway first, rotate, change the configuration, then start it: %w", err)
				}
				defer release()
				oldName := oldKEKName(cfg)
				old, err := openKEK(cfg, false)
				if err != nil {
					return fmt.Errorf("the current key-encryption key does not open, nothing was changed: %w", err)
				}
				newName, nk, err := openNewKEK(oldName, newFile, newAge)
				if err != nil {
					return err
				}
				shared, err := sharedKeys(cfg, gw.st)
				if err != nil {
					return err
				}
				if shared != nil {
					// Refused before the first key moves: copies no KEK
					// at hand opens, or a cluster on a third KEK.
					if _, err := shared.CheckRewrap(old, nk); err != nil {
						return fmt.Errorf("nothing was changed: %w", err)
					}
				}
				r, err := vault.Rewrap(vaultDir(cfg), old, nk)
				if err != nil {
					return fmt.Errorf("%w\n%d data keys moved to %s so far; fix the cause and run the command again to finish", err, r.Rewrapped+r.Already, newName)
				}
				var sr record.KeysRewrapped
				if shared != nil {
					if sr, err = shared.RewrapKeys(old, nk); err != nil {
						return fmt.Errorf("every data key of this node is wrapped by %s now, and %d copies in the cluster's database; %w\n"+
							"fix the cause and run the command again to finish", newName, sr.Rewrapped+sr.Already, err)
					}
				}
				e := audit.KEKRotatedEvent{OldKey: oldName, NewKey: newName, Rewrapped: r.Rewrapped, Already: r.Already,
					SharedRewrapped: sr.Rewrapped, SharedAlready: sr.Already}
				if err := gw.Audit(cmd.Context(), e.Event()); err != nil {
					return fmt.Errorf("every data key is wrapped by %s now, but %w", newName, err)
				}
				var srp *record.KeysRewrapped
				if shared != nil {
					srp = &sr
				}
				describeKEKRotation(cmd, cfg, r, srp, oldName, newName, newAge != "")
				return nil
			})
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&newFile, "new", "", "the new key file (32 bytes, created if missing)")
	cmd.Flags().StringVar(&newAge, "new-age-identity", "", "the new KEK as an existing age identity file")
	return cmd
}

// sharedKeys is the cluster's database of recordings, whose copies of
// the data keys a rotation rewraps too; nil with recordings kept locally.
func sharedKeys(cfg *config.Config, st *store.Store) (*record.SQL, error) {
	s, err := recordingStorage(cfg, st, nil)
	if err != nil || s == nil {
		return nil, err
	}
	sq, _ := s.(*record.SQL)
	return sq, nil
}

// oldKEKName is the file of the configured KEK, as openKEK chooses it.
func oldKEKName(cfg *config.Config) string {
	if cfg.Recording.AgeIdentity != "" {
		return cfg.Recording.AgeIdentity
	}
	return cfg.Recording.KEKFile
}

// openNewKEK opens (creating a key file if needed) the KEK to rotate to.
// The old one's file is refused: wrapping with the same key changes
// nothing, and the operator would then destroy the only KEK.
func openNewKEK(oldName, newFile, newAge string) (string, vault.KEK, error) {
	name := newFile
	if newAge != "" {
		name = newAge
	}
	if sameFile(oldName, name) {
		return "", nil, fmt.Errorf("%s is the key-encryption key in use; name a new file", name)
	}
	if newAge != "" {
		k, err := vault.AgeKEK(newAge)
		return newAge, k, err
	}
	if _, err := os.Stat(newFile); errors.Is(err, fs.ErrNotExist) {
		if err := vault.GenerateFileKEK(newFile); err != nil {
			return "", nil, err
		}
	}
	k, err := vault.FileKEK(newFile)
	return newFile, k, err
}

func sameFile(a, b string) bool {
	if sa, err := os.Stat(a); err == nil {
		if sb, err := os.Stat(b); err == nil {
			return os.SameFile(sa, sb)
		}
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

// describeKEKRotation says what the operator must do before the gateway
// starts again: until the configuration names the new KEK, it opens no key.
// shared is what the rotation did in the cluster's database (nil without
// one): there the other nodes need the new KEK and a rotation of their own.
func describeKEKRotation(cmd *cobra.Command, cfg *config.Config, r vault.Rewrapped, shared *record.KeysRewrapped, oldName, newName string, age bool) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%d data keys wrapped with %s (%d moved now, %d by an earlier run); %d destroyed keys left as they are.\n",
		r.Rewrapped+r.Already, newName, r.Rewrapped, r.Already, r.Shredded)
	if shared != nil {
		fmt.Fprintf(w, "Copies of data keys in the cluster's database: %d wrapped with %s (%d moved now, %d already); "+
			"the database names it the cluster's key-encryption key.\n", shared.Rewrapped+shared.Already, newName, shared.Rewrapped, shared.Already)
	}
	setting := "recording.kek_file: " + newName
	if age {
		setting = "recording.age_identity: " + newName
	}
	if cfg.Recording.AgeIdentity != "" && !age {
		setting += " (and remove recording.age_identity)"
	}
	fmt.Fprintf(w, `Next:
  1. set %s in %s
  2. start the gateway; it opens no data key before this change
`, setting, configName(cfg))
	if shared == nil {
		fmt.Fprintf(w, "  3. destroy %s once no backup taken before now is kept: those hold data keys wrapped by it\n", oldName)
		return
	}
	fmt.Fprintf(w, `  3. on every other node, one after another: copy %s there (mode 0600), stop
     the gateway, run this command with the same new key, change its configuration,
     start it. Until then such a node reads no recording whose key it does not hold
     itself, and it does not start again with the old key
  4. destroy %s once every node is rotated and no backup taken before now is kept:
     those hold data keys wrapped by it
`, newName, oldName)
}
