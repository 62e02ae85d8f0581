package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// tenant is the tenant of every test configuration; nord selects its hosts.
const tenant = "schule-nord"

var (
	nord = config.Selector{Tenant: tenant}
	root = []string{"root"}
)

// gwConfig starts a test configuration: the gateway on 127.0.0.1:port with
// its data in dir/data, and the tenant schule-nord.
func gwConfig(dir string, port int) *config.Config {
	return testenv.NewConfig(port, filepath.Join(dir, "data"), config.Tenant{ID: tenant, Name: "Gesamtschule Nord"})
}

// host is a host of schule-nord at addr, pinned to hostKey.
func host(name, env, addr, hostKey string) config.Host {
	return config.Host{Name: name, Address: addr, Tenant: tenant, Environment: env, HostKey: hostKey}
}

// member is a person in one role who meets every obligation of it: an
// employee's, and an external's too when external.
func member(id, pub, roleID string, external bool) config.Person {
	p := testenv.Person(id, pub, roleID)
	if external {
		p = testenv.External(p)
	}
	return p
}

// role is a role with a description and its rules.
func role(id, description string, allow ...config.Rule) config.Role {
	return config.Role{ID: id, Description: description, Allow: allow}
}

// day formats a date relative to today (UTC) the way the config writes it.
func day(offset int) string { return testenv.Day(offset).String() }

// writeConfig writes a configuration to path.
func writeConfig(t *testing.T, path string, c *config.Config) {
	t.Helper()
	if err := testenv.WriteConfig(path, c); err != nil {
		t.Fatal(err)
	}
}

