package config

import (
	"strings"
	"testing"

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
