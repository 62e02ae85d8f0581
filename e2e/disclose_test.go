package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestDisclosure: a lawful disclosure (M15) on a real gateway. bob opens
// a case for alice's session with the recipient's OpenPGP key on standard
// input; bob may not approve his own case; erin alone does not make it
// approved, nor does erin twice; carol, the data protection officer,
// completes it. The operator's export is decrypted by gpg, unpacked and
// verified with the log's public key; a second case to an age key is
// decrypted by the age program. Every step is in the audit log.
func TestDisclosure(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "gpg")
	testenv.RequireProgram(t, "age")
	testenv.RequireProgram(t, "age-keygen")
	e := newRequestEnv(t, rqOpts{Hosts: []rqHost{{Name: "web1", Env: "test"}}})
	e.execOK(t, "alice", "web1")
	session := lastSession(t, e)

	// bob and erin may handle cases; carol is the DPO.
	editConfig(t, e.Config, func(c *config.Config) {
		for i := range c.Roles {
			switch c.Roles[i].ID {
			case "lead":
				c.Roles[i].Permissions = append(c.Roles[i].Permissions, config.PermissionDisclose)
			case "stage-lead":
				c.Roles[i].Permissions = append(c.Roles[i].Permissions, config.PermissionDPO)
			}
		}
		c.Tenants[0].Contact = "it@schule-nord.example"
	})
	if out, errOut, err := e.GW.Run(t, "reload", "--config", e.Config, "--by", "bob"); err != nil {
		t.Fatalf("tandem reload: %v\n%s%s", err, out, errOut)
	}
	if !testenv.WaitFor(10*time.Second, func() bool { return strings.Contains(e.GW.Stderr.String(), "configuration reloaded") }) {
		t.Fatalf("no reload:\n%s", e.GW.Tail())
	}

	// The recipient's OpenPGP key, made by gpg in a home of its own.
	gnupg := mkdir(t, e.Dir, "gnupg")
	if err := os.Chmod(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	gpg := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--homedir", gnupg, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	gpg(nil, "--quick-generate-key", "LKA Nord <lka@example.org>", "ed25519", "default", "never")
	gpg(nil, "--quick-add-key", gpgFingerprint(t, gpg(nil, "--list-keys", "--with-colons")), "cv25519", "encr", "never")
	armored := gpg(nil, "--armor", "--export", "lka@example.org")

	open := func(recipient []string, stdin []byte) string {
		t.Helper()
		args := append([]string{"gw", "disclose", "request", "--tenant", tenant, "--scope", "session:" + session,
			"--legal-basis", "AG-Nord-12-Gs-345/26"}, recipient...)
		args = append(args, "--reason", "investigation 4711")
		r := e.client(t, "bob").RunInput(t, bytes.NewReader(stdin), "ssh", args...)
		m := regexp.MustCompile(`disclosure case ([0-9a-f]{8}) opened`).FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil || !strings.Contains(r.Stdout, "notify: it@schule-nord.example") {
			t.Fatalf("bob: disclose request: %s\n%s", r, e.GW.Tail())
		}
		return m[1]
	}
	id := open([]string{"--recipient-key", "-"}, armored)

	if r := e.gw(t, "bob", "disclose", "approve", id); r.Code == 0 || !strings.Contains(r.Stderr, "may not approve") {
		t.Errorf("bob approved his own case: %s", r)
	}
	if r := e.gw(t, "alice", "disclose", "approve", id); r.Code == 0 || !strings.Contains(r.Stderr, "may not handle disclosure cases") {
		t.Errorf("alice, without the permission, approved: %s", r)
	}
	if r := e.gw(t, "erin", "disclose", "approve", id); r.Code != 0 || !strings.Contains(r.Stdout, "none by the data protection officer") {
		t.Fatalf("erin: %s", r)
	}
	if r := e.gw(t, "erin", "disclose", "approve", id); r.Code == 0 || !strings.Contains(r.Stderr, "already") {
		t.Errorf("erin approved twice: %s", r)
	}
	export := func(id, file string) string {
		t.Helper()
		out, errOut, err := e.GW.Run(t, "disclose", "export", "--config", e.Config, id, "--out", file)
		if err != nil {
			return errOut
		}
		return out
	}
	early := filepath.Join(e.Dir, "early.tar.gpg")
	if out := export(id, early); !strings.Contains(out, "1 of 2 approvals") {
		t.Errorf("an export with one approval: %s", out)
	}
	if _, err := os.Stat(early); err == nil {
		t.Error("the refused export left a file")
	}
	if r := e.gw(t, "carol", "disclose", "approve", id); r.Code != 0 || !strings.Contains(r.Stdout, "the case is approved") {
		t.Fatalf("carol: %s", r)
	}

	file := filepath.Join(e.Dir, "case.tar.gpg")
	var out string
	// The session's last records and the approvals need a checkpoint.
	if !testenv.WaitFor(30*time.Second, func() bool {
		out = export(id, file)
		return strings.Contains(out, "exported to")
	}) {
		t.Fatalf("tandem disclose export: %s", out)
	}
	t.Logf("%s", out)
	tarball := gpg(nil, "--decrypt", file)
	dir := untar(t, tarball, "gpg")
	pub := filepath.Join(e.Dir, "audit.pub")
	key, _, err := e.GW.Run(t, "audit", "pubkey", "--config", e.Config)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, pub, key)
	if o, eo, err := e.GW.Run(t, "disclose", "verify", dir, "--pubkey", pub); err != nil || !strings.Contains(o, "result:        OK") {
		t.Fatalf("disclose verify: %v\n%s%s", err, o, eo)
	}
	events, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if !bytes.Contains(events, []byte(`"session":"`+session+`"`)) || !bytes.Contains(events, []byte("echo")) {
		t.Errorf("events.jsonl lacks the session and its command:\n%s", events)
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings", session+".cast")); err != nil {
		t.Errorf("the session's recording is not in the export: %v", err)
	}
	// A changed file no longer verifies.
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), append(events, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.GW.Run(t, "disclose", "verify", dir, "--pubkey", pub); err == nil {
		t.Error("a changed export verified")
	}

	// A second case to an age key, decrypted by the age program.
	identity := filepath.Join(e.Dir, "age.key")
	if o, err := exec.Command("age-keygen", "-o", identity).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v %s", err, o)
	}
	rcpt, err := exec.Command("age-keygen", "-y", identity).Output()
	if err != nil {
		t.Fatal(err)
	}
	id2 := open([]string{"--recipient", strings.TrimSpace(string(rcpt))}, nil)
	for _, p := range []string{"carol", "erin"} {
		if r := e.gw(t, p, "disclose", "approve", id2); r.Code != 0 {
			t.Fatalf("%s: %s", p, r)
		}
	}
	file2 := filepath.Join(e.Dir, "case2.tar.age")
	if !testenv.WaitFor(30*time.Second, func() bool {
		out = export(id2, file2)
		return strings.Contains(out, "exported to")
	}) {
		t.Fatalf("tandem disclose export: %s", out)
	}
	plain, err := exec.Command("age", "--decrypt", "-i", identity, file2).Output()
	if err != nil {
		t.Fatalf("age --decrypt: %v", err)
	}
	dir2 := untar(t, plain, "age")
	if o, eo, err := e.GW.Run(t, "disclose", "verify", dir2, "--pubkey", pub); err != nil {
		t.Fatalf("disclose verify (age): %v\n%s%s", err, o, eo)
	}

	// Every step is in the log.
	if !testenv.WaitFor(20*time.Second, func() bool {
		o, _, _ := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "disclosure.requested,disclosure.approved,disclosure.exported")
		return strings.Count(o, "disclosure.requested") == 2 && strings.Count(o, "disclosure.approved") == 4 && strings.Count(o, "disclosure.exported") == 2
	}) {
		o, _, _ := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "disclosure.requested,disclosure.approved,disclosure.exported")
		t.Errorf("the disclosure events in the log:\n%s", o)
	}
}

