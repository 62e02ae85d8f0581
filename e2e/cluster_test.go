package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end test of sessions across the nodes of a
// cluster (issue 18, item 2): two `tandem serve` processes on loopback
// share one state on a real PostgreSQL, each with its own data directory
// and audit log and the same CA keys; real OpenSSH clients reach them.
// A four-eyes session waiting on node a is joined through node b over the
// internal link, and killing node b pauses it on a.

// clusterNode is one node's part of the test: its directory, configuration
// file and ports.
type clusterNode struct {
	name, dir, config string
	port, linkPort    int
	cfg               *config.Config
}

// newClusterRecEnv builds nodes a and b with the recording test's
// configuration (alice and bob admins, rita the reader, db1 a production
// host): a's clients are alice and rita, b's is bob. It returns a as a
// recording environment (for its export helpers) and b as a four-eyes
// environment (for its terminals).
func newClusterRecEnv(t *testing.T) (a *recEnv, b *feEnv) {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	dsn := testenv.RequirePostgres(t).NewDatabase(t)
	priv, pubs := map[string]string{}, map[string]string{}
	for _, r := range recRoles {
		priv[r.id], pubs[r.id] = testenv.KeyPair(t, keysDir, r.id, "ecdsa")
	}
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort := testenv.FreePort(t)
	sshdAddr := fmt.Sprintf("127.0.0.1:%d", sshdPort)
	nodes := []*clusterNode{{name: "a"}, {name: "b"}}
	for _, n := range nodes {
		n.dir, n.port, n.linkPort = mkdir(t, dir, n.name), testenv.FreePort(t), testenv.FreePort(t)
		n.config = filepath.Join(n.dir, "tandem.yaml")
		n.cfg = recordingConfig(n.dir, n.port, sshdAddr, hostPub, pubs)
		n.cfg.Audit.Origin = "tandem/audit/" + n.name
		n.cfg.Cluster = config.Cluster{Node: n.name, WitnessKey: filepath.Join(n.dir, "witness.key"), WitnessDir: filepath.Join(n.dir, "witness"),
			Listen: fmt.Sprintf("127.0.0.1:%d", n.linkPort), LinkKey: filepath.Join(n.dir, "link.key")}
		// One state for both, on a real PostgreSQL, and the recordings
		// there too, under one key-encryption key.
		n.cfg.Store = config.Store{Driver: config.StorePostgres, DSN: dsn}
		n.cfg.Recording.Storage = "store"
		n.cfg.Recording.KEKFile = filepath.Join(dir, "shared-kek")
		writeConfig(t, n.config, n.cfg)
	}
	// Each node's keys, made and printed as its line for the peers by the
	// node's own command, go into the other's cluster.peers.
	entries := map[string][]config.ClusterPeer{}
	for _, n := range nodes {
		out, stderr, err := testenv.RunTandem(t, bin, "cluster", "keys", "-c", n.config)
		var ps []config.ClusterPeer
		if err == nil {
			err = yaml.Unmarshal([]byte(out), &ps)
		}
		if err != nil || len(ps) != 1 || !strings.HasPrefix(ps[0].LinkKey, config.LinkKeyType+" ") {
			t.Fatalf("tandem cluster keys on %s: %v\n%s%s", n.name, err, out, stderr)
		}
		entries[n.name] = ps
	}
	for i, n := range nodes {
		n.cfg.Cluster.Peers = entries[nodes[1-i].name]
		writeConfig(t, n.config, n.cfg)
	}
	userCA := caPublic(t, bin, nodes[0].config, "user")
	target := testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
	gwA := testenv.StartGateway(t, bin, nodes[0].config, nodes[0].port)
	// b presents the same host certificates, signs targets' certificates
	// with the same user CA and opens the state with the same key: the
	// nodes share data_dir/keys (a copy, made once a's store has its key).
	copyFiles(t, filepath.Join(nodes[0].dir, "data", "keys"), mkdir(t, mkdir(t, nodes[1].dir, "data"), "keys"))
	gwB := testenv.StartGateway(t, bin, nodes[1].config, nodes[1].port)
	only := func(ids ...string) map[string]string {
		m := map[string]string{}
		for _, id := range ids {
			m[id] = priv[id]
		}
		return m
	}
	hosts := map[string]string{"db1": "root", "tst1": "root"}
	fa := &feEnv{Dir: nodes[0].dir, Bin: bin, Config: nodes[0].config, Target: target, GW: gwA,
		clients: personClients(t, nodes[0].dir, gwA, gwA.Port, only("alice", "rita"), hosts)}
	b = &feEnv{Dir: nodes[1].dir, Bin: bin, Config: nodes[1].config, Target: target, GW: gwB,
		clients: personClients(t, nodes[1].dir, gwB, gwB.Port, only("bob"), hosts)}
	return &recEnv{feEnv: fa, DataDir: filepath.Join(nodes[0].dir, "data")}, b
}

