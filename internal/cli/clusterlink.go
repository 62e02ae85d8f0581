package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
)

// newClusterLinkKeyCmd is "tandem cluster link-key".
func newClusterLinkKeyCmd() *cobra.Command {
	var path string
	key := &cobra.Command{
		Use:   "link-key",
		Short: "print this node's public link key for the peers' cluster.peers[].link_key, creating the key if needed",
		Long: `Print the public half of this node's link key (cluster.link_key) in
authorized_keys format. The peers list it as this node's link_key: the
internal link lets in only those keys, and a node dialling a peer
accepts only the host key listed for it. The key (ECDSA P-384, mode
0600) is created when the file does not exist yet.`,
		Example: `  tandem cluster link-key -c /etc/tandem/tandem.yaml
  # on node b, under cluster.peers: - {node: a, address: "10.0.0.1:7022", link_key: "<the line>", …}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			signer, err := linkKey(cfg)
			if err != nil {
				return err
			}
			if signer == nil {
				return errors.New("cluster.link_key is not set: name the file of this node's link key (outside data_dir)")
			}
			fmt.Fprintln(cmd.OutOrStdout(), linkKeyLine(cfg, signer))
			return nil
		},
	}
	configFlag(key, &path)
	return key
}

// linkKeyLine is the public link key as the peers list it.
func linkKeyLine(cfg *config.Config, signer ssh.Signer) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return fmt.Sprintf("%s tandem-link-%s", line, cfg.Cluster.Node)
}

// linkKey loads (or creates) the node's link key; nil without
// cluster.link_key.
func linkKey(cfg *config.Config) (ssh.Signer, error) {
	if !cfg.Cluster.Enabled() || cfg.Cluster.LinkKey == "" {
		return nil, nil
	}
	s, err := ca.LoadOrCreateKey(cfg.Cluster.LinkKey)
	if err != nil {
		return nil, fmt.Errorf("cluster.link_key: %w", err)
	}
	if s.PublicKey().Type() != config.LinkKeyType {
		return nil, fmt.Errorf("cluster.link_key %s is a %s key; link keys are %s", cfg.Cluster.LinkKey, s.PublicKey().Type(), config.LinkKeyType)
	}
	return s, nil
}

// linkListener opens cluster.listen; nil without it.
func linkListener(cfg *config.Config) (net.Listener, error) {
	if !cfg.Cluster.Enabled() || cfg.Cluster.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Cluster.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen: %w", err)
	}
	return ln, nil
}
