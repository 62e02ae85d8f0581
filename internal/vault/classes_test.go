package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClassesApart: each class has its own key for the same tenant and
// day, and a key file moved into another class's place does not unwrap
// there.
func TestClassesApart(t *testing.T) {
	e := newEnv(t)
	day := e.clock.Now()
	keys := map[Class][]byte{}
	for _, c := range Classes {
		_, k, err := e.v.Key(c, "acme", day)
		must(t, err)
		for o, ok := range keys {
			if bytes.Equal(k, ok) {
				t.Fatalf("%s and %s share a key", c, o)
			}
		}
		keys[c] = k
	}
	raw, err := os.ReadFile(filepath.Join(e.dir, "operational-keys", "acme", "2026-03-14.key"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(e.dir, "admin-keys", "acme", "2026-03-14.key"), raw, 0o600))
	v2, err := Open(e.dir, e.v.KEK())
	must(t, err)
	if _, _, err := v2.Key(Admin, "acme", day); err == nil || !strings.Contains(err.Error(), "bound to another") {
		t.Fatalf("operational key in the admin place: %v", err)
	}
	if _, _, err := e.v.Key("personal", "acme", day); err == nil {
		t.Fatal("unknown class accepted")
	}
}

// TestListAndShred: List reports keys and tombstones per class, tenant and
// day; a shredded key stays shredded through a fresh vault and KeyByID.
func TestListAndShred(t *testing.T) {
	e := newEnv(t)
	d0 := e.clock.Now()
	id0, _, err := e.v.Key(Operational, "acme", d0)
	must(t, err)
	_, _, err = e.v.Key(Operational, "acme", d0.AddDate(0, 0, 1))
	must(t, err)
	_, _, err = e.v.Key(Admin, "globex", d0)
	must(t, err)
	sh, err := e.v.Shred(Operational, "acme", d0)
	must(t, err)
	if sh.KeyID != id0 || sh.Class != Operational || sh.Day != "2026-03-14" {
		t.Fatalf("shredded %+v", sh)
	}
	got, err := e.v.List()
	must(t, err)
	want := []KeyInfo{
		{Class: Admin, Tenant: "globex", Day: "2026-03-14"},
		{Class: Operational, Tenant: "acme", Day: "2026-03-14", ID: id0, Shredded: true},
		{Class: Operational, Tenant: "acme", Day: "2026-03-15"},
	}
	if len(got) != len(want) {
		t.Fatalf("List = %+v", got)
	}
	for i := range want {
		g := got[i]
		if i != 1 {
			g.ID = "" // random
		}
		if g != want[i] {
			t.Errorf("List[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	v2, err := Open(e.dir, e.v.KEK())
	must(t, err)
	if _, err := v2.KeyByID(Operational, "acme", "2026-03-14", id0); !isErr(err, ErrShredded) {
		t.Fatalf("KeyByID after shred: %v", err)
	}
	if _, _, err := v2.Key(Operational, "acme", d0); !isErr(err, ErrShredded) {
		t.Fatalf("a shredded day got a new key: %v", err)
	}
}