// copyFiles copies the regular files of src into dst with their modes.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClusterJoinAcrossNodes: alice's session on the production host
// waits on node a; bob, connected to node b, finds it in `ssh gw
// sessions` with its node and joins it through b; the session goes live
// on a, both see each other's commands, and the recording on a
// attributes each command to its typist. Killing node b (SIGKILL) cuts
// the link: the session on a pauses, as when a second person's
// connection drops. Sessions of a node that is killed drop out of the
// other nodes' listings.
func TestClusterJoinAcrossNodes(t *testing.T) {
	t.Parallel()
	a, b := newClusterRecEnv(t)
	alice, id := a.waitingSession(t, "alice", "db1")

	var listing testenv.Result
	if !testenv.WaitFor(10*time.Second, func() bool {
		listing = b.clients["bob"].SSH(t, "gw", "sessions")
		return strings.Contains(listing.Stdout, id)
	}) {
		a.fail(t, []*feTerm{alice}, "bob's sessions on b never listed %s: %s\nnode b:\n%s", id, listing, b.GW.Tail())
	}
	if !strings.Contains(listing.Stdout, "NODE") || !regexp.MustCompile(id+`\s+a\s+db1\s+alice\s+waiting`).MatchString(listing.Stdout) {
		t.Errorf("b's listing does not name node a for %s:\n%s", id, listing.Stdout)
	}

	bob := b.join(t, "bob", id)
	both := []*feTerm{alice, bob}
	a.live(t, alice, bob)
	alice.send(t, "echo ALICE-$((6*7))\r")
	for _, tm := range both {
		if !tm.waitFor("ALICE-42", 20*time.Second) {
			a.fail(t, both, "alice's command: %s's terminal lacks ALICE-42\nnode b:\n%s", tm.name, b.GW.Tail())
		}
	}
	bob.send(t, "echo BOB-$((7*7))\r")
	for _, tm := range both {
		if !tm.waitFor("BOB-49", 20*time.Second) {
			a.fail(t, both, "bob's command: %s's terminal lacks BOB-49\nnode b:\n%s", tm.name, b.GW.Tail())
		}
	}

	// Node b dies: its link to a goes with it. The session on a pauses.
	killed := time.Now()
	b.GW.Crash(t)
	if !alice.waitFor("bob left", 15*time.Second) || !alice.waitFor("input paused", time.Second) {
		a.fail(t, both, "node b killed: alice was not told that bob left and input paused")
	}
	t.Logf("node b killed: the session on a paused after %v", time.Since(killed).Round(time.Millisecond))
	if !bob.waitExit(15 * time.Second) {
		a.fail(t, both, "node b killed: bob's ssh did not end")
	}
	alice.send(t, "\x1dq") // Ctrl-] q: the owner ends the paused session
	if !alice.waitExit(15 * time.Second) {
		a.fail(t, both, "alice's Ctrl-] q did not end the session")
	}

	cast := a.mustExport(t, id, "rita")
	// The recording is in the shared store: node b exports the same.
	if viaB := (&recEnv{feEnv: b}).mustExport(t, id, "rita"); viaB != cast {
		t.Errorf("the recording exported through node b differs from node a's export")
	}
	_, evs := parseCast(t, cast)
	in := inputByTypist(evs)
	if !strings.Contains(in["alice"], "ALICE") || strings.Contains(in["alice"], "BOB") {
		t.Errorf("input after %q: want alice's command and not bob's, got %q", "input: alice", in["alice"])
	}
	if !strings.Contains(in["bob"], "BOB") || strings.Contains(in["bob"], "ALICE") {
		t.Errorf("input after %q: want bob's command and not alice's, got %q", "input: bob", in["bob"])
	}
	markers := joined(evs, "m")
	for _, m := range []string{"bob joined as peer", "bob left", "session.paused"} {
		if !strings.Contains(markers, m) {
			t.Errorf("the recording on a lacks the marker %q; markers:\n%s", m, markers)
		}
	}

	// Node b back, bob's own session waits there; a lists it. Killed, b
	// stops marking itself alive, and its session drops out of a's
	// listing within the registry's bound (5 s).
	b.GW = testenv.StartGateway(t, b.Bin, b.Config, b.GW.Port)
	_, id2 := b.waitingSession(t, "bob", "db1")
	listedOnA := func() bool {
		listing = a.clients["alice"].SSH(t, "gw", "sessions")
		return strings.Contains(listing.Stdout, id2)
	}
	if !testenv.WaitFor(10*time.Second, listedOnA) || !strings.Contains(listing.Stdout, "NODE") {
		t.Fatalf("a never listed b's session %s: %s", id2, listing)
	}
	killed = time.Now()
	b.GW.Crash(t)
	if !testenv.WaitFor(15*time.Second, func() bool { return !listedOnA() }) {
		t.Fatalf("a still lists %s of the killed node b 15 s later: %s", id2, listing)
	}
	t.Logf("node b killed: its session left a's listing after %v", time.Since(killed).Round(time.Millisecond))
}

