package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Cluster makes this gateway one node of several behind one name (M22):
// they share the state store, witness each other's audit logs and relay
// joins to the node that holds a session. Empty Node: a single gateway.
type Cluster struct {
	// Node is this gateway's name in the cluster (a-z, 0-9, -). Its audit
	// log's origin must name it (as one of its /-separated parts), so that every node's checkpoints are
	// told apart.
	Node string `yaml:"node"`
	// WitnessKey is the file with this node's cosigning key (a note
	// signer key, like audit.signing_key); outside data_dir.
	WitnessKey string `yaml:"witness_key"`
	// WitnessDir receives this node's co-signed copies of the peers'
	// checkpoints, one file per peer; outside data_dir, so that a peer's
	// rewrite cannot reach them and this node's own data cannot either.
	WitnessDir string `yaml:"witness_dir"`
	// Peers are the other nodes.
	Peers []ClusterPeer `yaml:"peers"`
}

// ClusterPeer is another node of the cluster, as this node trusts it.
type ClusterPeer struct {
	Node string `yaml:"node"`
	// AuditOrigin and AuditKey are the peer's audit log origin and its
	// note verifier key (tandem audit pubkey on the peer).
	AuditOrigin string `yaml:"audit_origin"`
	AuditKey    string `yaml:"audit_key"`
	// WitnessKey is the peer's cosigning verifier key, which checks the
	// cosignatures it puts on this node's checkpoints.
	WitnessKey string `yaml:"witness_key"`
}

// Enabled reports whether this gateway runs as a node of a cluster.
func (c Cluster) Enabled() bool { return c.Node != "" }

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Cluster) fillDefaults(cfgPath string) {
	for _, f := range []*string{&c.WitnessKey, &c.WitnessDir} {
		if *f != "" && cfgPath != "" && !filepath.IsAbs(*f) {
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), *f)); err == nil {
				*f = abs
			}
		}
	}
}

func validateCluster(c *Config, pos *positions, r *report) {
	cl := c.Cluster
	if !cl.Enabled() {
		if len(cl.Peers) > 0 || cl.WitnessKey != "" || cl.WitnessDir != "" {
			r.add(pos.line("cluster"), "cluster: set cluster.node, this gateway's name, or remove the section")
		}
		return
	}
	if !nodeName.MatchString(cl.Node) {
		r.add(pos.line("cluster", "node"), "cluster.node %q: use a-z, 0-9 and -, at most 63 characters", cl.Node)
	}
	if !c.SharedStore() {
		r.add(pos.line("cluster", "node"), "cluster.node needs a state store the nodes share (store.path): they exchange their checkpoints, sessions and locks through it")
	}
	if !slices.Contains(strings.Split(c.Audit.Origin, "/"), cl.Node) {
		r.add(pos.line("audit", "origin"), "audit.origin %q does not name the node %q: in a cluster every node's log needs its own origin (e.g. tandem/audit/%s)", c.Audit.Origin, cl.Node, cl.Node)
	}
	for _, f := range []struct{ key, path string }{{"witness_key", cl.WitnessKey}, {"witness_dir", cl.WitnessDir}} {
		switch {
		case f.path == "":
			r.add(pos.line("cluster"), "cluster.%s is required: the nodes witness each other's audit logs", f.key)
		case InsideDataDir(c.Gateway.DataDir, f.path):
			r.add(pos.line("cluster", f.key), "cluster.%s %s lies inside data_dir %s; keep it where a rewrite of the data directory cannot reach", f.key, f.path, c.Gateway.DataDir)
		}
	}
	seen := map[string]bool{cl.Node: true}
	for i, p := range cl.Peers {
		at := pos.line("cluster", "peers", i)
		switch {
		case !nodeName.MatchString(p.Node):
			r.add(at, "cluster.peers: node %q: use a-z, 0-9 and -", p.Node)
		case seen[p.Node]:
			r.add(at, "cluster.peers: node %q appears twice (or is this node)", p.Node)
		}
		seen[p.Node] = true
		if p.AuditOrigin == "" || p.AuditOrigin == c.Audit.Origin {
			r.add(at, "cluster.peers: node %q needs its own audit_origin (not this node's %q)", p.Node, c.Audit.Origin)
		}
		for _, k := range []struct{ name, text string }{{"audit_key", p.AuditKey}, {"witness_key", p.WitnessKey}} {
			if _, err := note.NewVerifier(k.text); err != nil {
				r.add(at, "cluster.peers: node %q: %s is not a note verifier key (name+hash+key): %v", p.Node, k.name, err)
			}
		}
	}
}

// Peer returns the peer named node.
func (c Cluster) Peer(node string) (ClusterPeer, error) {
	for _, p := range c.Peers {
		if p.Node == node {
			return p, nil
		}
	}
	return ClusterPeer{}, fmt.Errorf("node %q is not a peer in cluster.peers", node)
}
