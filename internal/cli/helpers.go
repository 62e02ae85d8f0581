package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
)

func newClientConfigCmd() *cobra.Command {
	var path, person string
	cmd := &cobra.Command{
		Use:   "client-config",
		Short: "print the known_hosts line and ssh_config snippet an administrator's laptop needs",
		Long: `Print what a plain OpenSSH client needs to use the gateway:
a known_hosts line that trusts Tandem's host CA for the gateway's names and
every configured host (so jump mode needs no trust on first use), and an
ssh_config snippet that reaches every host through the gateway. The snippet
names the gateway "gw", as the README and the gateway's own hints do.`,
		Example: `  tandem client-config -c /etc/tandem/tandem.yaml --person alice >> alice-laptop.txt
  # then, on alice's laptop: the first part into ~/.ssh/known_hosts,
  # the second into ~/.ssh/config; "ssh gw whoami" checks both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, keys, err := loadKeys(path)
			if err != nil {
				return err
			}
			if person != "" && cfg.Person(person) == nil {
				return fmt.Errorf("unknown person %q: no person with that id in %s", person, path)
			}
			return writeClientConfig(cmd.OutOrStdout(), cfg, keys, person)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&person, "person", "", "person id to put in User (default: your local user name)")
	return cmd
}

// knownHostsPatterns lists the names the host CA vouches for: the
// gateway's own names at the port clients use (gateway.public_address, or
// listen's), and every configured host at any port. Gateways behind one
// load balancer with the same names, public address and host CA print the
// same line, so a client trusts whichever node answers.
func knownHostsPatterns(cfg *config.Config) string {
	_, port := cfg.Gateway.PublicAddr()
	var pats []string
	for _, n := range cfg.Gateway.Names {
		if port == "22" {
			pats = append(pats, n)
		} else {
			pats = append(pats, "["+n+"]:"+port)
		}
	}
	for _, h := range cfg.Hosts {
		pats = append(pats, h.Name, "["+h.Name+"]:*")
	}
	return strings.Join(pats, ",")
}

func writeClientConfig(w io.Writer, cfg *config.Config, keys *ca.Keys, person string) error {
	lines, err := keys.PublicLines(ca.Host)
	if err != nil {
		return err
	}
	// During a CA rotation both keys are trusted, so that the gateway
	// may sign with either.
	pats := knownHostsPatterns(cfg)
	var trust strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&trust, "@cert-authority %s %s\n", pats, l)
	}
	host, port := cfg.Gateway.PublicAddr()
	user := "    User " + person
	if person == "" {
		user = "    # User <your person id>   (needed if it differs from your local user name)"
	}
	names := make([]string, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	fmt.Fprintf(w, `# --- ~/.ssh/known_hosts ---
# Trusts Tandem's host CA for the gateway and for every host reached through it.
%s
# --- ~/.ssh/config ---
Host gw
    HostName %s
    Port %s
%s

`, trust.String(), host, port, user)
	if len(names) > 0 {
		fmt.Fprintf(w, "# Jump mode: \"ssh root@db1\", \"scp\", \"sftp\", \"rsync\" and Ansible go through the gateway.\nHost %s\n    ProxyJump gw\n", strings.Join(names, " "))
	}
	fmt.Fprintf(w, "\n# Without the config: ssh -J %s@%s:%s root@<host>   or   ssh -p %s root%%<host>@%s\n", "<you>", host, port, port, host)
	return nil
}

func newTargetConfigCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "target-config",
		Short: "print the sshd drop-in that makes a target accept admin SSH only through the gateway (M20), and the emergency CA if set up (M26)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, keys, err := loadKeys(path)
			if err != nil {
				return err
			}
			emergency, err := breakglassTrust(cfg)
			if err != nil {
				return err
			}
			return writeTargetConfig(cmd.OutOrStdout(), cfg, keys, emergency)
		},
	}
	configFlag(cmd, &path)
	cmd.AddCommand(newTargetKRLCmd())
	return cmd
}

// writeTargetConfig prints the drop-in; emergency is the break-glass CA's
// line, trusted next to the user CA so that emergency certificates work
// when the gateway is down, or "" when none is set up.
func writeTargetConfig(w io.Writer, cfg *config.Config, keys *ca.Keys, emergency string) error {
	lines, err := keys.PublicLines(ca.User)
	if err != nil {
		return err
	}
	if emergency != "" {
		lines = append(lines, "(and the emergency, break-glass, CA's line, for access while the gateway", "is down: tandem breakglass; the target's log shows key id \"tandem breakglass …\")", emergency)
	}
	prof, err := cryptoprofile.Get(cfg.Gateway.CryptoProfile)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `# /etc/ssh/sshd_config.d/tandem.conf — Tandem target configuration (M20)
# Admin logins are accepted only with short-lived certificates from the
# gateway's user CA. Validate with "sshd -t" before reloading sshd.
#
# Also create:
#   /etc/ssh/tandem_user_ca.pub   containing the line(s) (two while the CA
#       is rotated: the gateway may sign with either):
#       %s
#   /etc/ssh/tandem_principals/<login>   one line with the login name, for
#       every login the gateway may use (e.g. /etc/ssh/tandem_principals/root: root)
#   /etc/ssh/tandem_revoked_keys  (may be empty; it must exist and be readable,
#       or sshd refuses every key login)
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
TrustedUserCAKeys /etc/ssh/tandem_user_ca.pub
AuthorizedPrincipalsFile /etc/ssh/tandem_principals/%%u
RevokedKeys /etc/ssh/tandem_revoked_keys
# Only the gateway's certificates: no personal authorized_keys on targets.
AuthorizedKeysFile none
PermitRootLogin prohibit-password
# Port forwarding (M4): a forward that a role's "forward" list grants
# leaves from this host, opened by the gateway as direct-tcpip with a
# session certificate that permits it; "localhost" is this host. This sshd
# decides last: "AllowTcpForwarding no" refuses every forward, PermitOpen
# narrows the destinations. Nothing else is forwarded.
AllowTcpForwarding local
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
KexAlgorithms %s
Ciphers %s
MACs %s
LogLevel VERBOSE
`, strings.Join(lines, "\n#       "), strings.Join(prof.KeyExchanges, ","), strings.Join(prof.Ciphers, ","), strings.Join(prof.MACs, ","))
	return nil
}