// configText is the file writeConfig writes, for tests that edit or
// search it.
func configText(t *testing.T, c *config.Config) string {
	t.Helper()
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixtureConfig is the configuration of newEnv without persons and
// hosts: two roles, admin (root on every host of the tenant) and dev
// (deploy on web1).
func fixtureConfig(dir string, port int) *config.Config {
	c := gwConfig(dir, port)
	c.Roles = []config.Role{
		role("admin", "all hosts of the school as root", config.Rule{Hosts: nord, Logins: root}),
		role("dev", "deploy on web1 only", config.Rule{Hosts: config.Selector{Names: []string{"web1"}}, Logins: []string{"deploy"}}),
	}
	return c
}

// prepare starts every setup: it needs ssh, sshd and ssh-keygen, builds
// the tandem binary (once per test binary) and returns it, a fresh test
// directory and a directory for keys in it.
func prepare(t *testing.T) (bin, dir, keysDir string) {
	t.Helper()
	for _, p := range []string{"ssh", "sshd", "ssh-keygen"} {
		testenv.RequireProgram(t, p)
	}
	bin, dir = testenv.BuildTandem(t), t.TempDir()
	return bin, dir, mkdir(t, dir, "keys")
}

// env is one complete test setup: a target sshd (db1), a gateway, and
// OpenSSH clients for alice (admin), bob (dev) and mallory (unregistered).
type env struct {
	Dir     string
	Bin     string
	Config  string
	Cfg     *config.Config // as written to Config
	Target  *testenv.Target
	GW      *testenv.Gateway
	HostCA  string // the "@cert-authority * …" known_hosts line
	UserCA  string // the user CA's authorized_keys line
	Alice   *testenv.Client
	Bob     *testenv.Client
	Mallory *testenv.Client
	// DownPort is a port on 127.0.0.1 where nothing listens (host db-down).
	DownPort int
}

// newEnv builds an env. Host names in the config: db1 (the real sshd),
// db-bad (the real sshd, pinned to a wrong host key), db-down (nothing
// listening), web1 (nothing listening; only for bob's role). edits
// change the configuration before the gateway starts.
func newEnv(t *testing.T, edits ...func(*config.Config)) *env {
	t.Helper()
	return newEnvGatewayEnv(t, nil, edits...)
}

// newEnvGatewayEnv is newEnv with gwEnv (KEY=VALUE) in the gateway's
// environment.
func newEnvGatewayEnv(t *testing.T, gwEnv []string, edits ...func(*config.Config)) *env {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	e := &env{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml")}
	aliceKey, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	bobKey, bobPub := testenv.KeyPair(t, keysDir, "bob", "ed25519")
	malloryKey, _ := testenv.KeyPair(t, keysDir, "mallory", "ecdsa")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	_, wrongPub := testenv.KeyPair(t, keysDir, "wrong_host", "ecdsa")

	sshdPort := testenv.FreePort(t)
	gwPort := testenv.FreePort(t)
	e.DownPort = testenv.FreePort(t)
	web1Port := testenv.FreePort(t)

	e.Cfg = fixtureConfig(dir, gwPort)
	alice, bob := testenv.Person("alice", alicePub, "admin"), testenv.Person("bob", bobPub, "dev")
	alice.Name, bob.Name = "Alice Adler", "Bob Berg" // `ssh gw whoami` shows the name
	e.Cfg.Persons = []config.Person{alice, bob}
	sshdAddr := fmt.Sprintf("127.0.0.1:%d", sshdPort)
	e.Cfg.Hosts = []config.Host{
		host("db1", config.Test, sshdAddr, hostPub),
		host("db-bad", config.Test, sshdAddr, wrongPub),
		host("db-down", config.Test, fmt.Sprintf("127.0.0.1:%d", e.DownPort), hostPub),
		host("web1", config.Test, fmt.Sprintf("127.0.0.1:%d", web1Port), wrongPub),
	}
	for _, edit := range edits {
		edit(e.Cfg)
	}
	writeConfig(t, e.Config, e.Cfg)

	// The user CA exists before the gateway serves, so the target can
	// trust it from its first start.
	e.UserCA = caPublic(t, bin, e.Config, "user")
	e.Target = testenv.StartSSHD(t, testenv.TargetOpts{
		Port:        sshdPort,
		HostKeyFile: hostKey,
		UserCA:      e.UserCA,
		// alice's plain key may log in directly, to compare a direct
		// login with one through the gateway.
		AuthorizedKeys: []string{alicePub},
	})
	e.GW = testenv.StartGatewayEnv(t, bin, e.Config, gwPort, gwEnv)
	e.HostCA = certAuthorityLine(t, e.GW)

	jump := map[string]string{"db1": "root", "db9": "root", "db-bad": "root", "db-down": "root", "web1": "deploy"}
	direct := testenv.HostEntry{Name: "direct", HostName: "127.0.0.1", Port: sshdPort, User: "root"}
	known := []string{e.HostCA, e.Target.KnownHostsLine()}
	e.Alice = testenv.NewClient(t, mkdir(t, dir, "alice"), testenv.ClientOpts{
		Key: aliceKey, Person: "alice", GatewayPort: gwPort, KnownHosts: known,
		JumpHosts:    jump,
		RouteAliases: map[string]string{"gwu": "root%db1"},
		Hosts:        []testenv.HostEntry{direct},
	})
	e.Bob = testenv.NewClient(t, mkdir(t, dir, "bob"), testenv.ClientOpts{
		Key: bobKey, Person: "bob", GatewayPort: gwPort, KnownHosts: known,
		JumpHosts: map[string]string{"db1": "deploy", "web1": "deploy"},
	})
	e.Mallory = testenv.NewClient(t, mkdir(t, dir, "mallory"), testenv.ClientOpts{
		Key: malloryKey, Person: "mallory", GatewayPort: gwPort, KnownHosts: known,
		JumpHosts: map[string]string{"db1": "root"},
	})
	return e
}

// routeArgs returns the ssh arguments that reach login@host in user-name
// mode: -p PORT login%host@127.0.0.1.
func (e *env) routeArgs(login, host string) []string {
	return []string{"-p", fmt.Sprint(e.GW.Port), login + "%" + host + "@127.0.0.1"}
}

// mode is one way of naming a target through the gateway.
type mode struct {
	Name string
	// Dest returns the ssh arguments naming login@host (before the
	// remote command).
	Dest func(e *env, login, host string) []string
}

// modes are the two routing modes; jump mode relies on the login that the
// client's ssh_config sets for the host.
var modes = []mode{
	{Name: "username", Dest: func(e *env, login, host string) []string { return e.routeArgs(login, host) }},
	{Name: "jump", Dest: func(e *env, login, host string) []string { return []string{"-l", login, host} }},
}

// sshArgs joins options, destination and command into one argument list.
func sshArgs(dest []string, rest ...string) []string {
	return append(append([]string{}, dest...), rest...)
}

// failf reports a failed client run with everything needed to debug it.
func (e *env) failf(t *testing.T, r testenv.Result, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n%s\ngateway output (tail):\n%s", fmt.Sprintf(format, args...), r, e.GW.Tail())
}

// errorf is failf without stopping the test.
func (e *env) errorf(t *testing.T, r testenv.Result, format string, args ...any) {
	t.Helper()
	t.Errorf("%s\n%s\ngateway output (tail):\n%s", fmt.Sprintf(format, args...), r, e.GW.Tail())
}

// caPublic runs `tandem ca public --kind KIND` and returns its one line.
func caPublic(t *testing.T, bin, config, kind string) string {
	t.Helper()
	out, errOut, err := testenv.RunTandem(t, bin, "ca", "public", "--config", config, "--kind", kind)
	if err != nil {
		t.Fatalf("tandem ca public --kind %s: %v\nstderr: %s", kind, err, errOut)
	}
	line := strings.TrimSpace(out)
	if line == "" || strings.Contains(line, "\n") {
		t.Fatalf("tandem ca public --kind %s: want one authorized_keys line, got %q", kind, out)
	}
	return line
}

// certAuthorityLine returns the "@cert-authority PATTERNS KEY" line of
// `tandem client-config`. The brief named the pattern "*"; the gateway may
// list its names and the configured hosts instead, which is stricter and
// covers every host name these tests reach.
func certAuthorityLine(t *testing.T, gw *testenv.Gateway) string {
	t.Helper()
	out, errOut, err := gw.Run(t, "client-config", "--config", gw.Config)
	if err != nil {
		t.Fatalf("tandem client-config: %v\nstderr: %s", err, errOut)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "@cert-authority ") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("tandem client-config prints no line starting with %q:\n%s", "@cert-authority ", out)
	return ""
}

// personClients makes one OpenSSH client per person (keys: person → private
// key file) in dir/client-PERSON, each trusting gw's host CA and reaching
// the jumpHosts (host → login) through it.
func personClients(t *testing.T, dir string, gw *testenv.Gateway, gwPort int, keys, jumpHosts map[string]string) map[string]*testenv.Client {
	t.Helper()
	known := []string{certAuthorityLine(t, gw)}
	clients := map[string]*testenv.Client{}
	for person, key := range keys {
		clients[person] = testenv.NewClient(t, mkdir(t, dir, "client-"+person), testenv.ClientOpts{
			Key: key, Person: person, GatewayPort: gwPort, KnownHosts: known, JumpHosts: jumpHosts,
		})
	}
	return clients
}

// newLogins returns the certificate logins the target saw after the
// first `before` ones.
func newLogins(tg *testenv.Target, before int) []testenv.CertLogin {
	all := tg.AcceptedCertLogins()
	if len(all) <= before {
		return nil
	}
	return all[before:]
}

// nonce returns a random marker for command output.
func nonce(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatalf("mkdir %s: %v", d, err)
	}
	return d
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// clientOf returns the OpenSSH client of person from a test environment's
// clients, failing the test when the environment has none for them.
func clientOf(t *testing.T, clients map[string]*testenv.Client, person string) *testenv.Client {
	t.Helper()
	c := clients[person]
	if c == nil {
		t.Fatalf("no OpenSSH client for %s", person)
	}
	return c
}
