package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/proxyproto"
	"tandem.dev/tandem/internal/testenv"
)

// Client addresses on loopback: the load balancer connects from
// 127.0.0.1, persons from addresses of their own, so the audit log shows
// whose address it recorded.
const (
	lbAddr      = "127.0.0.1"
	aliceAddr   = "127.0.0.5"
	malloryAddr = "127.0.0.8"
	forgerAddr  = "127.0.0.7"
)

// haNode is one gateway of the pair behind HAProxy.
type haNode struct {
	name   string
	port   int
	config string
	gw     *testenv.Gateway
}

// TestBehindLoadBalancer runs two `tandem serve` processes behind a real
// HAProxy in TCP mode with PROXY protocol v2 (docs/HA.md), each with its
// own data directory and one shared state database, and real OpenSSH
// clients:
//   - the audit log and the rate limiter see the client's address, not
//     HAProxy's: failed logins from one address block that address only;
//   - a PROXY header straight to a node from an address that is not the
//     balancer is refused, and so is the balancer's address without one;
//   - both nodes print the same client-config;
//   - SIGKILL of the node that serves a session ends the session, and the
//     client reconnects at once through HAProxy to the other node, with no
//     host key warning (the host CA vouches for both).
func TestBehindLoadBalancer(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "haproxy")
	bin, dir, keysDir := prepare(t)
	aliceKey, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	malloryKey, _ := testenv.KeyPair(t, keysDir, "mallory", "ecdsa")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort := testenv.FreePort(t)
	sshdAddr := fmt.Sprintf("127.0.0.1:%d", sshdPort)

	// HAProxy's port is chosen first: both nodes name it as their public
	// address, so client-config points at the balancer.
	lbPort := testenv.FreePort(t)
	shared := filepath.Join(dir, "shared", "state.db")
	nodes := []*haNode{{name: "a", port: testenv.FreePort(t)}, {name: "b", port: testenv.FreePort(t)}}
	for _, n := range nodes {
		nd := mkdir(t, dir, n.name)
		c := fixtureConfig(nd, n.port)
		c.Persons = []config.Person{testenv.Person("alice", alicePub, "admin")}
		c.Hosts = []config.Host{host("db1", config.Test, sshdAddr, hostPub)}
		c.Gateway.ProxyProtocol = config.ProxyProtocol{From: []string{lbAddr}}
		c.Gateway.PublicAddress = fmt.Sprintf("%s:%d", lbAddr, lbPort)
		c.Gateway.Limits.FailuresPerSource = 3
		c.Store = config.Store{Path: shared}
		n.config = filepath.Join(nd, "tandem.yaml")
		writeConfig(t, n.config, c)
	}
	a, b := nodes[0], nodes[1]

	// Node a creates the CAs and the state key; node b gets copies of
	// them before its first start (docs/HA.md). Its host key stays its own.
	userCA := caPublic(t, bin, a.config, "user")
	if out, errOut, err := testenv.RunTandem(t, bin, "locks", "--config", a.config); err != nil {
		t.Fatalf("tandem locks (creates the state key): %v\n%s%s", err, out, errOut)
	}
	bKeys := mkdir(t, filepath.Join(dir, "b"), filepath.Join("data", "keys"))
	for _, f := range []string{"user_ca", "host_ca", "state_mac"} {
		copyFile(t, filepath.Join(dir, "a", "data", "keys", f), filepath.Join(bKeys, f))
	}
	target := testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
	for _, n := range nodes {
		n.gw = testenv.StartGateway(t, bin, n.config, n.port)
	}
	// Each node keeps its own host key; the host CA's certificate makes
	// the switch between them invisible to clients.
	if hostKeyOf(t, a) == hostKeyOf(t, b) {
		t.Fatal("both nodes have the same host key; the test wants them distinct")
	}
	lb := testenv.StartHAProxy(t, dir, testenv.HAProxyOpts{Balance: "first", Port: lbPort,
		Servers: []string{a.gw.Addr, b.gw.Addr}})

	// Both nodes print the same client configuration: the balancer's
	// address, trusted through the one host CA.
	var clientConfigs []string
	for _, n := range nodes {
		out, errOut, err := n.gw.Run(t, "client-config", "--config", n.config, "--person", "alice")
		if err != nil {
			t.Fatalf("client-config on node %s: %v\n%s", n.name, err, errOut)
		}
		clientConfigs = append(clientConfigs, out)
	}
	if clientConfigs[0] != clientConfigs[1] {
		t.Fatalf("the nodes print different client configurations:\n%s\n---\n%s", clientConfigs[0], clientConfigs[1])
	}
	if want := fmt.Sprintf("Port %d\n", lbPort); !strings.Contains(clientConfigs[0], want) {
		t.Fatalf("client-config does not point at the balancer (%q):\n%s", want, clientConfigs[0])
	}
	known := []string{certAuthorityLine(t, a.gw)}
	alice := testenv.NewClient(t, mkdir(t, dir, "alice"), testenv.ClientOpts{Key: aliceKey, Person: "alice",
		GatewayPort: lbPort, KnownHosts: known, JumpHosts: map[string]string{"db1": "root"},
		Options: []string{"BindAddress " + aliceAddr}})
	mallory := testenv.NewClient(t, mkdir(t, dir, "mallory"), testenv.ClientOpts{Key: malloryKey, Person: "mallory",
		GatewayPort: lbPort, KnownHosts: known, Options: []string{"BindAddress " + malloryAddr}})
	fail := func(t *testing.T, format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\nnode a:\n%s\nnode b:\n%s\nhaproxy:\n%s", fmt.Sprintf(format, args...), a.gw.Tail(), b.gw.Tail(), lb.Tail())
	}

	t.Run("client address in the audit log", func(t *testing.T) {
		if r := alice.SSH(t, "gw", "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, aliceAddr) {
			fail(t, "ssh gw whoami through HAProxy: want alice's connection from %s listed\n%s", aliceAddr, r)
		}
		logins := gatewayEvents(t, a.gw, "auth.success")
		if len(logins) == 0 || !strings.HasPrefix(logins[len(logins)-1].Source, aliceAddr+":") {
			fail(t, "node a's last auth.success: want source %s:PORT, got %+v", aliceAddr, logins)
		}
		for _, e := range logins {
			if strings.HasPrefix(e.Source, lbAddr+":") {
				t.Errorf("a login was recorded with HAProxy's address: %+v", e)
			}
		}
	})

	t.Run("failures block the client's address only", func(t *testing.T) {
		for i := range 3 {
			if r := mallory.SSH(t, "gw", "whoami"); r.Code == 0 {
				fail(t, "attempt %d with an unregistered key was let in:\n%s", i+1, r)
			}
		}
		blocks := gatewayEvents(t, a.gw, "auth.blocked")
		if len(blocks) != 1 || !strings.HasPrefix(blocks[0].Source, malloryAddr+":") {
			fail(t, "want one block of %s, got %+v", malloryAddr, blocks)
		}
		// Behind the same balancer, alice's address is not blocked.
		if r := alice.SSH(t, "gw", "whoami"); r.Code != 0 {
			fail(t, "alice was refused after mallory's address was blocked:\n%s", r)
		}
	})

	t.Run("PROXY header only from the balancer", func(t *testing.T) {
		// A client that talks to node a directly and claims an address.
		forged := proxyproto.Encode(proxyproto.Header{Source: netip.MustParseAddrPort("203.0.113.9:4242"),
			Destination: netip.MustParseAddrPort(a.gw.Addr)})
		if got := rawExchange(t, forgerAddr, a.gw.Addr, append(forged, "SSH-2.0-OpenSSH_9.2\r\n"...)); strings.Contains(got, "\x14") {
			fail(t, "node a went on to the key exchange after a forged PROXY header: %q", got)
		}
		refusals := gatewayEvents(t, a.gw, "auth.failure")
		found := false
		for _, e := range refusals {
			found = found || e.Attrs["stage"] == "proxy" && strings.HasPrefix(e.Source, forgerAddr+":")
			if strings.Contains(e.Source, "203.0.113.9") {
				t.Errorf("the forged address reached the audit log: %+v", e)
			}
		}
		if !found {
			fail(t, "no auth.failure of stage proxy from %s: %+v", forgerAddr, refusals)
		}
		// The balancer's address without a header: an OpenSSH client
		// that reaches node a from 127.0.0.1 is refused.
		direct := testenv.NewClient(t, mkdir(t, dir, "alice-direct"), testenv.ClientOpts{Key: aliceKey, Person: "alice",
			GatewayPort: a.port, KnownHosts: known, Options: []string{"BindAddress " + lbAddr}})
		if r := direct.SSH(t, "gw", "whoami"); r.Code == 0 {
			fail(t, "a connection from the balancer's address without a PROXY header was let in:\n%s", r)
		}
	})

	t.Run("SIGKILL of the serving node", func(t *testing.T) {
		before := len(target.AcceptedCertLogins())
		live := startLive(t, "alice", alice, "db1", "echo session-ready; sleep 120")
		if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(live.stdout.String(), "session-ready") }) {
			fail(t, "the session through HAProxy did not start:\n%s", live.output())
		}
		starts := gatewayEvents(t, a.gw, "session.start")
		if len(starts) == 0 {
			fail(t, "node a did not serve the session (balance first): no session.start")
		}
		killed := time.Now()
		a.gw.Crash(t)
		if !live.waitExit(10 * time.Second) {
			fail(t, "the session on the killed node is still open 10 s after SIGKILL:\n%s", live.output())
		}
		ended := live.exitAt.Sub(killed)
		// Reconnect at once: HAProxy sends the connection that finds node
		// a gone to node b (redispatch), before its health check notices.
		mark := nonce(t)
		r := alice.SSH(t, "db1", "echo "+mark)
		back := time.Since(killed)
		if r.Code != 0 || !strings.Contains(r.Stdout, mark) {
			fail(t, "reconnecting through HAProxy after node a died:\n%s", r)
		}
		if strings.Contains(r.Stderr, "WARNING") || strings.Contains(r.Stderr, "IDENTIFICATION") {
			t.Errorf("the switch to node b showed a host key warning:\n%s", r.Stderr)
		}
		if got := newLogins(target, before); len(got) < 2 {
			t.Errorf("the target saw %d logins, want the session's and the reconnect's: %+v", len(got), got)
		}
		logins := gatewayEvents(t, b.gw, "auth.success")
		if len(logins) == 0 || !strings.HasPrefix(logins[len(logins)-1].Source, aliceAddr+":") {
			fail(t, "node b's last auth.success: want source %s:PORT, got %+v", aliceAddr, logins)
		}
		// HAProxy's health checks (a LOCAL header, then the SSH version
		// line) take node a out and keep node b in.
		if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(lb.Stderr.String(), "gw1 is DOWN") }) {
			fail(t, "HAProxy's health check did not notice node a's death")
		}
		if strings.Contains(lb.Stderr.String(), "gw2 is DOWN") {
			fail(t, "HAProxy's health check took node b out: its check with a LOCAL header failed")
		}
		t.Logf("session on the killed node ended %v after SIGKILL; the client was back through node b %v after it",
			ended.Round(time.Millisecond), back.Round(time.Millisecond))
		// Node a's log: what it acknowledged is there, and it verifies.
		if out, errOut, err := testenv.RunTandem(t, bin, "audit", "verify", "--config", a.config); err != nil {
			fail(t, "audit verify of the killed node: %v\n%s%s", err, out, errOut)
		}
		if n := len(gatewayEvents(t, a.gw, "session.start")); n != len(starts) {
			t.Errorf("node a's log has %d session.start events after the kill, %d before", n, len(starts))
		}
	})

	t.Run("a lock through the shared state ends the session on node b", func(t *testing.T) {
		live := startLive(t, "alice", alice, "db1", "echo session-ready; sleep 120")
		if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(live.stdout.String(), "session-ready") }) {
			fail(t, "the session through HAProxy on node b did not start:\n%s", live.output())
		}
		// Node a's configuration and keys: the state database is the one
		// node b reads.
		locked := time.Now()
		if out, errOut, err := testenv.RunTandem(t, bin, "lock", "alice", "--reason", "ha test", "--config", a.config); err != nil {
			fail(t, "tandem lock with node a's configuration: %v\n%s%s", err, out, errOut)
		}
		if !live.waitExit(5 * time.Second) {
			fail(t, "alice's session on node b is still open 5 s after the lock:\n%s", live.output())
		}
		took := live.exitAt.Sub(locked)
		if took > time.Second+500*time.Millisecond { // the issue asks for 1 s; the margin is for a loaded machine
			t.Errorf("the lock ended the session on node b after %v, want about a second at most", took)
		}
		t.Logf("the lock ended the session on node b %v after tandem lock started", took.Round(time.Millisecond))
	})
}

