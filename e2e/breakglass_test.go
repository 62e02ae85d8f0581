package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestBreakglass is emergency access end to end (M26): an emergency CA
// split between alice (age identity), bob and carol (SSH ed25519 keys);
// the target trusts it through target-config; with the gateway stopped,
// alice's and bob's shares issue a certificate and plain ssh reaches the
// target as root with it, the target's log naming both; one share alone,
// two shares of one person and a share opened with another's key are
// refused; /readyz warns until `tandem breakglass report` has imported the
// record, which then is a breakglass.used event in the audit log.
func TestBreakglass(t *testing.T) {
	bin, dir, keysDir := prepare(t)
	cfgPath := filepath.Join(dir, "tandem.yaml")
	_, alicePub := testenv.KeyPair(t, keysDir, "alice", "ecdsa")
	bobKey, bobPub := testenv.KeyPair(t, keysDir, "bob", "ed25519")
	carolKey, carolPub := testenv.KeyPair(t, keysDir, "carol", "ed25519")
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	aliceAge, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	aliceID := filepath.Join(keysDir, "alice.age")
	writeTestFile(t, aliceID, aliceAge.String()+"\n")

	sshdPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	c := fixtureConfig(dir, gwPort)
	alice := testenv.Person("alice", alicePub, "admin")
	alice.AgeRecipient = aliceAge.Recipient().String() // her SSH key is ECDSA: age cannot encrypt to it
	c.Persons = []config.Person{alice, testenv.Person("bob", bobPub, "admin"), testenv.Person("carol", carolPub, "admin")}
	c.Hosts = []config.Host{host("db1", config.Test, fmt.Sprintf("127.0.0.1:%d", sshdPort), hostPub)}
	c.Monitoring.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	writeConfig(t, cfgPath, c)
	tandem := func(args ...string) (string, error) {
		t.Helper()
		out, errOut, err := testenv.RunTandem(t, bin, append(args, "--config", cfgPath)...)
		return out + errOut, err
	}

	out, err := tandem("breakglass", "init", "--holders", "alice,bob,carol", "--threshold", "2")
	if err != nil {
		t.Fatalf("breakglass init: %v\n%s", err, out)
	}
	bgDir := filepath.Join(dir, "data", "breakglass")
	share := func(p string) string { return filepath.Join(bgDir, "shares", p+".share") }
	for _, p := range []string{"alice", "bob", "carol"} {
		if fi, err := os.Stat(share(p)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("share of %s: %v %v", p, fi, err)
		}
	}
	caLine, err := os.ReadFile(filepath.Join(bgDir, "ca.pub"))
	if err != nil {
		t.Fatal(err)
	}
	emergencyCA := strings.TrimSpace(string(caLine))
	if out, err := tandem("target-config"); err != nil || !strings.Contains(out, emergencyCA) {
		t.Fatalf("target-config does not name the emergency CA %q: %v\n%s", emergencyCA, err, out)
	}
	if out, err := tandem("breakglass", "init", "--holders", "alice,bob", "--threshold", "2"); err == nil {
		t.Fatalf("a second init replaced the emergency CA:\n%s", out)
	}

	target := testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey,
		UserCA: caPublic(t, bin, cfgPath, "user") + "\n" + emergencyCA})

	// The gateway ran and is down now.
	gw := testenv.StartGateway(t, bin, cfgPath, gwPort)
	gw.Stop(t)

	issue := func(out string, pairs ...string) (string, error) {
		args := []string{"breakglass", "issue", "--login", "root", "--host", "db1", "--for", "30m",
			"--reason", "INC-19: gateway down", "--out", filepath.Join(dir, out)}
		for i := 0; i < len(pairs); i += 2 {
			args = append(args, "--share", pairs[i], "--identity", pairs[i+1])
		}
		return tandem(args...)
	}
	refusals := []struct {
		name  string
		pairs []string
		want  string
	}{
		{"one share", []string{share("alice"), aliceID}, "two different persons"},
		{"alice twice", []string{share("alice"), aliceID, share("alice"), aliceID}, "two shares of alice"},
		{"bob's share with alice's key", []string{share("alice"), aliceID, share("bob"), aliceID}, "not theirs"},
		{"bob's share with carol's key", []string{share("alice"), aliceID, share("bob"), carolKey}, "not theirs"},
	}
	for i, r := range refusals {
		if out, err := issue(fmt.Sprintf("refused%d", i), r.pairs...); err == nil || !strings.Contains(out, r.want) {
			t.Errorf("%s: want a refusal naming %q, got %v:\n%s", r.name, r.want, err, out)
		}
	}
	if out, err := tandem("breakglass", "issue", "--login", "root", "--host", "db1", "--for", "2h", "--reason", "x",
		"--share", share("alice"), "--identity", aliceID, "--share", share("bob"), "--identity", bobKey); err == nil || !strings.Contains(out, "at most 1h") {
		t.Errorf("--for 2h: want a refusal, got %v:\n%s", err, out)
	}
	if recs, _ := filepath.Glob(filepath.Join(bgDir, "records", "*.json")); len(recs) != 0 {
		t.Fatalf("refused issues wrote records: %v", recs)
	}

	out, err = issue("db1-emergency", share("alice"), aliceID, share("bob"), bobKey)
	if err != nil {
		t.Fatalf("breakglass issue: %v\n%s", err, out)
	}
	if !strings.Contains(out, "tandem breakglass persons=alice,bob host=db1 reason=INC-19: gateway down") {
		t.Fatalf("issue output names no key id:\n%s", out)
	}
	client := testenv.NewClient(t, mkdir(t, dir, "emergency"), testenv.ClientOpts{
		Key: filepath.Join(dir, "db1-emergency"), KnownHosts: []string{target.KnownHostsLine()},
		Hosts: []testenv.HostEntry{{Name: "db1", HostName: "127.0.0.1", Port: sshdPort, User: "root"}},
	})
	if r := client.SSH(t, "db1", "id -un"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "root" {
		t.Fatalf("ssh with the emergency certificate: %s", r)
	}
	if ids := strings.Join(target.AcceptedCertIDs(), "\n"); !strings.Contains(ids, "tandem breakglass persons=alice,bob host=db1") {
		t.Fatalf("the target's log does not name the emergency certificate: %q\n%s", ids, target.Log())
	}
	// A certificate of the plain key without the shares does not exist:
	// the same key without its certificate is refused.
	os.Remove(filepath.Join(dir, "db1-emergency-cert.pub"))
	if r := client.SSH(t, "db1", "true"); r.Code == 0 {
		t.Fatal("the emergency key logged in without its certificate")
	}

	// Back: loud until reported.
	gw = testenv.StartGateway(t, bin, cfgPath, gwPort)
	ready := "http://" + c.Monitoring.Listen + "/readyz"
	if body := get(t, ready, 200); !strings.Contains(body, "warn breakglass: 1 emergency certificate(s) issued and not reported") {
		t.Fatalf("/readyz does not warn of the emergency certificate: %q", body)
	}
	out, err = tandem("breakglass", "report")
	if err != nil || !strings.Contains(out, "imported serial=") || !strings.Contains(out, "persons=alice,bob login=root host=db1") {
		t.Fatalf("breakglass report: %v\n%s", err, out)
	}
	if !testenv.WaitFor(10*time.Second, func() bool {
		out, _ := tandem("audit", "show", "--type", "breakglass.used")
		return strings.Contains(out, "breakglass.used person=alice host=root@db1") && strings.Contains(out, `co_holders="bob"`)
	}) {
		out, _ := tandem("audit", "show", "--type", "breakglass.used")
		t.Fatalf("no breakglass.used event in the audit log:\n%s\ngateway: %s", out, gw.Tail())
	}
	if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(get(t, ready, 200), "ok breakglass") }) {
		t.Fatalf("/readyz still warns after the report: %q", get(t, ready, 200))
	}
	if out, err := tandem("breakglass", "report"); err != nil || strings.Contains(out, "imported") || !strings.Contains(out, "used     serial=") {
		t.Fatalf("a second report imported again or lost the record: %v\n%s", err, out)
	}
}
