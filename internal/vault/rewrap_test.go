package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestRewrap: a rotation interrupted half-way is finished by running it
// again; afterwards every key of every class opens with the new KEK only,
// unchanged, and tombstones are left alone.
func TestRewrap(t *testing.T) {
	e := newEnv(t)
	old := e.v.KEK()
	type want struct {
		c               Class
		tenant, day, id string
		key             []byte
	}
	var keys []want
	for _, c := range Classes {
		for _, tenant := range []string{"acme", "globex"} {
			for d := 0; d < 2; d++ {
				day := e.clock.Now().AddDate(0, 0, d)
				id, k, err := e.v.Key(c, tenant, day)
				must(t, err)
				keys = append(keys, want{c, tenant, Day(day), id, k})
			}
		}
	}
	// One destroyed day: its tombstone must come through untouched.
	_, err := e.v.Shred(Sealed, "globex", e.clock.Now())
	must(t, err)
	keys = append(keys[:len(keys)-2], keys[len(keys)-1]) // drop globex's first sealed day
	tomb := filepath.Join(e.dir, TombstonePath(Sealed, "globex", Day(e.clock.Now())))
	tombBefore, err := os.ReadFile(tomb)
	must(t, err)

	newPath := filepath.Join(t.TempDir(), "new-age")
	_, err = GenerateAgeKEK(newPath)
	must(t, err)
	nk, err := AgeKEK(newPath)
	must(t, err)

	// An interrupted run: the first half moved, the rest not.
	half := len(keys) / 2
	for _, k := range keys[:half] {
		_, err := rewrapOne(e.dir, k.c, k.tenant, k.day, old, nk)
		must(t, err)
	}
	r, err := Rewrap(e.dir, old, nk)
	must(t, err)
	if r.Already != half || r.Rewrapped != len(keys)-half || r.Shredded != 1 {
		t.Fatalf("resumed run: %+v, want %d already, %d rewrapped, 1 shredded", r, half, len(keys)-half)
	}
	// Idempotent: one more run finds everything done.
	r, err = Rewrap(e.dir, old, nk)
	must(t, err)
	if r.Already != len(keys) || r.Rewrapped != 0 {
		t.Fatalf("second run: %+v", r)
	}

	vOld, err := Open(e.dir, old)
	must(t, err)
	vNew, err := Open(e.dir, nk)
	must(t, err)
	for _, k := range keys {
		day := k.day
		if _, err := vOld.KeyByID(k.c, k.tenant, day, k.id); !isErr(err, ErrKEK) {
			t.Fatalf("%s %s/%s still opens with the old KEK: %v", k.c, k.tenant, day, err)
		}
		got, err := vNew.KeyByID(k.c, k.tenant, day, k.id)
		must(t, err)
		if !bytes.Equal(got, k.key) {
			t.Fatalf("%s %s/%s: data key changed", k.c, k.tenant, day)
		}
		st, err := os.Stat(filepath.Join(e.dir, KeyPath(k.c, k.tenant, day)))
		must(t, err)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("rewrapped key file mode %v", st.Mode())
		}
	}
	if after, err := os.ReadFile(tomb); err != nil || !bytes.Equal(after, tombBefore) {
		t.Fatalf("tombstone changed: %v", err)
	}
	if _, err := vNew.KeyByID(Sealed, "globex", Day(e.clock.Now()), "x"); !isErr(err, ErrShredded) {
		t.Fatalf("shredded day after rewrap: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(e.dir, "*", "*", ".tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	// A KEK that opens nothing is refused, and changes nothing.
	other := newEnv(t).v.KEK()
	if _, err := Rewrap(e.dir, other, old); !isErr(err, ErrKEK) {
		t.Fatalf("rewrap with a foreign KEK: %v", err)
	}
}
