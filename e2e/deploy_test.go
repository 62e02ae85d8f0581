package e2e

// The deployment of issue 20 with real parts: the tandem_target role
// applied by ansible-playbook to a real sshd's configuration, logins
// through a real tandem serve, and the ways in that must stay shut.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
	"tandem.dev/tandem/internal/testenv"
)

// localPlay is a playbook that applies one role of deploy/ansible/roles
// to this machine (connection: local) with the variables of a JSON file.
type localPlay struct {
	Dir      string
	Playbook string
	Env      []string
}

// newLocalPlay writes the playbook for role and an ansible.cfg in dir.
func newLocalPlay(t *testing.T, dir, role string) *localPlay {
	t.Helper()
	testenv.RequireProgram(t, "ansible-playbook")
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = mkdir(t, dir, "ansible-"+role)
	p := &localPlay{Dir: dir, Playbook: filepath.Join(dir, "play.yml")}
	writeTestFile(t, p.Playbook, fmt.Sprintf(`- name: Apply %[1]s
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - %[1]s
`, role))
	cfg := filepath.Join(dir, "ansible.cfg")
	localTmp := mkdir(t, dir, "local-tmp")
	writeTestFile(t, cfg, fmt.Sprintf(`[defaults]
roles_path = %s
retry_files_enabled = False
local_tmp = %s
nocolor = True
deprecation_warnings = False
interpreter_python = /usr/bin/python3
`, filepath.Join(repo, "deploy", "ansible", "roles"), localTmp))
	p.Env = ansibleEnv(t, dir, cfg, localTmp, filepath.Join(dir, "remote-tmp"))
	return p
}

// run applies the role with vars (as -e @file).
func (p *localPlay) run(t *testing.T, vars map[string]any) ansibleRun {
	t.Helper()
	b, err := json.Marshal(vars)
	if err != nil {
		t.Fatal(err)
	}
	varsFile := filepath.Join(p.Dir, "vars.json")
	writeTestFile(t, varsFile, string(b))
	return runAnsible(t, p.Dir, p.Env, "-i", "localhost,", "-e", "@"+varsFile, p.Playbook)
}

// mustApply runs the role and fails the test unless it succeeded; it
// returns the "changed" count of the PLAY RECAP.
func (p *localPlay) mustApply(t *testing.T, vars map[string]any) int {
	t.Helper()
	a := p.run(t, vars)
	c, ok := a.recap("localhost")
	if a.Code != 0 || !ok || c[3] != 0 {
		t.Fatalf("ansible-playbook: exit %d, recap %v (found %v)\n%s", a.Code, c, ok, a.Output)
	}
	return c[1]
}

// certFor signs pub with the CA key file caKey via ssh-keygen (principal
// root, serial, and more options such as "-O source-address=…"), and
// returns the certificate file.
func certFor(t *testing.T, caKey, pubFile string, serial uint64, opts ...string) string {
	t.Helper()
	args := append([]string{"-q", "-s", caKey, "-I", "test cert " + strconv.FormatUint(serial, 10), "-n", "root", "-V", "-5m:+1h", "-z", strconv.FormatUint(serial, 10)}, opts...)
	out, err := exec.Command(testenv.RequireProgram(t, "ssh-keygen"), append(args, pubFile)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
	}
	return strings.TrimSuffix(pubFile, ".pub") + "-cert.pub"
}

// waitRestarted waits until sshd, signalled with SIGHUP, logs that it
// listens again for the n-th time.
func waitRestarted(t *testing.T, tg *testenv.Target, n int) {
	t.Helper()
	if !testenv.WaitFor(15*time.Second, func() bool { return strings.Count(tg.Log(), "Server listening on") >= n }) {
		t.Fatalf("sshd did not restart after SIGHUP\nlog:\n%s", tg.Log())
	}
	if !testenv.WaitFor(10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", tg.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("sshd does not accept connections after its restart")
	}
}

