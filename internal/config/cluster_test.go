package config

import (
	"crypto/elliptic"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/mod/sumdb/note"
)

func verifierKey(t *testing.T, name string) string {
	t.Helper()
	_, v, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestClusterValidation: a node's name, its own origin, its witness
// outside data_dir, and peers with keys that parse.
func TestClusterValidation(t *testing.T) {
	k := newKeys(t)
	ak, wk := verifierKey(t, "tandem/audit/b"), verifierKey(t, "tandem/witness/b")
	peer := "    - {node: b, audit_origin: tandem/audit/b, audit_key: " + ak + ", witness_key: " + wk + "}\n"
	good := "store: {path: /srv/shared/state.db}\naudit: {origin: tandem/audit/a}\ncluster:\n  node: a\n  witness_key: /etc/tandem/witness.key\n  witness_dir: /var/lib/tandem-witness\n  peers:\n" + peer
	c, err := Parse("t.yaml", build(k, nil, good))
	if err != nil {
		t.Fatalf("a good cluster: %v", err)
	}
	if !c.Cluster.Enabled() || len(c.Cluster.Peers) != 1 {
		t.Fatalf("cluster: %+v", c.Cluster)
	}
	if _, err := c.Cluster.Peer("b"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, add, msg string }{
		{"peers without a node", "cluster:\n  peers:\n" + peer, "set cluster.node"},
		{"no shared store", strings.Replace(good, "store: {path: /srv/shared/state.db}\n", "", 1), "needs a state store the nodes share"},
		{"bad node name", strings.Replace(good, "node: a", "node: A_1", 1), "use a-z, 0-9 and -"},
		{"origin without the node", strings.Replace(good, "origin: tandem/audit/a", "origin: tandem/audit", 1), "does not name the node"},
		{"no witness key", strings.Replace(good, "  witness_key: /etc/tandem/witness.key\n", "", 1), "cluster.witness_key is required"},
		{"witness dir in data_dir", strings.Replace(good, "/var/lib/tandem-witness", "/var/lib/tandem/w", 1) + "gateway: {data_dir: /var/lib/tandem}\n", "lies inside data_dir"},
		{"peer is this node", strings.Replace(good, "{node: b,", "{node: a,", 1), "appears twice"},
		{"peer with this node's origin", strings.Replace(good, "audit_origin: tandem/audit/b", "audit_origin: tandem/audit/a", 1), "needs its own audit_origin"},
		{"peer key garbage", strings.Replace(good, "witness_key: "+wk, "witness_key: nope", 1), "witness_key is not a note verifier key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", build(k, nil, tc.add))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("want %q, got %v", tc.msg, err)
			}
		})
	}
}

// linkKey is a public link key line (ECDSA P-384).
func linkKey(t *testing.T) string {
	t.Helper()
	line, _ := newKeyOn(t, elliptic.P384())
	return line
}

// TestClusterLinkValidation: the internal link listens on a named
// address of its own, holds a key outside data_dir, and knows every peer
// it dials by a P-384 key of that peer alone.
func TestClusterLinkValidation(t *testing.T) {
	k := newKeys(t)
	lb, lc := linkKey(t), linkKey(t)
	peer := func(node, extra string) string {
		return "    - {node: " + node + ", audit_origin: tandem/audit/" + node + ", audit_key: " + verifierKey(t, "tandem/audit/"+node) +
			", witness_key: " + verifierKey(t, "tandem/witness/"+node) + extra + "}\n"
	}
	head := "store: {path: /srv/shared/state.db}\naudit: {origin: tandem/audit/a}\ncluster:\n  node: a\n  witness_key: /etc/tandem/witness.key\n  witness_dir: /var/lib/tandem-witness\n"
	good := head + "  listen: 127.0.0.1:7022\n  link_key: /etc/tandem/link.key\n  peers:\n" +
		peer("b", `, address: "127.0.0.2:7022", link_key: "`+lb+`"`) + peer("c", `, link_key: "`+lc+`"`)
	c, err := Parse("t.yaml", build(k, nil, good))
	if err != nil {
		t.Fatalf("a good cluster with a link: %v", err)
	}
	if c.Cluster.Listen != "127.0.0.1:7022" || c.Cluster.Peers[0].Address != "127.0.0.2:7022" {
		t.Fatalf("cluster: %+v", c.Cluster)
	}
	if pk, err := ParseLinkKey(c.Cluster.Peers[0].LinkKey); err != nil || ssh.FingerprintSHA256(pk) == "" {
		t.Fatalf("peer link key: %v", err)
	}
	p256, _ := newKey(t)
	for _, tc := range []struct{ name, text, msg string }{
		{"listen without a link key", strings.Replace(good, "  link_key: /etc/tandem/link.key\n", "", 1), "cluster.link_key is required"},
		{"link key in data_dir", strings.Replace(good, "/etc/tandem/link.key", "/var/lib/tandem/link.key", 1) + "gateway: {data_dir: /var/lib/tandem}\n", "lies inside data_dir"},
		{"listen on every interface by accident", strings.Replace(good, "127.0.0.1:7022", `":7022"`, 1), "must name an address"},
		{"listen not host:port", strings.Replace(good, "127.0.0.1:7022", "link", 1), "cluster.listen"},
		{"listen on the gateway's address", good + "gateway: {listen: 127.0.0.1:7022}\n", "needs an address of its own"},
		{"address without a link key", head + "  link_key: /k\n  peers:\n" + peer("b", `, address: "127.0.0.2:7022"`), "no link_key"},
		{"peer address not host:port", strings.Replace(good, `"127.0.0.2:7022"`, "b-node", 1), "address:"},
		{"peer key of another type", strings.Replace(good, lb, p256, 1), "link keys are ecdsa-sha2-nistp384"},
		{"peer key garbage", strings.Replace(good, lb, "ecdsa-sha2-nistp384 AAAA", 1), "not a public key"},
		{"two peers, one key", strings.Replace(good, lc, lb, 1), `has the link key of node "b"`},
		{"a link without a node", "cluster:\n  listen: 127.0.0.1:7022\n", "set cluster.node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", build(k, nil, tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("want %q, got %v", tc.msg, err)
			}
		})
	}
}

// TestStorePath: the state file is data_dir/state.db unless store.path
// names another (nodes of a cluster name the one they share); a relative
// path is the configuration file's.
func TestStorePath(t *testing.T) {
	k := newKeys(t)
	c, err := Parse("/etc/tandem/t.yaml", build(k, nil, "gateway: {data_dir: /var/lib/tandem}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != "" || c.StatePath() != "/var/lib/tandem/state.db" || c.SharedStore() {
		t.Errorf("default store.path %q, state file %q", c.Store.Path, c.StatePath())
	}
	c, err = Parse("/etc/tandem/t.yaml", build(k, nil, "store: {path: shared/state.db}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != "/etc/tandem/shared/state.db" || c.StatePath() != c.Store.Path || !c.SharedStore() {
		t.Errorf("relative store.path became %q", c.Store.Path)
	}
}
