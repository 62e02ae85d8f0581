package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end test of two gateways on one PostgreSQL
// (issue 18, item 1 and the store's part of item 6): a private
// PostgreSQL with TLS on loopback, two `tandem serve` processes sharing
// it, one target sshd, real OpenSSH clients.

// pgNode is one gateway of the pair.
type pgNode struct {
	name   string
	config string
	gw     *testenv.Gateway
	alice  *testenv.Client
	bob    *testenv.Client
}

// db1 returns the ssh arguments that reach root@db1 through this node.
func (n *pgNode) db1() []string { return []string{"-p", fmt.Sprint(n.gw.Port), "root%db1@127.0.0.1"} }

// TestTwoGatewaysOnPostgres: a lock made on node A ends a live session on
// node B within a second; while PostgreSQL is down live sessions go on and
// new ones are refused with a message that names the store; once it is
// back both nodes serve again without a restart, and a lock made right
// then is applied on the other node at once.
func TestTwoGatewaysOnPostgres(t *testing.T) {
	t.Parallel()
	bin, dir, keysDir := prepare(t)
	pg := testenv.RequirePostgres(t)
	dsn := pg.NewDatabase(t)
	aliceKey, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	bobKey, bobPub := testenv.KeyPair(t, keysDir, "bob", "ecdsa")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort := testenv.FreePort(t)

	nodes := []*pgNode{{name: "a"}, {name: "b"}}
	var target *testenv.Target
	for i, n := range nodes {
		ndir := mkdir(t, dir, n.name)
		port := testenv.FreePort(t)
		c := identityConfig(ndir, port, fmt.Sprintf("127.0.0.1:%d", sshdPort), hostPub, 100)
		c.Persons = []config.Person{okPerson("alice", alicePub), okPerson("bob", bobPub)}
		c.Store = config.Store{Driver: config.StorePostgres, DSN: dsn}
		// The recordings go to PostgreSQL too, through each node's spool:
		// its restart below must end no live session.
		c.Recording.Storage = "store"
		c.Recording.KEKFile = filepath.Join(dir, "shared-kek")
		n.config = filepath.Join(ndir, "tandem.yaml")
		writeConfig(t, n.config, c)
		if i == 0 {
			userCA := caPublic(t, bin, n.config, "user")
			target = testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
		} else {
			// Both nodes are one gateway to clients and targets: the
			// same CAs and host key, and the same state key (a node with
			// another one refuses the shared database).
			shareKeys(t, filepath.Join(dir, "a", "data", "keys"), filepath.Join(ndir, "data", "keys"))
		}
		n.gw = testenv.StartGateway(t, bin, n.config, port)
	}
	var known []string // each node's host certificate, for the names and port it serves
	for _, n := range nodes {
		known = append(known, certAuthorityLine(t, n.gw))
	}
	for _, n := range nodes {
		n.alice = testenv.NewClient(t, mkdir(t, dir, "alice-"+n.name), testenv.ClientOpts{
			Key: aliceKey, Person: "alice", GatewayPort: n.gw.Port, KnownHosts: known})
		n.bob = testenv.NewClient(t, mkdir(t, dir, "bob-"+n.name), testenv.ClientOpts{
			Key: bobKey, Person: "bob", GatewayPort: n.gw.Port, KnownHosts: known})
	}
	a, b := nodes[0], nodes[1]
	tail := func() string {
		return "node a:\n" + a.gw.Tail() + "\nnode b:\n" + b.gw.Tail()
	}
	// startOn starts a live session of client c through node n on db1
	// and waits until the target has accepted it.
	startOn := func(t *testing.T, name string, n *pgNode, c *testenv.Client) *liveSSH {
		t.Helper()
		before := len(target.AcceptedCertLogins())
		live := startLive(t, name, c, sleepArgs(n.db1()...)...)
		if !testenv.WaitFor(20*time.Second, func() bool { return len(target.AcceptedCertLogins()) > before }) || live.ended() {
			t.Fatalf("%s: the session did not start:\n%s\n%s", name, live.output(), tail())
		}
		return live
	}
	lockOn := func(t *testing.T, n *pgNode, person, reason string) time.Time {
		t.Helper()
		start := time.Now()
		if out, errOut, err := testenv.RunTandem(t, bin, "lock", person, "--reason", reason, "--config", n.config); err != nil {
			t.Fatalf("tandem lock on node %s: %v\n%s%s", n.name, err, out, errOut)
		}
		return start
	}

	t.Run("lock on A ends a session on B", func(t *testing.T) {
		live := startOn(t, "alice on b", b, b.alice)
		start := lockOn(t, a, "alice", "laptop lost")
		if !live.waitExit(10 * time.Second) {
			t.Fatalf("alice's session on node b outlived the lock on node a by 10s\n%s", tail())
		}
		took := live.exitAt.Sub(start)
		t.Logf("lock on node a (tandem lock started) to the end of the session on node b: %v", took)
		if took > 2*time.Second { // the requirement is 1s; the margin is the CLI's own start-up
			t.Errorf("the session on node b ended %v after the lock on node a, want within 1s", took)
		}
		if !strings.Contains(live.output(), "alice was locked: laptop lost") {
			t.Errorf("alice was not told why:\n%s", live.output())
		}
		r := b.alice.SSH(t, sshArgs(b.db1(), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "locked") {
			t.Errorf("alice logged in on node b after the lock on node a:\n%s", r)
		}
	})

	t.Run("PostgreSQL restarted", func(t *testing.T) {
		live := startOn(t, "bob on b", b, b.bob)
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if !testenv.WaitFor(15*time.Second, func() bool { return strings.Contains(n.gw.Tail(), "state store unavailable") }) {
				t.Fatalf("node %s did not notice PostgreSQL going away\n%s", n.name, tail())
			}
		}
		// A new session needs the store (locks, approvals): refused, and
		// the person reads why.
		r := a.bob.SSH(t, sshArgs(a.db1(), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "state store") {
			t.Errorf("a new session on node a while PostgreSQL is down: want a refusal that names the state store\n%s", r)
		}
		t.Logf("refusal while PostgreSQL is down: %s", strings.TrimSpace(r.Stderr))
		// So does a lock: the CLI says the store is unavailable.
		if _, errOut, err := testenv.RunTandem(t, bin, "lock", "bob", "--reason", "x", "--config", a.config); err == nil ||
			!strings.Contains(errOut, "PostgreSQL") {
			t.Errorf("tandem lock while PostgreSQL is down: %v\n%s", err, errOut)
		}
		if live.ended() {
			t.Fatalf("bob's live session on node b ended while PostgreSQL was down:\n%s\n%s", live.output(), tail())
		}

		if err := pg.Start(); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if !testenv.WaitFor(15*time.Second, func() bool { return strings.Contains(n.gw.Tail(), "state store reachable again") }) {
				t.Fatalf("node %s did not notice PostgreSQL coming back\n%s", n.name, tail())
			}
		}
		if r := a.bob.SSH(t, sshArgs(a.db1(), "echo back")...); r.Code != 0 || !strings.Contains(r.Stdout, "back") {
			t.Errorf("a new session on node a after PostgreSQL came back, without a restart:\n%s\n%s", r, tail())
		}
		if live.ended() {
			t.Fatalf("bob's live session on node b ended over the restart:\n%s", live.output())
		}
		// The first lock after the restart reaches node b at once.
		start := lockOn(t, a, "bob", "after the restart")
		if !live.waitExit(10 * time.Second) {
			t.Fatalf("bob's session on node b outlived the lock on node a by 10s\n%s", tail())
		}
		took := live.exitAt.Sub(start)
		t.Logf("after the PostgreSQL restart: lock on node a to the end of the session on node b: %v", took)
		if took > 2*time.Second {
			t.Errorf("the session on node b ended %v after the lock, want within 1s", took)
		}
	})
}

// shareKeys copies the gateway's CA keys and the state key from one data
// directory's keys to another's, as an operator sets up a second node.
func shareKeys(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !(name == store.KeyFile || strings.HasPrefix(name, "host_") || strings.HasPrefix(name, "user_ca")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		copied++
	}
	if copied < 4 {
		t.Fatalf("copied %d key files from %s, want the three CA keys and the state key", copied, from)
	}
}