// TestDeployTargetRole applies the tandem_target role to a fresh sshd
// (its configuration in a directory of its own, on loopback) and checks
// that the only way in is through Tandem: a login through the gateway
// works; a personal key, a certificate of another CA, a gateway
// certificate used from outside its source-address and a revoked one are
// refused by the real sshd; a second run changes nothing; a drop-in
// sshd -t refuses is rolled back and sshd keeps serving.
func TestDeployTargetRole(t *testing.T) {
	bin, dir, keysDir := prepare(t)
	aliceKey, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	sshdAddr := fmt.Sprintf("127.0.0.1:%d", sshdPort)

	// The gateway reaches targets from 127.0.0.1 (its egress address);
	// 127.0.0.2 plays a machine elsewhere that holds a copied certificate.
	cfgPath := filepath.Join(dir, "tandem.yaml")
	cfg := fixtureConfig(dir, gwPort)
	cfg.Gateway.EgressAddresses = []string{"127.0.0.1"}
	cfg.Persons = []config.Person{testenv.Person("alice", alicePub, "admin")}
	cfg.Hosts = []config.Host{host("db1", config.Test, sshdAddr, hostPub)}
	writeConfig(t, cfgPath, cfg)
	userCA := caPublic(t, bin, cfgPath, "user")

	// The target: sshd_config includes the role's drop-in first, as
	// Debian's does. Before the role, alice's personal key logs in
	// directly (authorized_keys): the control for the refusals below.
	etc := mkdir(t, dir, "etc-ssh")
	dropins := mkdir(t, etc, "sshd_config.d")
	tg := testenv.StartSSHD(t, testenv.TargetOpts{
		Port: sshdPort, HostKeyFile: hostKey, AuthorizedKeys: []string{alicePub},
		Include: filepath.Join(dropins, "*.conf"),
	})
	direct := func(src string, extra ...string) []string {
		return append([]string{"-o", "BindAddress=" + src, "-p", strconv.Itoa(sshdPort), "-o", "User=root"}, append(extra, "127.0.0.1", "echo in")...)
	}
	known := []string{tg.KnownHostsLine()}
	alice := testenv.NewClient(t, mkdir(t, dir, "alice"), testenv.ClientOpts{Key: aliceKey, Person: "alice", GatewayPort: gwPort, KnownHosts: known, JumpHosts: map[string]string{"db1": "root"}})
	if r := alice.SSH(t, direct("127.0.0.1")...); r.Code != 0 {
		t.Fatalf("control: the personal key does not log in before the role\n%s\nsshd log:\n%s", r, tg.Log())
	}

	// The gateway writes the revocation list; at first it revokes nothing.
	files := mkdir(t, dir, "files")
	spec, krl := filepath.Join(files, "revoked.txt"), filepath.Join(files, "tandem_revoked_keys")
	writeTestFile(t, spec, "# revoked certificates\n")
	writeKRLFile := func() {
		t.Helper()
		if out, errOut, err := testenv.RunTandem(t, bin, "target-config", "krl", "-c", cfgPath, "--spec", spec, "--out", krl); err != nil {
			t.Fatalf("tandem target-config krl: %v\n%s%s", err, out, errOut)
		}
	}
	writeKRLFile()

	play := newLocalPlay(t, dir, "tandem_target")
	vars := map[string]any{
		"tandem_target_user_ca_keys":   []string{userCA},
		"tandem_target_logins":         []string{"root"},
		"tandem_target_krl_src":        krl,
		"tandem_target_sshd_config":    filepath.Join(tg.Dir, "sshd_config"),
		"tandem_target_dropin":         filepath.Join(dropins, "tandem.conf"),
		"tandem_target_user_ca_file":   filepath.Join(etc, "tandem_user_ca.pub"),
		"tandem_target_principals_dir": filepath.Join(etc, "tandem_principals"),
		"tandem_target_krl_file":       filepath.Join(etc, "tandem_revoked_keys"),
		"tandem_target_reload_command": fmt.Sprintf("kill -HUP %d", tg.PID()),
	}
	restarts := strings.Count(tg.Log(), "Server listening on")
	if changed := play.mustApply(t, vars); changed == 0 {
		t.Fatal("the first run changed nothing")
	}
	restarts++
	waitRestarted(t, tg, restarts)

	notify := mkdir(t, dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(notify, "sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	gw := testenv.StartGatewayEnv(t, bin, cfgPath, gwPort, []string{"NOTIFY_SOCKET=" + filepath.Join(notify, "sock"), "WATCHDOG_USEC=2000000"})
	// alice's client trusts the gateway's host CA from now on.
	writeTestFile(t, alice.KnownHosts, strings.Join(append(known, certAuthorityLine(t, gw)), "\n")+"\n")

	t.Run("systemd notification", func(t *testing.T) {
		seen := map[string]bool{}
		buf := make([]byte, 256)
		for end := time.Now().Add(20 * time.Second); !(seen["READY=1"] && seen["WATCHDOG=1"]) && time.Now().Before(end); {
			_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := sock.Read(buf)
			if err != nil {
				break
			}
			seen[string(buf[:n])] = true
		}
		if !seen["READY=1"] || !seen["WATCHDOG=1"] {
			t.Errorf("tandem serve sent %v, want READY=1 and WATCHDOG=1", seen)
		}
		sock.Close() // the pings fail from now on; the gateway logs and goes on
	})

	loginThroughTandem := func(t *testing.T) {
		t.Helper()
		marker := nonce(t)
		before := len(tg.AcceptedCertLogins())
		r := alice.SSH(t, "db1", "echo", marker)
		if r.Code != 0 || !strings.Contains(r.Stdout, marker) {
			t.Fatalf("login through Tandem: %s\ngateway:\n%s\nsshd log:\n%s", r, gw.Tail(), tg.Log())
		}
		if l := newLogins(tg, before); len(l) != 1 || !strings.Contains(l[0].ID, "person=alice") {
			t.Errorf("sshd logged certificate logins %v, want one of alice's session", l)
		}
	}
	refused := func(t *testing.T, why string, args ...string) {
		t.Helper()
		before := tg.AcceptedLogins()
		if r := alice.SSH(t, args...); r.Code == 0 || strings.Contains(r.Stdout, "in") {
			t.Errorf("%s: logged in\n%s", why, r)
		}
		if tg.AcceptedLogins() != before {
			t.Errorf("%s: sshd accepted a login", why)
		}
	}

	t.Run("login through Tandem", loginThroughTandem)

	t.Run("personal key refused", func(t *testing.T) {
		refused(t, "alice's personal key directly", direct("127.0.0.1")...)
	})

	// Certificates the test signs itself for alice's key, as someone
	// who obtained one would hold it.
	alicePubFile := aliceKey + ".pub"
	certOf := func(t *testing.T, name, caKey string, serial uint64, opts ...string) string {
		t.Helper()
		d := mkdir(t, dir, name)
		pub := filepath.Join(d, "id.pub")
		b, err := os.ReadFile(alicePubFile)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, pub, string(b))
		return certFor(t, caKey, pub, serial, opts...)
	}
	withCert := func(cert string) []string {
		return []string{"-o", "CertificateFile=" + cert}
	}

	t.Run("certificate of another CA refused", func(t *testing.T) {
		otherCA, _ := testenv.KeyPair(t, keysDir, "other_ca", "ecdsa")
		cert := certOf(t, "other-ca", otherCA, 1)
		refused(t, "a certificate of another CA", direct("127.0.0.1", withCert(cert)...)...)
	})

	// A certificate of the gateway's own CA with the gateway's
	// source-address, as one taken from the gateway would be.
	gatewayCA := filepath.Join(cfg.Gateway.DataDir, "keys", "user_ca")
	const stolenSerial = 424242
	stolen := certOf(t, "stolen", gatewayCA, stolenSerial, "-O", "source-address=127.0.0.1")

	t.Run("source-address", func(t *testing.T) {
		if r := alice.SSH(t, direct("127.0.0.1", withCert(stolen)...)...); r.Code != 0 {
			t.Fatalf("control: the certificate does not log in from its source address\n%s\nsshd log:\n%s", r, tg.Log())
		}
		refused(t, "the gateway's certificate used from 127.0.0.2", direct("127.0.0.2", withCert(stolen)...)...)
		if !strings.Contains(tg.Log(), "not from a permitted source address") && !strings.Contains(tg.Log(), "source-address") {
			t.Errorf("sshd's log does not name the source address as the reason:\n%s", tg.Log())
		}
	})

	t.Run("second run changes nothing", func(t *testing.T) {
		if changed := play.mustApply(t, vars); changed != 0 {
			t.Errorf("second run: changed=%d, want 0", changed)
		}
	})

	t.Run("revoked certificate refused", func(t *testing.T) {
		writeTestFile(t, spec, fmt.Sprintf("# INC-1: certificate copied\nserial: %d\n", stolenSerial))
		writeKRLFile()
		if changed := play.mustApply(t, vars); changed != 1 {
			t.Errorf("refreshing the KRL: changed=%d, want 1 (the list; no reload)", changed)
		}
		refused(t, "a revoked certificate from its source address", direct("127.0.0.1", withCert(stolen)...)...)
		if !strings.Contains(tg.Log(), "revoked") {
			t.Errorf("sshd's log does not say the key is revoked:\n%s", tg.Log())
		}
		loginThroughTandem(t) // the gateway's own certificates are not touched
	})

	t.Run("bad drop-in rolled back", func(t *testing.T) {
		dropin := filepath.Join(dropins, "tandem.conf")
		good, err := os.ReadFile(dropin)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]any{}
		for k, v := range vars {
			bad[k] = v
		}
		bad["tandem_target_extra_options"] = []string{"NoSuchKeyword yes"}
		a := play.run(t, bad)
		if a.Code == 0 {
			t.Fatalf("a drop-in sshd -t refuses was accepted\n%s", a.Output)
		}
		if !strings.Contains(a.Output, "sshd -t refused") {
			t.Errorf("the failure does not say why:\n%s", a.Output)
		}
		if now, _ := os.ReadFile(dropin); string(now) != string(good) {
			t.Errorf("the drop-in was not rolled back:\n%s", now)
		}
		if left, _ := filepath.Glob(filepath.Join(dropins, "*~")); len(left) != 0 {
			t.Errorf("backups left beside the drop-in: %v", left)
		}
		if strings.Count(tg.Log(), "Server listening on") != restarts {
			t.Error("sshd was reloaded after a refused drop-in")
		}
		loginThroughTandem(t)
	})

	// The firewall rule: written, checked with nft -c, not loaded (the
	// test must not change this machine's firewall).
	t.Run("nftables ruleset", func(t *testing.T) {
		testenv.RequireProgram(t, "nft")
		nftVars := map[string]any{}
		for k, v := range vars {
			nftVars[k] = v
		}
		ruleset := filepath.Join(dir, "nftables.d", "tandem-ssh.nft")
		nftVars["tandem_target_nftables"] = true
		nftVars["tandem_target_nftables_apply"] = false
		nftVars["tandem_target_nftables_file"] = ruleset
		nftVars["tandem_target_ssh_port"] = sshdPort
		nftVars["tandem_target_gateway_addresses"] = []string{"127.0.0.1", "::1", "192.0.2.0/28"}
		if changed := play.mustApply(t, nftVars); changed != 2 {
			t.Errorf("nftables: changed=%d, want 2 (directory and ruleset)", changed)
		}
		b, err := os.ReadFile(ruleset)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ip saddr { 127.0.0.1, 192.0.2.0/28 } tcp dport " + strconv.Itoa(sshdPort) + " accept", "ip6 saddr { ::1 } tcp dport", "tcp dport " + strconv.Itoa(sshdPort) + " counter drop"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("ruleset lacks %q:\n%s", want, b)
			}
		}
		nftVars["tandem_target_gateway_addresses"] = []string{"127.0.0.1", "300.0.0.1"}
		if a := play.run(t, nftVars); a.Code == 0 {
			t.Errorf("a ruleset nft -c refuses was written\n%s", a.Output)
		}
		if after, _ := os.ReadFile(ruleset); string(after) != string(b) {
			t.Error("the refused ruleset replaced the good one")
		}
	})

	// The gateway's own certificates carry its egress addresses: with
	// another address configured, the target refuses them.
	t.Run("gateway certificates carry source-address", func(t *testing.T) {
		cfg.Gateway.EgressAddresses = []string{"127.0.0.2"}
		writeConfig(t, cfgPath, cfg)
		if out, errOut, err := gw.Run(t, "reload", "-c", cfgPath, "--by", "alice"); err != nil {
			t.Fatalf("tandem reload: %v\n%s%s", err, out, errOut)
		}
		before := tg.AcceptedLogins()
		if r := alice.SSH(t, "db1", "echo", "in"); r.Code == 0 {
			t.Errorf("a session certificate for 127.0.0.2 logged in from 127.0.0.1\n%s", r)
		}
		if tg.AcceptedLogins() != before {
			t.Error("sshd accepted the gateway's certificate from outside its source-address")
		}
		if !strings.Contains(tg.Log(), "not from a permitted source address (127.0.0.1)") {
			t.Errorf("sshd's log does not refuse the gateway's certificate for its source address:\n%s", tg.Log())
		}
	})
}