// TestClusterKEKRotation: node a records, stops and rotates the KEK
// (`tandem kek rotate`), which rewraps the copies of the keys in the
// cluster's database. Node b, stopped and still holding the old KEK,
// refuses to start, naming its key file; rotated too, it starts with the
// new KEK alone and exports the recording node a made before the
// rotation.
func TestClusterKEKRotation(t *testing.T) {
	t.Parallel()
	a, b := newClusterRecEnv(t)
	if r := a.clients["alice"].Run(t, "ssh", "tst1", "echo BEFORE-$((6*7))"); r.Code != 0 || !strings.Contains(r.Stdout, "BEFORE-42") {
		t.Fatalf("alice's command through node a: %s\n%s", r, a.GW.Tail())
	}
	id := a.sessionEnd(t, "alice", "tst1").Session
	a.GW.Stop(t)
	b.GW.Stop(t)

	cfg, err := config.Load(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	oldKEK, newKEK := cfg.Recording.KEKFile, filepath.Join(filepath.Dir(cfg.Recording.KEKFile), "new-kek")
	out, stderr, err := testenv.RunTandem(t, a.Bin, "kek", "rotate", "--new", newKEK, "-c", a.Config)
	if err != nil || !strings.Contains(out, "Copies of data keys in the cluster's database: ") {
		t.Fatalf("tandem kek rotate on node a: %v\n%s%s", err, out, stderr)
	}

	// Node b without its rotation: refused (serve exits at once).
	_, stderr, err = testenv.RunTandem(t, b.Bin, "serve", "-c", b.Config)
	if err == nil || !strings.Contains(stderr, "recording.kek_file "+oldKEK+": not the key-encryption key the cluster's recordings are wrapped with") {
		t.Fatalf("node b with the old KEK after the rotation: %v\n%s", err, stderr)
	}
	out, stderr, err = testenv.RunTandem(t, b.Bin, "kek", "rotate", "--new", newKEK, "-c", b.Config)
	if err != nil || !regexp.MustCompile(`database: \d+ wrapped with \S+ \(0 moved now, [1-9]\d* already\)`).MatchString(out) {
		t.Fatalf("tandem kek rotate on node b: %v\n%s%s", err, out, stderr)
	}
	text, err := os.ReadFile(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Config, []byte(strings.ReplaceAll(string(text), oldKEK, newKEK)), 0o600); err != nil {
		t.Fatal(err)
	}
	b.GW = testenv.StartGateway(t, b.Bin, b.Config, b.GW.Port)
	if cast := (&recEnv{feEnv: b}).mustExport(t, id, "rita"); !strings.Contains(cast, "BEFORE-42") {
		t.Fatalf("node a's recording exported through node b lacks the output:\n%s", cast)
	}
}
