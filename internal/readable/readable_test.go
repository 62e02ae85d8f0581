package readable

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/vault"
)

var day0 = time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)

// library has one recording per tenant: n1 on nord-db (tenant nord), s1 on
// sued-secret-db (tenant sued); rita reads nord, sam reads sued.
func library(t *testing.T) (Library, *config.Person, *config.Person) {
	t.Helper()
	root := t.TempDir()
	kek := filepath.Join(root, "kek")
	if err := record.GenerateFileKEK(kek); err != nil {
		t.Fatal(err)
	}
	k, err := record.FileKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	v, err := record.OpenVault(filepath.Join(dir, "vault"), k)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []record.Meta{
		{SessionID: "n1", Tenant: "nord", Kind: record.KindPTY, Started: day0, Host: "nord-db", Login: "root", Owner: "alice"},
		{SessionID: "s1", Tenant: "sued", Kind: record.KindPTY, Started: day0, Host: "sued-secret-db", Login: "root", Owner: "bob"},
	} {
		w, err := record.Create(v, record.Local(dir), m, record.Options{Now: func() time.Time { return day0 }, Tick: make(chan time.Time)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Config{
		Tenants: []config.Tenant{{ID: "nord"}, {ID: "sued"}},
		Hosts:   []config.Host{{Name: "nord-db", Tenant: "nord"}, {Name: "sued-secret-db", Tenant: "sued"}},
		Roles: []config.Role{
			{ID: "read-nord", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "nord"}, Read: true}}},
			{ID: "read-sued", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "sued"}, Read: true}}},
		},
	}
	return Library{Vault: v, Dir: dir, Config: cfg, Engine: policy.New(cfg)},
		&config.Person{ID: "rita", Roles: []string{"read-nord"}}, &config.Person{ID: "sam", Roles: []string{"read-sued"}}
}

// A person who may read nothing of a tenant learns nothing of its
// recordings by asking for one by id: not its host, its tenant, its day
// or where it lies, also not when its day was shredded or its file is
// damaged; and the recording is not decrypted for them.
func TestOpenTellsNothingOfAnotherTenant(t *testing.T) {
	l, rita, sam := library(t)
	if r, _, err := l.Open(rita, "n1"); err != nil {
		t.Fatal(err)
	} else {
		r.Close()
	}
	check := func(what string) {
		t.Helper()
		_, _, err := l.Open(rita, "s1")
		if err == nil {
			t.Fatalf("%s: rita read sued's recording", what)
		}
		for _, leak := range []string{"sued", "secret", "2030-05-01", "recordings", "destroyed", "shred"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the refusal tells rita %q: %v", what, leak, err)
			}
		}
	}
	check("readable day")
	if _, err := l.Vault.Shred(vault.Content, "sued", day0); err != nil {
		t.Fatal(err)
	}
	check("shredded day")
	// The tenant's own reader is told why.
	if _, _, err := l.Open(sam, "s1"); err == nil || !strings.Contains(err.Error(), "shred") {
		t.Fatalf("sam: %v", err)
	}
}