// lastSession is the id of the newest session.start in the log.
func lastSession(t *testing.T, e *rqEnv) string {
	t.Helper()
	var id string
	if !testenv.WaitFor(20*time.Second, func() bool {
		out, _, err := e.GW.Run(t, "audit", "show", "--config", e.Config, "--type", "session.start", "--json")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Session string `json:"session"`
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.Session != "" {
				id = r.Session
			}
		}
		return id != ""
	}) {
		t.Fatal("no session.start in the audit log")
	}
	return id
}

// gpgFingerprint is the first fpr in gpg's --with-colons output.
func gpgFingerprint(t *testing.T, colons []byte) string {
	t.Helper()
	for _, l := range strings.Split(string(colons), "\n") {
		if f := strings.Split(l, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9]
		}
	}
	t.Fatalf("no fingerprint in:\n%s", colons)
	return ""
}

// untar unpacks a tar archive into a new directory.
func untar(t *testing.T, archive []byte, name string) string {
	t.Helper()
	dir := mkdir(t, t.TempDir(), name)
	cmd := exec.Command("tar", "-x", "-C", dir)
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, out)
	}
	return dir
}

// editConfig changes the configuration file.
func editConfig(t *testing.T, path string, edit func(*config.Config)) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	writeConfig(t, path, cfg)
}
