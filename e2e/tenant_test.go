package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

const sued = "schule-sued"

// TestTenantHandoverDestroy: the end of a contract (M23). A second
// tenant, schule-sued, has a session on its host sued1. Its data is
// handed over encrypted to its age key (the age program decrypts it, the
// manifest verifies); it cannot be destroyed while still configured, nor
// by one person; after it is removed from the configuration, alice asks
// and bob confirms, and then nothing of it can be read: the recording is
// gone, `audit verify --deep` reports its records shredded, and the log
// still verifies.
func TestTenantHandoverDestroy(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "age")
	testenv.RequireProgram(t, "age-keygen")
	e := newEnv(t, func(c *config.Config) {
		c.Tenants = append(c.Tenants, config.Tenant{ID: sued, Name: "Schule Süd"})
		db1 := c.Hosts[0]
		c.Hosts = append(c.Hosts, config.Host{Name: "sued1", Address: testenv.LoopbackAlias(db1.Address, 1), Tenant: sued, Environment: config.Test, HostKey: db1.HostKey})
		for i := range c.Roles {
			c.Roles[i].Permissions = append(c.Roles[i].Permissions, config.PermissionConfigure)
			if c.Roles[i].ID == "admin" {
				c.Roles[i].Allow = append(c.Roles[i].Allow, config.Rule{Hosts: config.Selector{Tenant: sued}, Logins: root, Read: true})
			}
		}
	})
	tandem := func(args ...string) (string, error) {
		out, errOut, err := e.GW.Run(t, append(args, "--config", e.Config)...)
		return out + errOut, err
	}
	r := e.Alice.SSH(t, append(e.routeArgs("root", "sued1"), "echo", "sued-work")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "sued-work") {
		t.Fatalf("alice on sued1: %s\n%s", r, e.GW.Tail())
	}
	var session string
	if !testenv.WaitFor(20*time.Second, func() bool {
		out, _ := tandem("recording", "list", "--as", "alice", "--tenant", sued)
		for _, f := range strings.Fields(out) {
			if len(f) == 10 && strings.Trim(f, "0123456789abcdef") == "" {
				session = f
			}
		}
		return session != ""
	}) {
		out, _ := tandem("recording", "list", "--as", "alice", "--tenant", sued)
		t.Fatalf("no recording of sued1:\n%s", out)
	}
	cast := filepath.Join(e.Dir, "before.cast")
	if out, err := tandem("recording", "export", "--as", "alice", "--out", cast, session); err != nil {
		t.Fatalf("export before the destruction: %v\n%s", err, out)
	}

	identity := filepath.Join(e.Dir, "sued.key")
	if o, err := exec.Command("age-keygen", "-o", identity).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v %s", err, o)
	}
	pubText, err := exec.Command("age-keygen", "-y", identity).Output()
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(e.Dir, "sued.pub")
	writeTestFile(t, pub, string(pubText))

	if out, err := tandem("tenant", "destroy", "--tenant", sued, "--by", "alice"); err == nil || !strings.Contains(out, "not handed over") {
		t.Errorf("destroy before the hand-over: %v\n%s", err, out)
	}
	archive := filepath.Join(e.Dir, "sued.tar.age")
	var out string
	if !testenv.WaitFor(30*time.Second, func() bool {
		out, err = tandem("tenant", "handover", "--tenant", sued, "--to", pub, "--out", archive, "--by", "alice")
		return err == nil
	}) {
		t.Fatalf("tandem tenant handover: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	plain, err := exec.Command("age", "--decrypt", "-i", identity, archive).Output()
	if err != nil {
		t.Fatalf("age --decrypt: %v", err)
	}
	dir := untar(t, plain, "sued")
	key, _, err := e.GW.Run(t, "audit", "pubkey", "--config", e.Config)
	if err != nil {
		t.Fatal(err)
	}
	auditPub := filepath.Join(e.Dir, "audit.pub")
	writeTestFile(t, auditPub, key)
	if o, eo, err := e.GW.Run(t, "disclose", "verify", dir, "--pubkey", auditPub); err != nil {
		t.Fatalf("the hand-over does not verify: %v\n%s%s", err, o, eo)
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings", session+".cast")); err != nil {
		t.Errorf("the recording is not in the hand-over: %v", err)
	}

	// Still configured: refused. Then the tenant leaves the configuration.
	if !testenv.WaitFor(20*time.Second, func() bool {
		out, _ = tandem("tenant", "destroy", "--tenant", sued, "--by", "alice")
		return strings.Contains(out, "still in the configuration")
	}) {
		t.Errorf("destroy of a configured tenant: %s", out)
	}
	editConfig(t, e.Config, func(c *config.Config) {
		c.Tenants = slices.DeleteFunc(c.Tenants, func(x config.Tenant) bool { return x.ID == sued })
		c.Hosts = slices.DeleteFunc(c.Hosts, func(h config.Host) bool { return h.Tenant == sued })
		for i := range c.Roles {
			c.Roles[i].Allow = slices.DeleteFunc(c.Roles[i].Allow, func(r config.Rule) bool { return r.Hosts.Tenant == sued })
		}
	})
	if o, err := tandem("reload", "--by", "alice"); err != nil {
		t.Fatalf("reload: %v\n%s", err, o)
	}
	if o, err := tandem("tenant", "destroy", "--tenant", sued, "--by", "alice"); err != nil || !strings.Contains(o, "requested by alice") {
		t.Fatalf("alice's request: %v\n%s", err, o)
	}
	// Her request reaches the log through the outbox; then she alone
	// still cannot finish it.
	if !testenv.WaitFor(20*time.Second, func() bool {
		out, _ = tandem("tenant", "destroy", "--tenant", sued, "--by", "alice")
		return strings.Contains(out, "a second person must confirm")
	}) {
		t.Fatalf("alice confirmed her own request: %s", out)
	}
	out, err = tandem("tenant", "destroy", "--tenant", sued, "--by", "bob")
	if err != nil || !strings.Contains(out, sued+" destroyed") {
		t.Fatalf("bob's confirmation: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	// Nothing of the tenant can be read.
	if o, err := tandem("recording", "export", "--as", "alice", "--out", filepath.Join(e.Dir, "after.cast"), session); err == nil {
		t.Errorf("a recording of %s exported after its destruction:\n%s", sued, o)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "data", "recordings", sued)); !os.IsNotExist(err) {
		t.Errorf("the recordings of %s are still there: %v", sued, err)
	}
	var deep string
	if !testenv.WaitFor(20*time.Second, func() bool {
		deep, err = tandem("audit", "verify", "--deep")
		return err == nil && strings.Contains(deep, "shredded: "+sued+" admin")
	}) {
		t.Fatalf("audit verify --deep: %v\n%s", err, deep)
	}
	if !strings.Contains(deep, "result:          OK") {
		t.Errorf("the log does not verify after the destruction:\n%s", deep)
	}
	shown, _ := tandem("audit", "show", "--session", session)
	if strings.Contains(shown, "sued-work") || strings.Contains(shown, "person=alice") {
		t.Errorf("records of the destroyed tenant still read:\n%s", shown)
	}
	if !testenv.WaitFor(20*time.Second, func() bool {
		o, _ := tandem("audit", "show", "--type", "tenant.handover,tenant.destroy")
		return strings.Count(o, "tenant.handover") == 1 && strings.Contains(o, `"done"`) && strings.Contains(o, `"confirmed"`) && strings.Contains(o, `"requested"`)
	}) {
		o, _ := tandem("audit", "show", "--type", "tenant.handover,tenant.destroy")
		t.Errorf("the hand-over and the destruction in the log:\n%s", o)
	}
}
