package record

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/vault"
)

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

func TestShred(t *testing.T) { eachStorage(t, testShred) }

func testShred(t *testing.T) {
	e := newEnv(t)
	path := threeChunks(t, e, "s-shred")
	id, _, err := e.v.Key(vault.Content, "acme", e.clock.Now())
	must(t, err)
	sh, err := e.v.Shred(vault.Content, "acme", e.clock.Now())
	must(t, err)
	if sh.KeyID != id || sh.Tenant != "acme" || sh.Day != "2026-03-14" || !strings.HasSuffix(sh.Path, "2026-03-14.key") {
		t.Fatalf("shredded %+v", sh)
	}
	if _, err := os.Stat(sh.Path); !os.IsNotExist(err) {
		t.Fatalf("key file still there: %v", err)
	}
	_, err = e.open(path)
	if !isErr(err, ErrShredded) || !strings.Contains(err.Error(), "acme/2026-03-14") {
		t.Fatalf("open after shred: %v", err)
	}
	// Also through a fresh vault (another process, no cache).
	v2, _ := OpenVault(e.dir, e.v.KEK())
	if _, err := OpenIn(v2, e.st, refOf(path)); !isErr(err, ErrShredded) {
		t.Fatalf("fresh vault: %v", err)
	}
	if _, _, err := e.v.Key(vault.Content, "acme", e.clock.Now()); !isErr(err, ErrShredded) {
		t.Fatalf("shredded day got a new key: %v", err)
	}
	if _, err := Create(e.v, e.st, e.meta("s-new", KindPTY), Options{}); !isErr(err, ErrShredded) {
		t.Fatalf("recording on a shredded day: %v", err)
	}
	if _, err := e.v.Shred(vault.Content, "acme", e.clock.Now()); !isErr(err, ErrShredded) {
		t.Fatalf("second shred: %v", err)
	}
	if _, err := e.v.Shred(vault.Content, "acme", e.clock.Now().AddDate(0, 0, -5)); !isErr(err, ErrNoKey) {
		t.Fatalf("shred of a day without key: %v", err)
	}
	// Other tenants and days are untouched.
	m := e.meta("s-other", KindPTY)
	m.Started = m.Started.AddDate(0, 0, 1)
	w := e.create(t, m, Options{})
	_, err = w.Close()
	must(t, err)
	if _, err := readAll(t, e, w.Path()); err != nil {
		t.Fatal(err)
	}
}

// Another tenant's (or day's) key file put in place of a recording's key
// opens nothing: the wrapped key is bound to its tenant, class and day.
func TestKeyFileOfAnotherTenantOrDay(t *testing.T) {
	e := newEnv(t)
	a := threeChunks(t, e, "s-a")
	m := e.meta("s-g", KindPTY)
	m.Tenant = "globex"
	w := e.create(t, m, Options{})
	_, err := w.Close()
	must(t, err)
	m = e.meta("s-next", KindPTY)
	m.Started = m.Started.AddDate(0, 0, 1)
	w = e.create(t, m, Options{})
	_, err = w.Close()
	must(t, err)
	keys := filepath.Join(e.dir, "keys")
	dst := filepath.Join(keys, "acme", "2026-03-14.key")
	orig, err := os.ReadFile(dst)
	must(t, err)
	for _, src := range []string{filepath.Join(keys, "globex", "2026-03-14.key"), filepath.Join(keys, "acme", "2026-03-15.key"),
		"globex fitted", "2026-03-15 fitted"} {
		var b []byte
		switch src {
		case "globex fitted": // its clear fields edited to name acme's place
			b, err = os.ReadFile(filepath.Join(keys, "globex", "2026-03-14.key"))
			b = bytes.ReplaceAll(b, []byte(`"globex"`), []byte(`"acme"`))
		case "2026-03-15 fitted":
			b, err = os.ReadFile(filepath.Join(keys, "acme", "2026-03-15.key"))
			b = bytes.ReplaceAll(b, []byte("2026-03-15"), []byte("2026-03-14"))
		default:
			b, err = os.ReadFile(src)
		}
		must(t, err)
		must(t, os.WriteFile(dst, b, 0o600))
		v2, err := OpenVault(e.dir, e.v.KEK())
		must(t, err)
		r, err := OpenIn(v2, e.st, refOf(a))
		if err == nil {
			r.Close()
			t.Errorf("%s in place of acme's key opened the recording", src)
		} else if !strings.Contains(err.Error(), "bound to another") && !strings.Contains(err.Error(), "malformed data key file") {
			t.Errorf("%s in place of acme's key: %v", src, err)
		}
	}
	must(t, os.WriteFile(dst, orig, 0o600))
}
