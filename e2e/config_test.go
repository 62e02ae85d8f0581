package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// validConfig is a complete configuration in block style, one field per
// line, so that each broken variant can point at the line at fault. The
// placeholders are replaced with real keys.
const validConfig = `gateway:
  listen: "127.0.0.1:2222"
  data_dir: "DATADIR"
  crypto_profile: bsi
tenants:
  - id: schule-nord
    name: Gesamtschule Nord
persons:
  - id: alice
    name: Alice Adler
    email: alice@example.org
    roles: [admin]
    keys:
      - key: "ALICEKEY"
        added: ADDED
    obligations:
      confidentiality_signed: 2026-01-10
      training_valid_until: 2099-12-31
  - id: bob
    name: Bob Berg
    email: bob@example.org
    roles: [admin]
    keys:
      - key: "BOBKEY"
        added: ADDED
    obligations:
      confidentiality_signed: 2026-01-10
      training_valid_until: 2099-12-31
roles:
  - id: admin
    allow:
      - hosts:
          tenant: schule-nord
        logins: [root]
hosts:
  - name: db1
    address: "127.0.0.1:2200"
    tenant: schule-nord
    environment: test
    host_key: "HOSTKEY"
`

// TestConfigCheck runs `tandem config check` on a valid file and on broken
// variants of it. A broken file must be refused with FILE:LINE: reason,
// where LINE is one of the lines marked "#!" in the variant.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "ssh-keygen")
	bin := testenv.BuildTandem(t)
	dir := t.TempDir()
	_, alice := testenv.KeyPair(t, dir, "alice", "ecdsa")
	_, bob := testenv.KeyPair(t, dir, "bob", "ed25519")
	_, host := testenv.KeyPair(t, dir, "host", "ecdsa")
	valid := strings.NewReplacer(
		"DATADIR", filepath.Join(dir, "data"),
		"ALICEKEY", alice, "BOBKEY", bob, "HOSTKEY", host,
		"ADDED", day(-10),
	).Replace(validConfig)

	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(dir, "valid.yaml")
		writeTestFile(t, path, valid)
		out, errOut, err := testenv.RunTandem(t, bin, "config", "check", "--config", path)
		if err != nil || !strings.Contains(out, "ok") {
			t.Fatalf("config check of a valid file: err=%v\nstdout: %s\nstderr: %s", err, out, errOut)
		}
	})

	// Each case edits the valid file: replace old (which must occur) with
	// new. Lines of new that end in "#!" are where the error may be
	// reported; keywords, if any, must appear in the reason (any one).
	cases := []struct {
		name, old, new string
		keywords       []string
	}{
		{
			name: "bad yaml",
			// YAML parsers report such errors at the enclosing block.
			old:      "tenants:\n  - id: schule-nord\n    name: Gesamtschule Nord\n",
			new:      "tenants: #!\n  - id: schule-nord #!\n   name: Gesamtschule Nord #!\n",
			keywords: nil,
		},
		{
			name:     "unknown key",
			old:      "  crypto_profile: bsi\n",
			new:      "  crypto_profile: bsi\n  colour: blue #!\n",
			keywords: []string{"colour"},
		},
		{
			name:     "duplicate person key",
			old:      "      - key: \"" + bob + "\"\n",
			new:      "      - key: \"" + alice + "\" #!\n",
			keywords: []string{"key"},
		},
		{
			name:     "person without email",
			old:      "  - id: bob\n    name: Bob Berg\n    email: bob@example.org\n",
			new:      "  - id: bob #!\n    name: Bob Berg #!\n",
			keywords: []string{"email", "e-mail"},
		},
		{
			name:     "unknown tenant",
			old:      "    tenant: schule-nord\n    environment: test\n",
			new:      "    tenant: schule-sued #!\n    environment: test\n",
			keywords: []string{"tenant", "schule-sued"},
		},
		{
			name:     "unknown role",
			old:      "    email: bob@example.org\n    roles: [admin]\n",
			new:      "    email: bob@example.org\n    roles: [wizard] #!\n",
			keywords: []string{"role", "wizard"},
		},
		{
			name:     "bad crypto_profile",
			old:      "  crypto_profile: bsi\n",
			new:      "  crypto_profile: weak #!\n",
			keywords: []string{"crypto_profile", "crypto profile", "weak"},
		},
		{
			name:     "host without host_key or host_ca",
			old:      "  - name: db1\n    address: \"127.0.0.1:2200\"\n    tenant: schule-nord\n    environment: test\n    host_key: \"" + host + "\"\n",
			new:      "  - name: db1 #!\n    address: \"127.0.0.1:2200\"\n    tenant: schule-nord\n    environment: test\n",
			keywords: []string{"host_key", "host key", "host_ca"},
		},
		{
			name:     "duplicate person id",
			old:      "  - id: bob\n",
			new:      "  - id: alice #!\n",
			keywords: []string{"alice"},
		},
		{
			name:     "shared account",
			old:      "  - id: bob\n    name: Bob Berg\n",
			new:      "  - id: bob #!\n    name: Bob Berg\n    account: shared #!\n",
			keywords: []string{"account", "shared"},
		},
		{
			name:     "invalid date",
			old:      "      confidentiality_signed: 2026-01-10\n      training_valid_until: 2099-12-31\nroles:",
			new:      "      confidentiality_signed: 2026-13-45 #!\n      training_valid_until: 2099-12-31\nroles:",
			keywords: []string{"2026-13-45", "date", "confidentiality_signed"},
		},
		{
			name:     "env_allow lets clients set anything",
			old:      "  crypto_profile: bsi\n",
			new:      "  crypto_profile: bsi\n  env_allow: [LANG, \"*\"] #!\n",
			keywords: []string{"BASH_ENV"},
		},
		{
			name:     "env_allow reaches the dynamic loader",
			old:      "  crypto_profile: bsi\n",
			new:      "  crypto_profile: bsi\n  env_allow: [\"L*\"] #!\n",
			keywords: []string{"LD_PRELOAD"},
		},
		{
			name: "one address for a test and a production host",
			old:  "  - name: db1\n    address: \"127.0.0.1:2200\"\n    tenant: schule-nord\n    environment: test\n    host_key: \"" + host + "\"\n",
			new: "  - name: db1\n    address: \"127.0.0.1:2200\"\n    tenant: schule-nord\n    environment: test\n    host_key: \"" + host + "\"\n" +
				"  - name: prod1\n    address: \"127.0.0.1:2200\" #!\n    tenant: schule-nord\n    environment: production\n    host_key: \"" + host + "\"\n",
			keywords: []string{"also the address of host db1"},
		},
		{
			name:     "selector without criterion",
			old:      "      - hosts:\n          tenant: schule-nord\n",
			new:      "      - hosts: {} #!\n",
			keywords: []string{"host", "selector"},
		},
	}
	lineRef := regexp.MustCompile(`(?m)^(.+?):(\d+): (.*)$`)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(valid, tc.old) {
				t.Fatalf("test bug: %q not in the valid config", tc.old)
			}
			content := strings.Replace(valid, tc.old, tc.new, 1)
			var marked []int
			for n, l := range strings.Split(content, "\n") {
				if strings.HasSuffix(l, "#!") {
					marked = append(marked, n+1)
				}
			}
			path := filepath.Join(dir, fmt.Sprintf("broken-%d.yaml", i))
			writeTestFile(t, path, content)

			out, errOut, err := testenv.RunTandem(t, bin, "config", "check", "--config", path)
			report := fmt.Sprintf("stdout: %s\nstderr: %s\nfile:\n%s", out, errOut, numbered(content))
			if err == nil {
				t.Fatalf("config check accepted a file with %s\n%s", tc.name, report)
			}
			var lines []int
			var reasons []string
			for _, m := range lineRef.FindAllStringSubmatch(errOut, -1) {
				if m[1] != path {
					continue
				}
				n, _ := strconv.Atoi(m[2])
				lines = append(lines, n)
				reasons = append(reasons, m[3])
			}
			if len(lines) == 0 {
				t.Fatalf("stderr has no %q line\n%s", path+":LINE: reason", report)
			}
			hit := -1
			for j, n := range lines {
				if slices.Contains(marked, n) {
					hit = j
					break
				}
			}
			if hit < 0 {
				t.Fatalf("reported lines %v, want one of %v\n%s", lines, marked, report)
			}
			if len(tc.keywords) > 0 && !hasAny(reasons[hit], tc.keywords...) {
				t.Errorf("reason %q names none of %q\n%s", reasons[hit], tc.keywords, report)
			}
		})
	}
}

