package record

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVaultDataKeys(t *testing.T) {
	e := newEnv(t)
	day := e.clock.Now()
	id1, k1, err := e.v.DataKey("acme", day)
	must(t, err)
	id2, k2, err := e.v.DataKey("acme", day.Add(3*time.Hour)) // same UTC day
	must(t, err)
	if id1 != id2 || !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatal("same tenant and day gave different keys")
	}
	id3, k3, err := e.v.DataKey("acme", day.AddDate(0, 0, 1))
	must(t, err)
	_, k4, err := e.v.DataKey("globex", day)
	must(t, err)
	if id3 == id1 || bytes.Equal(k3, k1) || bytes.Equal(k4, k1) {
		t.Fatal("keys shared across days or tenants")
	}
	// A second vault on the same directory (another process) sees the
	// same key.
	v2, err := OpenVault(e.dir, e.v.kek)
	must(t, err)
	id5, k5, err := v2.DataKey("acme", day)
	must(t, err)
	if id5 != id1 || !bytes.Equal(k5, k1) {
		t.Fatal("key not persistent")
	}
	st, err := os.Stat(filepath.Join(e.dir, "keys", "acme", "2026-03-14.key"))
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	if _, _, err := e.v.DataKey("../etc", day); err == nil {
		t.Fatal("tenant with a path accepted")
	}
}

// TestVaultKeyBinding: a wrapped key copied to another tenant's or day's
// place is refused.
func TestVaultKeyBinding(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.v.DataKey("acme", e.clock.Now())
	must(t, err)
	src := filepath.Join(e.dir, "keys", "acme", "2026-03-14.key")
	raw, _ := os.ReadFile(src)
	forged := bytes.ReplaceAll(raw, []byte("2026-03-14"), []byte("2026-03-15"))
	must(t, os.WriteFile(filepath.Join(e.dir, "keys", "acme", "2026-03-15.key"), forged, 0o600))
	v2, _ := OpenVault(e.dir, e.v.kek)
	if _, _, err := v2.DataKey("acme", e.clock.Now().AddDate(0, 0, 1)); err == nil || !strings.Contains(err.Error(), "bound to another") {
		t.Fatalf("moved key: %v", err)
	}
}

func TestWrongKEK(t *testing.T) {
	e := newEnv(t)
	path := threeChunks(t, e, "s-kek")
	other := filepath.Join(t.TempDir(), "other")
	must(t, GenerateFileKEK(other))
	kek, err := FileKEK(other)
	must(t, err)
	v, err := OpenVault(e.dir, kek)
	must(t, err)
	if _, err := Open(v, path); !isErr(err, ErrKEK) {
		t.Fatalf("wrong file KEK: %v", err)
	}
	agePath := filepath.Join(t.TempDir(), "age")
	_, err = GenerateAgeKEK(agePath)
	must(t, err)
	akek, err := AgeKEK(agePath)
	must(t, err)
	v, _ = OpenVault(e.dir, akek)
	if _, err := Open(v, path); !isErr(err, ErrKEK) {
		t.Fatalf("age KEK on a file-KEK vault: %v", err)
	}
}

func TestAgeKEK(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "id1"), filepath.Join(dir, "id2")
	rcp, err := GenerateAgeKEK(p1)
	must(t, err)
	if !strings.HasPrefix(rcp, "age1") {
		t.Fatalf("recipient %q", rcp)
	}
	_, err = GenerateAgeKEK(p2)
	must(t, err)
	k1, err := AgeKEK(p1)
	must(t, err)
	k2, err := AgeKEK(p2)
	must(t, err)
	wrapped, err := k1.Wrap([]byte("0123456789abcdef0123456789abcdef"))
	must(t, err)
	got, err := k1.Unwrap(wrapped)
	if err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("unwrap: %q %v", got, err)
	}
	if _, err := k2.Unwrap(wrapped); !isErr(err, ErrKEK) {
		t.Fatalf("other identity: %v", err)
	}
	if _, err := GenerateAgeKEK(p1); err == nil {
		t.Fatal("GenerateAgeKEK overwrote an identity")
	}
}

func TestKEKFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kek")
	must(t, GenerateFileKEK(p))
	if err := GenerateFileKEK(p); err == nil {
		t.Fatal("GenerateFileKEK overwrote a key")
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file %v %d", st.Mode(), st.Size())
	}
	must(t, os.Chmod(p, 0o640))
	if _, err := FileKEK(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable KEK: %v", err)
	}
	short := filepath.Join(dir, "short")
	must(t, os.WriteFile(short, []byte("too short"), 0o600))
	if _, err := FileKEK(short); err == nil || strings.Contains(err.Error(), "too short") {
		t.Fatalf("short KEK: %v", err) // and the error does not echo the content
	}
	if _, err := AgeKEK(short); err == nil || strings.Contains(err.Error(), "too short") {
		t.Fatalf("bad age identity: %v", err)
	}
	must(t, os.Chmod(p, 0o600))
	k, err := FileKEK(p)
	must(t, err)
	w, err := k.Wrap(make([]byte, 32))
	must(t, err)
	w[len(w)-1] ^= 1
	if _, err := k.Unwrap(w); !isErr(err, ErrKEK) {
		t.Fatalf("altered wrapped key: %v", err)
	}
}

func TestShred(t *testing.T) {
	e := newEnv(t)
	path := threeChunks(t, e, "s-shred")
	id, _, err := e.v.DataKey("acme", e.clock.Now())
	must(t, err)
	sh, err := e.v.Shred("acme", e.clock.Now())
	must(t, err)
	if sh.KeyID != id || sh.Tenant != "acme" || sh.Day != "2026-03-14" || !strings.HasSuffix(sh.Path, "2026-03-14.key") {
		t.Fatalf("shredded %+v", sh)
	}
	if _, err := os.Stat(sh.Path); !os.IsNotExist(err) {
		t.Fatalf("key file still there: %v", err)
	}
	_, err = Open(e.v, path)
	if !isErr(err, ErrShredded) || !strings.Contains(err.Error(), "acme/2026-03-14") {
		t.Fatalf("open after shred: %v", err)
	}
	// Also through a fresh vault (another process, no cache).
	v2, _ := OpenVault(e.dir, e.v.kek)
	if _, err := Open(v2, path); !isErr(err, ErrShredded) {
		t.Fatalf("fresh vault: %v", err)
	}
	if _, _, err := e.v.DataKey("acme", e.clock.Now()); !isErr(err, ErrShredded) {
		t.Fatalf("shredded day got a new key: %v", err)
	}
	if _, err := Create(e.v, e.dir, e.meta("s-new", KindPTY), Options{}); !isErr(err, ErrShredded) {
		t.Fatalf("recording on a shredded day: %v", err)
	}
	if _, err := e.v.Shred("acme", e.clock.Now()); !isErr(err, ErrShredded) {
		t.Fatalf("second shred: %v", err)
	}
	if _, err := e.v.Shred("acme", e.clock.Now().AddDate(0, 0, -5)); !isErr(err, ErrNoKey) {
		t.Fatalf("shred of a day without key: %v", err)
	}
	// Other tenants and days are untouched.
	m := e.meta("s-other", KindPTY)
	m.Started = m.Started.AddDate(0, 0, 1)
	w := e.create(t, m, Options{})
	_, err = w.Close()
	must(t, err)
	if _, err := readAll(t, e.v, w.Path()); err != nil {
		t.Fatal(err)
	}
}
