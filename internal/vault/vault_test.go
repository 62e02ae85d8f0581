package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVaultDataKeys(t *testing.T) {
	e := newEnv(t)
	day := e.clock.Now()
	id1, k1, err := e.v.Key(Content, "acme", day)
	must(t, err)
	id2, k2, err := e.v.Key(Content, "acme", day.Add(3*time.Hour)) // same UTC day
	must(t, err)
	if id1 != id2 || !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatal("same tenant and day gave different keys")
	}
	id3, k3, err := e.v.Key(Content, "acme", day.AddDate(0, 0, 1))
	must(t, err)
	_, k4, err := e.v.Key(Content, "globex", day)
	must(t, err)
	if id3 == id1 || bytes.Equal(k3, k1) || bytes.Equal(k4, k1) {
		t.Fatal("keys shared across days or tenants")
	}
	// A second vault on the same directory (another process) sees the
	// same key.
	v2, err := Open(e.dir, e.v.KEK())
	must(t, err)
	id5, k5, err := v2.Key(Content, "acme", day)
	must(t, err)
	if id5 != id1 || !bytes.Equal(k5, k1) {
		t.Fatal("key not persistent")
	}
	st, err := os.Stat(filepath.Join(e.dir, "keys", "acme", "2026-03-14.key"))
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	if _, _, err := e.v.Key(Content, "../etc", day); err == nil {
		t.Fatal("tenant with a path accepted")
	}
}

// TestVaultKeyBinding: a wrapped key copied to another tenant's or day's
// place is refused.
func TestVaultKeyBinding(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.v.Key(Content, "acme", e.clock.Now())
	must(t, err)
	src := filepath.Join(e.dir, "keys", "acme", "2026-03-14.key")
	raw, _ := os.ReadFile(src)
	forged := bytes.ReplaceAll(raw, []byte("2026-03-14"), []byte("2026-03-15"))
	must(t, os.WriteFile(filepath.Join(e.dir, "keys", "acme", "2026-03-15.key"), forged, 0o600))
	v2, _ := Open(e.dir, e.v.KEK())
	if _, _, err := v2.Key(Content, "acme", e.clock.Now().AddDate(0, 0, 1)); err == nil || !strings.Contains(err.Error(), "bound to another") {
		t.Fatalf("moved key: %v", err)
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

type env struct {
	dir   string
	v     *Vault
	clock interface{ Now() time.Time }
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// newEnv makes a vault directory with a file KEK kept outside it.
func newEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	kekPath := filepath.Join(root, "kek")
	must(t, GenerateFileKEK(kekPath))
	kek, err := FileKEK(kekPath)
	must(t, err)
	dir := filepath.Join(root, "data")
	v, err := Open(dir, kek)
	must(t, err)
	return &env{dir: dir, v: v, clock: fixedClock(time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC))}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }

// TestShredByAnotherProcess: a key one vault has cached and another vault
// on the same directory (another process) destroys no longer opens
// anything in the first.
func TestShredByAnotherProcess(t *testing.T) {
	e := newEnv(t)
	day := e.clock.Now()
	id, _, err := e.v.Key(Operational, "acme", day)
	must(t, err)
	_, err = e.v.KeyByID(Operational, "acme", Day(day), id)
	must(t, err)
	other, err := Open(e.dir, e.v.KEK())
	must(t, err)
	_, err = other.Shred(Operational, "acme", day)
	must(t, err)
	if _, err := e.v.KeyByID(Operational, "acme", Day(day), id); !errors.Is(err, ErrShredded) {
		t.Fatalf("cached key read after another vault shredded it: %v", err)
	}
}
