package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/clock"
)

func newTargetKRLCmd() *cobra.Command {
	var path, spec, out string
	cmd := &cobra.Command{
		Use:   "krl --out FILE [--spec FILE]",
		Short: "write the key revocation list (KRL) targets load as RevokedKeys",
		Long: `Write an OpenSSH key revocation list (KRL, ssh-keygen -k) for the
targets' RevokedKeys file: the entries of --spec, in ssh-keygen's KRL
specification format, one per line:

  serial: 4711                a certificate by serial (also serial: 1-100)
  id: tandem session=7f3a…    a certificate by key id
  key: ecdsa-sha2-… AAAA…     a key or certificate (its key), wherever signed
  sha256: SHA256:…            a key by fingerprint

Serials and key ids are revoked under every CA the targets trust: the
user CA (both keys during a rotation) and the break-glass CA. The list's
version is the time it was written (ssh-keygen -Q -l -f FILE shows it).
Without --spec the list is empty, as a target needs one that exists.

The file is written whole or not at all (mode 0644: it holds no secret).
Hand it to the targets (the tandem_target role's tandem_target_krl_src);
sshd reads it at every login, no reload needed. Needs ssh-keygen.`,
		Example: `  echo "id: tandem session=7f3a9c01de person=bob host=db1" >> /etc/tandem/revoked.txt
  tandem target-config krl -c /etc/tandem/tandem.yaml --spec /etc/tandem/revoked.txt --out /srv/ansible/files/tandem_revoked_keys
  ssh-keygen -Q -l -f /srv/ansible/files/tandem_revoked_keys    # shows the version and what it revokes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &usageError{cmd: cmd, err: errors.New("name the file to write: --out FILE")}
			}
			cfg, keys, err := loadKeys(path)
			if err != nil {
				return err
			}
			cas, err := keys.PublicLines(ca.User)
			if err != nil {
				return err
			}
			emergency, err := breakglassTrust(cfg)
			if err != nil {
				return err
			}
			if emergency != "" {
				cas = append(cas, emergency)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			if err := writeKRL(ctx, out, spec, cas, clock.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", out)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&spec, "spec", "", "KRL specification: what to revoke (ssh-keygen -k format); none: an empty list")
	cmd.Flags().StringVar(&out, "out", "", "the KRL file to write")
	return cmd
}

// writeKRL builds the KRL with ssh-keygen in a temporary file beside out,
// one pass per CA (-u adds to the list), and puts it in place at once.
func writeKRL(ctx context.Context, out, spec string, cas []string, now time.Time) error {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return fmt.Errorf("writing a KRL needs ssh-keygen (OpenSSH): %w", err)
	}
	if spec != "" {
		if _, err := os.Stat(spec); err != nil {
			return fmt.Errorf("KRL specification: %w", err)
		}
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".tandem-krl-")
	if err != nil {
		return fmt.Errorf("KRL: %w", err)
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, "krl")
	version := strconv.FormatInt(now.Unix(), 10)
	run := func(args ...string) error {
		c := exec.CommandContext(ctx, keygen, args...)
		if b, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
		}
		return nil
	}
	if spec == "" {
		if err := run("-k", "-f", tmp, "-z", version); err != nil {
			return err
		}
	}
	for i, line := range cas {
		if spec == "" {
			break
		}
		caFile := filepath.Join(work, "ca"+strconv.Itoa(i)+".pub")
		if err := os.WriteFile(caFile, []byte(line+"\n"), 0o600); err != nil {
			return fmt.Errorf("KRL: %w", err)
		}
		args := []string{"-k", "-f", tmp, "-z", version, "-s", caFile}
		if i > 0 {
			args = append(args, "-u")
		}
		if err := run(append(args, spec)...); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("KRL: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("KRL: %w", err)
	}
	return nil
}