// numbered prefixes each line with its number, for failure messages.
func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, l)
	}
	return b.String()
}

// TestHelpers checks the commands that set up clients and targets, the
// gateway's host certificate, and that the gateway's keys are private
// files that survive a restart.
func TestHelpers(t *testing.T) {
	t.Parallel()
	bin := testenv.BuildTandem(t)
	dir := t.TempDir()
	_, alice := testenv.KeyPair(t, dir, "alice", "ecdsa")
	_, hostKey := testenv.KeyPair(t, dir, "host", "ecdsa")
	port := testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "tandem.yaml")
	cfg := fixtureConfig(dir, port)
	cfg.Persons = []config.Person{testenv.Person("alice", alice, "admin")}
	cfg.Hosts = []config.Host{host("db1", config.Test, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), hostKey)}
	writeConfig(t, cfgPath, cfg)

	userCA := caPublic(t, bin, cfgPath, "user")
	hostCA := caPublic(t, bin, cfgPath, "host")
	for kind, line := range map[string]string{"user": userCA, "host": hostCA} {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("ca public --kind %s: %q is not an authorized_keys line: %v", kind, line, err)
		}
		if k.Type() != "ecdsa-sha2-nistp384" {
			t.Errorf("ca public --kind %s: key type %s, want ecdsa-sha2-nistp384", kind, k.Type())
		}
	}
	if userCA == hostCA {
		t.Errorf("user CA and host CA are the same key")
	}

	gw := testenv.StartGateway(t, bin, cfgPath, port)

	t.Run("client-config", func(t *testing.T) {
		out, errOut, err := gw.Run(t, "client-config", "--config", cfgPath)
		if err != nil {
			t.Fatalf("client-config: %v\nstderr: %s", err, errOut)
		}
		line := certAuthorityLine(t, gw)
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "ecdsa-sha2-nistp384" || f[3] != keyBlob(t, hostCA) {
			t.Fatalf("client-config's line %q: want @cert-authority PATTERNS ecdsa-sha2-nistp384 <host CA %q>\n%s", line, hostCA, out)
		}
		// The patterns must cover the gateway and the configured hosts.
		for _, name := range []string{fmt.Sprintf("[127.0.0.1]:%d", port), "db1"} {
			if !knownHostsPatternMatches(f[1], name) {
				t.Errorf("@cert-authority patterns %q do not cover %s", f[1], name)
			}
		}
		// The alias is "gw", as in the README and the gateway's join hints.
		if !strings.Contains(out, "\nHost gw\n") || !strings.Contains(out, "ProxyJump gw") {
			t.Errorf("client-config does not name the gateway gw:\n%s", out)
		}
		if _, errOut, err := gw.Run(t, "client-config", "--config", cfgPath, "--person", "nobody"); err == nil || !strings.Contains(errOut, "unknown person") {
			t.Errorf("client-config --person nobody: want a refusal naming the unknown person, got err %v, stderr %q", err, errOut)
		}
	})

	t.Run("target-config", func(t *testing.T) {
		out, errOut, err := gw.Run(t, "target-config", "--config", cfgPath)
		if err != nil {
			t.Fatalf("target-config: %v\nstderr: %s", err, errOut)
		}
		for _, want := range []string{"TrustedUserCAKeys", "PasswordAuthentication no"} {
			if !strings.Contains(out, want) {
				t.Errorf("target-config lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("gateway host certificate", func(t *testing.T) {
		cert := gatewayHostCert(t, gw.Addr)
		if cert == nil {
			t.Fatalf("the gateway presented no host certificate\ngateway output:\n%s", gw.Tail())
		}
		if cert.CertType != ssh.HostCert {
			t.Errorf("certificate type %d, want host certificate", cert.CertType)
		}
		for _, p := range []string{"127.0.0.1", "localhost"} {
			if !slices.Contains(cert.ValidPrincipals, p) {
				t.Errorf("host certificate principals %q lack %q", cert.ValidPrincipals, p)
			}
		}
		if got := string(ssh.MarshalAuthorizedKey(cert.SignatureKey)); !strings.Contains(got, keyBlob(t, hostCA)) {
			t.Errorf("host certificate signed by %q, want the host CA %q", strings.TrimSpace(got), hostCA)
		}
		now := uint64(time.Now().Unix())
		if cert.ValidAfter > now || (cert.ValidBefore != ssh.CertTimeInfinity && cert.ValidBefore <= now) {
			t.Errorf("host certificate not valid now: %d..%d", cert.ValidAfter, cert.ValidBefore)
		}
	})

	t.Run("data_dir is private and stable across restarts", func(t *testing.T) {
		first := privateFiles(t, gw.DataDir)
		cert1 := gatewayHostCert(t, gw.Addr)
		gw.Stop(t)

		gw2 := testenv.StartGateway(t, bin, cfgPath, port)
		gw2.Stop(t)
		gw3 := testenv.StartGateway(t, bin, cfgPath, port)
		second := privateFiles(t, gw3.DataDir)
		cert2 := gatewayHostCert(t, gw3.Addr)

		for path, sum := range first.keys {
			if second.keys[path] != sum {
				t.Errorf("key file %s changed across restarts", path)
			}
		}
		if got := caPublic(t, bin, cfgPath, "user"); got != userCA {
			t.Errorf("user CA changed across restarts: %q, was %q", got, userCA)
		}
		if got := caPublic(t, bin, cfgPath, "host"); got != hostCA {
			t.Errorf("host CA changed across restarts: %q, was %q", got, hostCA)
		}
		if cert1 != nil && cert2 != nil && string(cert1.Key.Marshal()) != string(cert2.Key.Marshal()) {
			t.Errorf("the gateway's host key changed across restarts")
		}
	})
}

// knownHostsPatternMatches reports whether a known_hosts pattern list
// (comma-separated, * and ? wildcards, ! negation) matches name, the way
// OpenSSH matches it.
func knownHostsPatternMatches(patterns, name string) bool {
	matched := false
	for _, p := range strings.Split(patterns, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		// Only * and ? are wildcards; brackets are literal ("[host]:port").
		re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(p)) + "$"
		if ok, _ := regexp.MatchString(re, name); ok {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// keyBlob returns the base64 key field of an authorized_keys line.
func keyBlob(t *testing.T, line string) string {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("not an authorized_keys line: %q", line)
	}
	return f[1]
}

// gatewayHostCert connects to the gateway asking only for host
// certificates and returns the one it presents (authentication itself is
// expected to fail: no user key is offered).
func gatewayHostCert(t *testing.T, addr string) *ssh.Certificate {
	t.Helper()
	var cert *ssh.Certificate
	cfg := &ssh.ClientConfig{
		User: "nobody",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if c, ok := key.(*ssh.Certificate); ok {
				cert = c
			}
			return nil
		},
		HostKeyAlgorithms: []string{
			ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA521v01,
			ssh.CertAlgoED25519v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
		},
		Timeout: 10 * time.Second,
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err == nil {
		_ = c.Close()
		t.Errorf("a client without any key authenticated to the gateway")
	}
	return cert
}

// dataDirState is what privateFiles found.
type dataDirState struct {
	keys map[string][32]byte // files holding a private key → SHA-256
}

// privateFiles walks the data directory: every file and directory must be
// closed to group and others (0600/0700; *.pub files may be 0644), and
// every file holding a private key must be closed. It returns the hashes of
// files that hold private keys.
func privateFiles(t *testing.T, dir string) dataDirState {
	t.Helper()
	st := dataDirState{keys: map[string][32]byte{}}
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// Public keys may be readable by all (they are published anyway),
		// but nobody else may change them; everything else is private.
		closed := fs.FileMode(0o077)
		if strings.HasSuffix(path, ".pub") {
			closed = 0o022
		}
		if info.Mode().Perm()&closed != 0 {
			t.Errorf("%s has mode %v, want no %v bits", path, info.Mode().Perm(), closed)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		n++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "PRIVATE KEY") {
			st.keys[path] = sha256.Sum256(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk data_dir %s: %v", dir, err)
	}
	if n == 0 {
		t.Fatalf("data_dir %s holds no files after the gateway started", dir)
	}
	t.Logf("data_dir: %d files, %d with private keys", n, len(st.keys))
	return st
}
