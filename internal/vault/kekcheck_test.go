package vault

import (
	"path/filepath"
	"testing"
)

// TestKEKCheck: a check value opens only with the KEK that made it (file
// or age), and a data key's wrapped form is not a check value.
func TestKEKCheck(t *testing.T) {
	dir := t.TempDir()
	must(t, GenerateFileKEK(filepath.Join(dir, "a")))
	must(t, GenerateFileKEK(filepath.Join(dir, "b")))
	_, err := GenerateAgeKEK(filepath.Join(dir, "age"))
	must(t, err)
	a, err := FileKEK(filepath.Join(dir, "a"))
	must(t, err)
	b, err := FileKEK(filepath.Join(dir, "b"))
	must(t, err)
	age, err := AgeKEK(filepath.Join(dir, "age"))
	must(t, err)
	keys := []KEK{a, b, age}
	for i, k := range keys {
		check, err := KEKCheck(k)
		must(t, err)
		for j, other := range keys {
			ok, err := MatchesKEKCheck(other, check)
			must(t, err)
			if ok != (i == j) {
				t.Fatalf("check of KEK %d opened by KEK %d: %v", i, j, ok)
			}
		}
		// A wrapped data key (label, tenant, day, id, key) is no check.
		wrapped, err := k.Wrap(append(keyBinding(Content, "acme", "2026-03-14", "00"), make([]byte, dataKeySize)...))
		must(t, err)
		if ok, err := MatchesKEKCheck(k, wrapped); ok || err != nil {
			t.Fatalf("a wrapped data key taken for a check value: %v %v", ok, err)
		}
		if ok, err := MatchesKEKCheck(k, []byte("garbage")); ok || err != nil {
			t.Fatalf("garbage taken for a check value: %v %v", ok, err)
		}
	}
}