// gatewayEvents reads gw's audit events of type typ with tandem audit show.
func gatewayEvents(t *testing.T, gw *testenv.Gateway, typ string) []shownEvent {
	t.Helper()
	out, errOut, err := gw.Run(t, "audit", "show", "--config", gw.Config, "--type", typ, "--json")
	if err != nil {
		t.Fatalf("audit show: %v\n%s", err, errOut)
	}
	return shownEvents(t, out)
}

// rawExchange connects from the local address src to addr, sends data and
// returns what came back until the server closed the connection (at most
// 15 s: a connection still open then fails the test).
func rawExchange(t *testing.T, src, addr string, data []byte) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil && !errors.Is(err, syscall.ECONNRESET) { // a close or a reset, not the deadline
		t.Fatalf("the server did not close the connection: %v (read %q)", err, got)
	}
	return string(got)
}

// hostKeyOf returns node n's host key file.
func hostKeyOf(t *testing.T, n *haNode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.gw.DataDir, "keys", "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// copyFile copies a key file with mode 0600.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHAProxyExample: the example configuration in deploy/haproxy is
// valid for the HAProxy Debian ships, and has the settings that
// TestBehindLoadBalancer tests (testenv.HAProxyConfig).
func TestHAProxyExample(t *testing.T) {
	t.Parallel()
	bin := testenv.RequireProgram(t, "haproxy")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example := filepath.Join(root, "deploy", "haproxy", "haproxy.cfg")
	if out, err := exec.Command(bin, "-c", "-f", example).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", example, err, out)
	}
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	tested := testenv.HAProxyConfig("127.0.0.1:1", testenv.HAProxyOpts{Servers: []string{"127.0.0.1:2"}})
	for _, line := range []string{"mode tcp", "option redispatch", "balance first", "option tcp-check",
		`tcp-check expect rstring ^SSH-2\.0-`, "default-server send-proxy-v2 check"} {
		if !strings.Contains(string(b), line) || !strings.Contains(tested, line) {
			t.Errorf("%q is not in both the example and the tested configuration", line)
		}
	}
}
