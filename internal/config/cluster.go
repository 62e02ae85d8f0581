package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
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
	// Listen is the address of the internal link (host:port): the peers
	// dial it to relay a join to a session this node holds. Empty: this
	// node holds no joins for others (it may still relay its own
	// persons' joins to peers with an address).
	Listen string `yaml:"listen"`
	// LinkKey is the file with this node's link key (OpenSSH private key,
	// ECDSA P-384): its host key on the link and its client key towards
	// the peers. Outside data_dir; created by `tandem cluster link-key`.
	LinkKey string `yaml:"link_key"`
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
	// Address is the peer's cluster.listen, where this node dials it to
	// relay a join; empty: joins are not relayed to it.
	Address string `yaml:"address"`
	// LinkKey is the peer's public link key (authorized_keys format, as
	// `tandem cluster link-key` prints it there): the only key the peer
	// may log in to this node's link with, and the only host key this
	// node accepts when it dials the peer.
	LinkKey string `yaml:"link_key"`
}

// LinkKeyType is the one key type of the internal link: the type of the
// gateway's own keys (cryptoprofile), for every profile.
const LinkKeyType = ssh.KeyAlgoECDSA384

// ParseLinkKey parses a peer's link_key: one public key of LinkKeyType.
func ParseLinkKey(text string) (ssh.PublicKey, error) {
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(text))
	switch {
	case err != nil:
		return nil, fmt.Errorf("not a public key in authorized_keys format: %v", err)
	case len(strings.TrimSpace(string(rest))) > 0:
		return nil, errors.New("more than one key")
	case k.Type() != LinkKeyType:
		return nil, fmt.Errorf("key type %s; link keys are %s (tandem cluster link-key makes one)", k.Type(), LinkKeyType)
	}
	return k, nil
}

// Enabled reports whether this gateway runs as a node of a cluster.
func (c Cluster) Enabled() bool { return c.Node != "" }

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Cluster) fillDefaults(cfgPath string) {
	for _, f := range []*string{&c.WitnessKey, &c.WitnessDir, &c.LinkKey} {
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
		if len(cl.Peers) > 0 || cl.WitnessKey != "" || cl.WitnessDir != "" || cl.Listen != "" || cl.LinkKey != "" {
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
	validateLink(c, pos, r)
	seen := map[string]bool{cl.Node: true}
	seenLink := map[string]string{}
	for i, p := range cl.Peers {
		at := pos.line("cluster", "peers", i)
		switch {
		case !nodeName.MatchString(p.Node):
			r.add(at, "cluster.peers: node %q: use a-z, 0-9 and -", p.Node)
		case seen[p.Node]:
			r.add(at, "cluster.peers: node %q appears twice (or is this node)", p.Node)
		}
		seen[p.Node] = true
		validatePeerLink(p, at, seenLink, r)
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

// validateLink checks this node's side of the internal link: an address
// that names a host, and a key file outside data_dir whenever the node
// listens or dials.
func validateLink(c *Config, pos *positions, r *report) {
	cl := c.Cluster
	if cl.Listen != "" {
		if err := checkHostPort(cl.Listen, false); err != nil {
			r.add(pos.line("cluster", "listen"), "cluster.listen: %v", err)
		} else if host, _, _ := net.SplitHostPort(cl.Listen); host == "" {
			r.add(pos.line("cluster", "listen"), "cluster.listen must name an address (the peers' network, not every interface by accident)")
		} else if cl.Listen == c.Gateway.Listen {
			r.add(pos.line("cluster", "listen"), "cluster.listen %s is gateway.listen; the link needs an address of its own", cl.Listen)
		}
	}
	dials := slices.ContainsFunc(cl.Peers, func(p ClusterPeer) bool { return p.Address != "" })
	switch {
	case cl.LinkKey == "" && (cl.Listen != "" || dials):
		r.add(pos.line("cluster"), "cluster.link_key is required: the link authenticates both nodes by their link keys")
	case cl.LinkKey != "" && InsideDataDir(c.Gateway.DataDir, cl.LinkKey):
		r.add(pos.line("cluster", "link_key"), "cluster.link_key %s lies inside data_dir %s; keep the node's identity apart from its data", cl.LinkKey, c.Gateway.DataDir)
	}
}

// validatePeerLink checks a peer's address and link key; seen maps each
// link key already listed to its peer (a key names one node only).
func validatePeerLink(p ClusterPeer, at int, seen map[string]string, r *report) {
	if p.Address != "" {
		if err := checkHostPort(p.Address, false); err != nil {
			r.add(at, "cluster.peers: node %q: address: %v", p.Node, err)
		}
		if p.LinkKey == "" {
			r.add(at, "cluster.peers: node %q has an address but no link_key: the link accepts no host key it does not know", p.Node)
		}
	}
	if p.LinkKey == "" {
		return
	}
	k, err := ParseLinkKey(p.LinkKey)
	if err != nil {
		r.add(at, "cluster.peers: node %q: link_key: %v", p.Node, err)
		return
	}
	fp := ssh.FingerprintSHA256(k)
	if other, dup := seen[fp]; dup {
		r.add(at, "cluster.peers: node %q has the link key of node %q; every node needs its own", p.Node, other)
	}
	seen[fp] = p.Node
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
