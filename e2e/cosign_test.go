package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestNodesWitnessEachOther runs two `tandem serve` nodes that share
// their state on a real PostgreSQL (docs/HA.md) and witness each other's
// audit logs:
//   - each co-signs the other's checkpoints, and `audit verify` on one
//     node checks its own log, the peer's cosignature of it, and the
//     peer's log against its co-signed copy: one result;
//   - node a's log rewritten (its audit directory and witness file
//     replaced, as whoever holds a's disk could) is refused by b, audited
//     there as cosign.refused; the rewrite verifies in itself, but
//     `audit verify` on a fails against b's cosignature, and on b with
//     --node-log a=… against b's copy.
func TestNodesWitnessEachOther(t *testing.T) {
	t.Parallel()
	bin, dir, _ := prepare(t)
	dsn := testenv.RequirePostgres(t).NewDatabase(t)
	type node struct {
		name, dir, path string
		port            int
		cfg             *config.Config
		gw              *testenv.Gateway
	}
	nodes := []*node{{name: "a"}, {name: "b"}}
	for _, n := range nodes {
		n.dir = mkdir(t, dir, n.name)
		n.port = testenv.FreePort(t)
		c := fixtureConfig(n.dir, n.port)
		c.Store = config.Store{Driver: config.StorePostgres, DSN: dsn}
		c.Audit.Origin = "tandem/audit/" + n.name
		c.Cluster = config.Cluster{Node: n.name, WitnessKey: filepath.Join(n.dir, "witness.key"), WitnessDir: filepath.Join(n.dir, "cosigned")}
		n.cfg, n.path = c, filepath.Join(n.dir, "tandem.yaml")
		writeConfig(t, n.path, c)
	}
	a, b := nodes[0], nodes[1]
	// Each node's keys, and its line for the other's cluster.peers.
	entry := map[string][]config.ClusterPeer{}
	for _, n := range nodes {
		out, errOut, err := testenv.RunTandem(t, bin, "cluster", "keys", "--config", n.path)
		if err != nil {
			t.Fatalf("tandem cluster keys on %s: %v\n%s", n.name, err, errOut)
		}
		var ps []config.ClusterPeer
		if err := yaml.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 1 || ps[0].Node != n.name {
			t.Fatalf("tandem cluster keys on %s printed %q (%v)", n.name, out, err)
		}
		entry[n.name] = ps
	}
	a.cfg.Cluster.Peers, b.cfg.Cluster.Peers = entry["b"], entry["a"]
	for _, n := range nodes {
		writeConfig(t, n.path, n.cfg)
	}
	if out, errOut, err := testenv.RunTandem(t, bin, "locks", "--config", a.path); err != nil {
		t.Fatalf("tandem locks (creates the state key): %v\n%s%s", err, out, errOut)
	}
	copyFile(t, filepath.Join(a.dir, "data", "keys", "state_mac"), filepath.Join(mkdir(t, b.dir, filepath.Join("data", "keys")), "state_mac"))
	for _, n := range nodes {
		n.gw = testenv.StartGateway(t, bin, n.path, n.port)
	}
	copyOf := func(holder, node *node) string {
		return filepath.Join(holder.dir, "cosigned", node.name+".checkpoints")
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30 s\nnode a:\n%s\nnode b:\n%s", what, a.gw.Tail(), b.gw.Tail())
			}
		}
	}
	waitFor("each node co-signs the other's checkpoints", func() bool {
		_, ea := os.Stat(copyOf(b, a))
		_, eb := os.Stat(copyOf(a, b))
		return ea == nil && eb == nil
	})
	// Wait for a round after a's copy exists, so the answer is on the store.
	time.Sleep(3 * time.Second)

	out, errOut, err := testenv.RunTandem(t, bin, "audit", "verify", "--config", a.path, "--node-log", "b="+filepath.Join(b.dir, "data"))
	if err != nil || !strings.Contains(out, "co-signed by b:") || !strings.Contains(out, "node b:") || strings.Contains(out, "FAILED") {
		t.Fatalf("audit verify on a with b's log: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = testenv.RunTandem(t, bin, "audit", "show", "--config", a.path, "--node-log", "b="+filepath.Join(b.dir, "data"), "--type", "gateway.start")
	if err != nil || !strings.Contains(out, "node=a ") || !strings.Contains(out, "node=b ") {
		t.Fatalf("audit show merged: %v\n%s%s", err, out, errOut)
	}

	// Whoever holds a's disk replaces its log and its witness file: a
	// starts afresh, signing a new history with its key.
	a.gw.Stop(t)
	for _, d := range []string{filepath.Join(a.dir, "data", "audit"), filepath.Dir(testenv.WitnessFile(filepath.Join(a.dir, "data")))} {
		if err := os.Rename(d, d+".old"); err != nil {
			t.Fatal(err)
		}
	}
	a.gw = testenv.StartGateway(t, bin, a.path, a.port)
	waitFor("b refuses the rewritten log", func() bool {
		return len(gatewayEvents(t, b.gw, "cosign.refused")) > 0
	})
	if ev := gatewayEvents(t, b.gw, "cosign.refused"); ev[0].Attrs["node"] != "a" {
		t.Fatalf("cosign.refused: %+v", ev)
	}
	// On a, the rewritten log is whole in itself, but disagrees with the
	// checkpoint b co-signed last (read from the store).
	if out, _, err := testenv.RunTandem(t, bin, "audit", "verify", "--config", a.path); err == nil ||
		!strings.Contains(out, "result:          OK") || !strings.Contains(out, "co-signed by b:       FAILED") {
		t.Fatalf("audit verify on a after the rewrite: %v\n%s", err, out)
	}
	out, errOut, err = testenv.RunTandem(t, bin, "audit", "verify", "--config", b.path, "--node-log", "a="+filepath.Join(a.dir, "data"))
	if err == nil || !strings.Contains(out, "node a:") || !strings.Contains(out+errOut, "FAILED") {
		t.Fatalf("audit verify on b did not catch a's rewrite: %v\n%s%s", err, out, errOut)
	}
}
