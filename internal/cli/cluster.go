package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/auditcli"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cosign"
	"tandem.dev/tandem/internal/monitoring"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
)

// cosignEvery is how often a node submits its checkpoints to its peers
// and answers theirs: a rewrite is refused within a few seconds of the
// checkpoint that shows it.
const cosignEvery = 2 * time.Second

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "set up this gateway as one node of several (docs/HA.md)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newClusterKeysCmd(), newClusterLinkKeyCmd())
	return cmd
}

func newClusterKeysCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "create this node's audit, witness and link keys if missing and print its entry for the peers' cluster.peers",
		Long: `Create this node's audit signing key (audit.signing_key), cosigning key
(cluster.witness_key) and, when cluster.link_key is set, link key, where
they do not exist yet (mode 0600), and print the entry the other nodes put
in their cluster.peers: this node's name, its audit log's origin, its
public verifier keys, and its link address (cluster.listen) and public link
key. Nothing secret is printed.`,
		Example: `  tandem cluster keys -c /etc/tandem/tandem.yaml
  # on node b, add the printed line under cluster.peers, and b's line on a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if !cfg.Cluster.Enabled() {
				return fmt.Errorf("cluster.node is not set in %s: this gateway is not a node of a cluster", configName(cfg))
			}
			key, err := openSigningKey(cfg, true)
			if err != nil {
				return err
			}
			_, wv, err := openWitnessKey(cfg, true)
			if err != nil {
				return err
			}
			link := ""
			signer, err := linkKey(cfg)
			if err != nil {
				return err
			}
			if signer != nil {
				link = fmt.Sprintf(", address: %q, link_key: %q", cfg.Cluster.Listen, linkKeyLine(cfg, signer))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "- {node: %s, audit_origin: %s, audit_key: %s, witness_key: %s%s}\n",
				cfg.Cluster.Node, cfg.Audit.Origin, key.Verifier(), wv, link)
			return nil
		},
	}
	configFlag(cmd, &path)
	return cmd
}

// openWitnessKey returns the text of this node's cosigning key and its
// verifier key, creating the key on first use.
func openWitnessKey(cfg *config.Config, create bool) (text, verifier string, err error) {
	path := cfg.Cluster.WitnessKey
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && create {
		if err := audit.CreateSigningKey(path, "tandem/witness/"+cfg.Cluster.Node); err != nil {
			return "", "", err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("cluster.witness_key: %w", err)
	}
	if audit.IsAgeEncrypted(b) {
		dec := ageDecrypter(cfg)
		if dec == nil {
			return "", "", fmt.Errorf("cluster.witness_key %s is age-encrypted, but no age identity is configured (recording.age_identity)", path)
		}
		if b, err = dec(b); err != nil {
			return "", "", fmt.Errorf("cluster.witness_key %s: %w", path, err)
		}
	}
	k, err := audit.ParseSigningKey(b)
	if err != nil {
		return "", "", fmt.Errorf("cluster.witness_key %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), k.Verifier(), nil
}

// newCosigner builds this node's part in the peers' witnessing, or nil
// outside a cluster. serve runs it; its checks go to /readyz.
func newCosigner(cfg *config.Config, st *store.Store, sink audit.Sink, log *slog.Logger) (*cosign.Node, error) {
	cl := cfg.Cluster
	if !cl.Enabled() {
		return nil, nil
	}
	text, _, err := openWitnessKey(cfg, true)
	if err != nil {
		return nil, err
	}
	var peers []cosign.Peer
	var names []string
	for _, p := range cl.Peers {
		peers = append(peers, cosign.Peer{Node: p.Node, Origin: p.AuditOrigin, Key: p.AuditKey})
		names = append(names, p.Node)
	}
	w, err := cosign.NewWitness(cl.WitnessDir, text, peers)
	if err != nil {
		return nil, err
	}
	return &cosign.Node{
		Name: cl.Node, Peers: names, Publisher: cosign.NewPublisher(cl.Node, auditDir(cfg)), Witness: w, X: st,
		Log: log, Now: clock.Now,
		OnRefused: func(r cosign.Refusal) {
			log.Error("refused to co-sign a peer's audit checkpoint: its log may have been rewritten", "node", r.Node, "size", r.Size, "reason", r.Reason)
			e := audit.CosignRefusedEvent{Node: r.Node, Size: r.Size, Have: r.Have, Reason: r.Reason}
			audit.BestEffort(context.Background(), sink, log, e.Event())
		},
	}, nil
}

// cosignChecks are the readiness checks of the witnessing: this node's
// checkpoints refused by a peer take it out of service (its log no
// longer matches what a peer saw); refusing a peer's is a warning here.
func cosignChecks(n *cosign.Node) []monitoring.Check {
	return []monitoring.Check{
		{Name: "cosign", Run: func(context.Context) error {
			if r := n.Refused(); len(r) > 0 {
				return errors.New(r[0].String())
			}
			return nil
		}},
		{Name: "cosign-peers", Warn: true, Run: func(context.Context) error {
			var why []string
			for _, r := range n.Refusing() {
				why = append(why, r.String())
			}
			if len(why) > 0 {
				return errors.New(strings.Join(why, "; "))
			}
			return nil
		}},
	}
}

// clusterPaths tells tandem audit verify about the peers: their audit
// keys, this node's co-signed copies, and the latest checkpoints of this
// node's log they co-signed, read from the shared store.
func clusterPaths(cfg *config.Config) *auditcli.Cluster {
	cl := cfg.Cluster
	if !cl.Enabled() {
		return nil
	}
	c := &auditcli.Cluster{Node: cl.Node, Peers: map[string]auditcli.PeerLog{}}
	if _, v, err := openWitnessKey(cfg, false); err == nil {
		c.WitnessKey = v
	}
	for _, p := range cl.Peers {
		c.Peers[p.Node] = auditcli.PeerLog{AuditKey: p.AuditKey, Copy: cosign.CopyPath(cl.WitnessDir, p.Node)}
	}
	c.PeerKeys = func(dataDir string) (audit.KeyReader, error) {
		dir := filepath.Join(dataDir, "vault")
		if _, err := os.Stat(dir); err != nil { // never create one in a peer's directory
			return nil, err
		}
		kek, err := openKEK(cfg, false)
		if err != nil {
			return nil, err
		}
		return record.OpenVault(dir, kek)
	}
	c.Cosigned = func() (map[string][]byte, map[string]string, error) {
		st, err := openStateStore(cfg)
		if err != nil {
			return nil, nil, err
		}
		defer st.Close()
		answers, err := st.CosignAnswers(context.Background(), cl.Node)
		if err != nil {
			return nil, nil, err
		}
		notes, keys := map[string][]byte{}, map[string]string{}
		for _, a := range answers {
			p, err := cl.Peer(a.Witness)
			if err != nil || a.Note == nil {
				continue // a node no longer a peer, or nothing co-signed yet
			}
			notes[a.Witness], keys[a.Witness] = a.Note, p.WitnessKey
		}
		return notes, keys, nil
	}
	return c
}
