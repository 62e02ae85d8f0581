// Package cli is Tandem's command line: it parses flags and wires the
// parts together. It holds no logic of its own beyond presentation.
package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/auditcli"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/safetext"
)

// Main runs the command line and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			// Once: the error, then how the command is used.
			fmt.Fprintf(stderr, "%s: %v\n\n%s", ue.cmd.CommandPath(), ue.err, ue.cmd.UsageString())
			return 2
		}
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintln(stderr, safetext.Lines(ve.Error()))
			fmt.Fprintf(stderr, "tandem: configuration refused (%d problem(s))\n", len(ve.Problems))
			return 1
		}
		fmt.Fprintf(stderr, "tandem: %s\n", safetext.Lines(err.Error()))
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "tandem",
		Short: "Tandem is a privileged-access SSH gateway with four-eyes sessions and a tamper-evident audit log",
		Long: `Tandem is the one way administrators reach servers: plain OpenSSH clients
connect to it, it decides by policy who may reach which host and login,
records what happens, and reaches the target with a short-lived certificate.

Start with "tandem demo" to try it, or "tandem serve --config FILE".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newReloadCmd(),
		newDemoCmd(),
		newConfigCmd(),
		newCACmd(),
		newKEKCmd(),
		newClientConfigCmd(),
		newTargetConfigCmd(),
		auditCmd(),
		newVersionCmd(),
	)
	root.AddCommand(newLockCmds()...)
	root.AddCommand(newFreezeCmds()...)
	root.AddCommand(newBlockCmds()...)
	root.AddCommand(newRecordingCmds()...)
	root.AddCommand(newRetentionCmd(), newHoldCmd(), newBreakglassCmd())
	root.AddCommand(newBackupCmd(), newRestoreCmd())
	root.AddCommand(newStatusCmd(), newClusterCmd())
	root.AddCommand(newManPagesCmd())
	root.AddCommand(newReportCmd(), newReviewCmd(), newDiscloseCmd(), newTenantCmd())
	markUsageErrors(root)
	addExamples(root)
	return root
}

// usageError is a command line the command does not accept: wrong
// arguments or an unknown flag. Main prints it with the command's usage.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// markUsageErrors makes argument and flag errors of every command usage
// errors, so that Main prints the usage once, after the error, and exits
// with status 2 — as most Unix tools do.
func markUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{cmd: c, err: err} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return &usageError{cmd: c, err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markUsageErrors(sub)
	}
}

// configFlag adds the --config flag every command that reads the
// configuration takes.
func configFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "config", "c", "tandem.yaml", "configuration file")
}

// auditCmd is "tandem audit": reading and verifying (auditcli) and the
// commands that need the configuration's keys and the data directory's
// lock.
func auditCmd() *cobra.Command {
	c := auditcli.Command(auditPaths)
	c.AddCommand(newAuditRecoverCmd(), newAuditPubkeyCmd(), newAuditRotateKeyCmd())
	return c
}

func auditPaths(path string) (auditcli.Paths, error) {
	if path == "" {
		path = "tandem.yaml"
	}
	cfg, err := config.Load(path)
	if err != nil {
		return auditcli.Paths{}, err
	}
	return auditcli.Paths{DataDir: cfg.Gateway.DataDir, WitnessFile: cfg.Audit.WitnessFile,
		Keys:    func() (audit.KeyReader, error) { return openVault(cfg, false) },
		Cluster: clusterPaths(cfg)}, nil
}

// loadKeys reads the configuration and the gateway's keys, creating the
// keys on first use (printing a CA before the first start must work).
func loadKeys(path string) (*config.Config, *ca.Keys, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	keys, err := ca.LoadOrCreateType(keyDir(cfg), nil, cfg.Gateway.KeyType)
	if err != nil {
		return nil, nil, err
	}
	return cfg, keys, nil
}

func keyDir(cfg *config.Config) string { return filepath.Join(cfg.Gateway.DataDir, "keys") }

func auditDir(cfg *config.Config) string { return filepath.Join(cfg.Gateway.DataDir, "audit") }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "work with the configuration file"}
	var path string
	check := &cobra.Command{
		Use:   "check",
		Short: "validate a configuration file; exits non-zero and lists file:line: reason for every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s (%d tenants, %d persons, %d roles, %d hosts)\n",
				path, len(cfg.Tenants), len(cfg.Persons), len(cfg.Roles), len(cfg.Hosts))
			return nil
		},
	}
	configFlag(check, &path)
	cmd.AddCommand(check)
	return cmd
}

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "the gateway's certificate authorities"}
	var path, kind string
	pub := &cobra.Command{
		Use:   "public",
		Short: "print a CA's public keys in authorized_keys format (user: for targets' TrustedUserCAKeys; host: for clients' @cert-authority)",
		Long: `Print the CA's public key in authorized_keys format. While the CA is
rotated (tandem ca rotate) two lines are printed, the signing key first:
trust both.`,
		Example: `  tandem ca public --kind user -c /etc/tandem/tandem.yaml > /etc/ssh/tandem_user_ca.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, keys, err := loadKeys(path)
			if err != nil {
				return err
			}
			lines, err := keys.PublicLines(ca.Kind(kind))
			if err != nil {
				return err
			}
			for _, l := range lines {
				fmt.Fprintln(cmd.OutOrStdout(), l)
			}
			return nil
		},
	}
	configFlag(pub, &path)
	pub.Flags().StringVar(&kind, "kind", "user", "which CA: user or host")
	cmd.AddCommand(pub, newCARotateCmd())
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			writeVersion(cmd.OutOrStdout())
		},
	}
}