// TestTargetRoleProfiles: the algorithm lists in the role's defaults are
// the crypto profiles of internal/cryptoprofile, so targets and gateway
// agree.
func TestTargetRoleProfiles(t *testing.T) {
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "ansible", "roles", "tandem_target", "defaults", "main.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Profiles map[string]struct {
			Kex     []string `yaml:"kex"`
			Ciphers []string `yaml:"ciphers"`
			MACs    []string `yaml:"macs"`
		} `yaml:"tandem_target_crypto_profiles"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, name := range cryptoprofile.Names {
		p, err := cryptoprofile.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := d.Profiles[name]
		if !ok {
			t.Errorf("profile %s missing from the role's defaults", name)
			continue
		}
		for _, c := range []struct {
			what       string
			role, code []string
		}{{"kex", r.Kex, p.KeyExchanges}, {"ciphers", r.Ciphers, p.Ciphers}, {"macs", r.MACs, p.MACs}} {
			if strings.Join(c.role, ",") != strings.Join(c.code, ",") {
				t.Errorf("profile %s %s: role %v, gateway %v", name, c.what, c.role, c.code)
			}
		}
	}
	if len(d.Profiles) != len(cryptoprofile.Names) {
		t.Errorf("role has %d profiles, the gateway %d", len(d.Profiles), len(cryptoprofile.Names))
	}
}

// TestDeployGatewayRole applies the tandem_gateway role to a directory
// standing in for / (no systemd here: tandem_gateway_manage_service off,
// the service's user is root), checks what it wrote, and applies it again:
// the second run changes nothing. The configuration it wrote passes
// tandem config check, and a role run whose configuration the gateway
// refuses changes nothing.
func TestDeployGatewayRole(t *testing.T) {
	bin, dir, keysDir := prepare(t)
	_, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	root := mkdir(t, dir, "root")
	in := func(p string) string { return filepath.Join(root, p) }
	// What every Debian system has already.
	for _, d := range []string{"usr/bin", "etc/systemd/system"} {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "siem-ca.pem")
	writeTestFile(t, caFile, "-----BEGIN CERTIFICATE-----\n(the collector's CA)\n-----END CERTIFICATE-----\n")
	vars := map[string]any{
		"tandem_gateway_binary_src":       bin,
		"tandem_gateway_binary":           in("usr/bin/tandem"),
		"tandem_gateway_config_dir":       in("etc/tandem"),
		"tandem_gateway_data_dir":         in("var/lib/tandem"),
		"tandem_gateway_keys_dir":         in("var/lib/tandem-keys"),
		"tandem_gateway_witness_dir":      in("var/lib/tandem-witness"),
		"tandem_gateway_unit_dir":         in("etc/systemd/system"),
		"tandem_gateway_create_user":      false,
		"tandem_gateway_user":             "root",
		"tandem_gateway_group":            "root",
		"tandem_gateway_manage_service":   false,
		"tandem_gateway_listen":           "127.0.0.1:22",
		"tandem_gateway_egress_addresses": []string{"127.0.0.1"},
		"tandem_gateway_syslog": map[string]any{"collectors": []map[string]string{{
			"name": "siem", "addr": "siem.example.org:6514", "ca_file": in("etc/tandem/siem-ca.pem"),
			"cert_file": in("etc/tandem/gw.pem"), "key_file": in("etc/tandem/gw.key"),
		}}},
		"tandem_gateway_files": []map[string]string{{"src": caFile, "dest": in("etc/tandem/siem-ca.pem")}},
		"tandem_gateway_settings": map[string]any{
			"tenants": []map[string]string{{"id": tenant, "name": "Gesamtschule Nord"}},
			"persons": []map[string]any{{"id": "alice", "name": "Alice Adler", "email": "alice@example.org", "roles": []string{"admin"},
				"keys":        []map[string]string{{"key": alicePub, "added": day(-1)}},
				"obligations": map[string]string{"confidentiality_signed": day(-10), "training_valid_until": day(300)}}},
			"roles": []map[string]any{{"id": "admin", "allow": []map[string]any{{"hosts": map[string]string{"tenant": tenant}, "logins": []string{"root"}}}}},
		},
	}
	play := newLocalPlay(t, dir, "tandem_gateway")
	if changed := play.mustApply(t, vars); changed == 0 {
		t.Fatal("the first run changed nothing")
	}

	cfgFile := in("etc/tandem/tandem.yaml")
	if out, errOut, err := testenv.RunTandem(t, in("usr/bin/tandem"), "config", "check", "--config", cfgFile); err != nil {
		t.Fatalf("the installed tandem does not accept the written configuration: %v\n%s%s", err, out, errOut)
	}
	c, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.DataDir != in("var/lib/tandem") || c.Recording.KEKFile != in("var/lib/tandem-keys/tandem.kek") ||
		c.Audit.SigningKey != in("var/lib/tandem-keys/audit.key") || c.Audit.WitnessFile != in("var/lib/tandem-witness/witness.log") ||
		strings.Join(c.Gateway.EgressAddresses, ",") != "127.0.0.1" || len(c.Syslog.Collectors) != 1 || c.Log.Format != "json" || len(c.Persons) != 1 {
		t.Errorf("configuration as written:\n%+v\n%+v\n%+v", c.Gateway, c.Audit, c.Recording)
	}
	for path, mode := range map[string]os.FileMode{
		"etc/tandem": 0o750, "etc/tandem/tandem.yaml": 0o640, "etc/tandem/siem-ca.pem": 0o640,
		"var/lib/tandem": 0o700, "var/lib/tandem-keys": 0o700, "var/lib/tandem-witness": 0o700, "usr/bin/tandem": 0o755,
		"etc/systemd/system/tandem.service": 0o644, "etc/systemd/system/tandem.service.d/10-paths.conf": 0o644,
		"etc/systemd/system/tandem.service.d/20-bind-privileged.conf": 0o644,
	} {
		fi, err := os.Stat(in(path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	repo, _ := testenv.RepoRoot()
	for installed, src := range map[string]string{"etc/systemd/system/tandem.service": "deploy/systemd/tandem.service",
		"etc/systemd/system/tandem.service.d/20-bind-privileged.conf": "deploy/systemd/bind-privileged.conf"} {
		a, _ := os.ReadFile(in(installed))
		b, _ := os.ReadFile(filepath.Join(repo, src))
		if string(a) != string(b) || len(a) == 0 {
			t.Errorf("%s is not %s", installed, src)
		}
	}
	if b, _ := os.ReadFile(in("etc/systemd/system/tandem.service.d/10-paths.conf")); !strings.Contains(string(b), "ExecStart="+in("usr/bin/tandem")+" serve --config "+cfgFile) {
		t.Errorf("the paths drop-in does not start the installed binary:\n%s", b)
	}

	t.Run("second run changes nothing", func(t *testing.T) {
		if changed := play.mustApply(t, vars); changed != 0 {
			t.Errorf("second run: changed=%d, want 0", changed)
		}
	})

	t.Run("refused configuration changes nothing", func(t *testing.T) {
		before, _ := os.ReadFile(cfgFile)
		bad := map[string]any{}
		for k, v := range vars {
			bad[k] = v
		}
		bad["tandem_gateway_egress_addresses"] = []string{"gw.example.org"}
		a := play.run(t, bad)
		if a.Code == 0 {
			t.Fatalf("a configuration tandem config check refuses was installed\n%s", a.Output)
		}
		if !strings.Contains(a.Output, "egress_addresses") {
			t.Errorf("the failure does not name the problem:\n%s", a.Output)
		}
		if after, _ := os.ReadFile(cfgFile); string(after) != string(before) {
			t.Error("the refused configuration replaced the one in place")
		}
	})

	t.Run("port from 1024 drops the capability", func(t *testing.T) {
		high := map[string]any{}
		for k, v := range vars {
			high[k] = v
		}
		high["tandem_gateway_listen"] = "127.0.0.1:2222"
		play.mustApply(t, high)
		if _, err := os.Stat(in("etc/systemd/system/tandem.service.d/20-bind-privileged.conf")); !os.IsNotExist(err) {
			t.Errorf("the capability drop-in is still there: %v", err)
		}
	})
}
