package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
	"tandem.dev/tandem/internal/vault"
)

func pubKey(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// retentionSetup writes a configuration whose DPO notices go to a
// command that keeps them in a file, and keys of every class for tenant
// t1 ten days ago and yesterday.
func retentionSetup(t *testing.T) (cfgPath, noticeFile string) {
	dir := t.TempDir()
	noticeFile = filepath.Join(dir, "notice.txt")
	c := testenv.NewConfig(2222, filepath.Join(dir, "data"), config.Tenant{ID: "t1"})
	rule := []config.Rule{{Hosts: config.Selector{Tenant: "t1"}, Logins: []string{"root"}}}
	c.Roles = []config.Role{{ID: "legal", Permissions: []string{config.PermissionHold}, Allow: rule}, {ID: "admin", Allow: rule}}
	c.Persons = []config.Person{testenv.Person("alice", pubKey(t), "legal"), testenv.Person("bob", pubKey(t), "admin")}
	c.Recording.KEKFile = filepath.Join(dir, "tandem.kek")
	c.Retention.DPO = config.DPO{To: "dpo@example.org", Command: []string{"/bin/sh", "-c", "cat > " + noticeFile}}
	cfgPath = filepath.Join(dir, "tandem.yaml")
	if err := testenv.WriteConfig(cfgPath, c); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := openVault(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []int{-10, -1} {
		for _, cl := range vault.Classes {
			if _, _, err := v.Key(cl, "t1", time.Now().AddDate(0, 0, d)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cfgPath, noticeFile
}

func runTandem(t *testing.T, wantStatus int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if got := Main(args, &out, &errOut); got != wantStatus {
		t.Fatalf("tandem %s: status %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, wantStatus, out.String(), errOut.String())
	}
	return out.String() + errOut.String()
}

func TestRetentionCommands(t *testing.T) {
	cfg, notice := retentionSetup(t)
	day := func(d int) string { return time.Now().UTC().AddDate(0, 0, d).Format("2006-01-02") }

	out := runTandem(t, 0, "retention", "run", "-c", cfg)
	if !strings.Contains(out, "destroyed operational t1 "+day(-10)) || !strings.Contains(out, "1 key(s) destroyed") {
		t.Fatalf("run: %s", out)
	}
	if out := runTandem(t, 0, "retention", "run", "-c", cfg); !strings.Contains(out, "0 key(s) destroyed") {
		t.Fatalf("second run: %s", out)
	}

	out = runTandem(t, 1, "hold", "--tenant", "t1", "--reason", "court order", "--ref", "AZ 1", "--by", "bob", "-c", cfg)
	if !strings.Contains(out, "no role of theirs has the permission hold") {
		t.Fatalf("hold by bob: %s", out)
	}
	runTandem(t, 1, "hold", "--tenant", "t1", "--person", "bob", "--reason", "r", "--ref", "x", "--by", "alice", "-c", cfg)
	out = runTandem(t, 0, "hold", "--tenant", "t1", "--reason", "court order", "--ref", "AZ 1", "--by", "alice", "-c", cfg)
	id := regexp.MustCompile(`hold ([0-9a-f]{8}) placed`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("hold: %s", out)
	}

	out = runTandem(t, 1, "retention", "extend", "--tenant", "t1", "--until", day(15), "--request-ref", "INC-1", "--by", "alice", "-c", cfg)
	if !strings.Contains(out, "more than 14 days after today") {
		t.Fatalf("extend 15 days: %s", out)
	}
	out = runTandem(t, 1, "retention", "extend", "--tenant", "t1", "--class", "content", "--until", day(5), "--request-ref", "INC-1", "--by", "alice", "-c", cfg)
	if !strings.Contains(out, "only operational data can be extended") {
		t.Fatalf("extend content: %s", out)
	}
	runTandem(t, 1, "retention", "extend", "--tenant", "t1", "--until", day(5), "--request-ref", "INC-1", "--by", "mallory", "-c", cfg)
	out = runTandem(t, 0, "retention", "extend", "--tenant", "t1", "--until", day(5), "--request-ref", "INC-1", "--by", "alice", "-c", cfg)
	if !strings.Contains(out, "DPO notice delivered") {
		t.Fatalf("extend: %s", out)
	}
	if b, err := os.ReadFile(notice); err != nil || !strings.Contains(string(b), "To: dpo@example.org") || !strings.Contains(string(b), "INC-1") {
		t.Fatalf("notice: %q %v", b, err)
	}

	var s retentionStatus
	if err := json.Unmarshal([]byte(runTandem(t, 0, "retention", "status", "--json", "-c", cfg)), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Holds) != 1 || len(s.Extensions) != 1 || len(s.Notices) != 0 || len(s.Problems) != 0 {
		t.Fatalf("status: %+v", s)
	}
	for _, c := range s.Classes {
		if c.Tenant == "t1" && c.Class == "operational" && (c.Destroyed != 1 || c.OldestReadable != day(-1) || c.NextDestruction != day(6)) {
			t.Fatalf("operational: %+v (want next destruction %s, after the extension)", c, day(6))
		}
		if c.Tenant == "t1" && c.Class == "admin" && c.NextDestruction != day(81) {
			t.Fatalf("admin: %+v", c)
		}
	}
	if out := runTandem(t, 0, "retention", "status", "-c", cfg); !strings.Contains(out, "court order") || !strings.Contains(out, "INC-1") {
		t.Fatalf("status: %s", out)
	}

	runTandem(t, 0, "hold", "renew", id[1], "--by", "alice", "-c", cfg)
	runTandem(t, 0, "hold", "release", id[1], "--by", "alice", "-c", cfg)
	runTandem(t, 1, "hold", "release", id[1], "--by", "alice", "-c", cfg)

	// Every change is queued for the audit log.
	_, st, err := openStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := st.PendingAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range es {
		var ev struct{ Type string }
		_ = json.Unmarshal(e.Event, &ev)
		types = append(types, ev.Type)
	}
	want := "key.destroyed retention.hold retention.extended retention.notice retention.hold retention.released"
	if strings.Join(types, " ") != want {
		t.Fatalf("queued %v, want %s", types, want)
	}
}
