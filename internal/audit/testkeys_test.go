package audit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"tandem.dev/tandem/internal/vault"
)

// keysFor opens the vault that belongs to the log in dir: <dir>/../vault,
// its KEK in <dir>/../kek, created on first use. A file KEK rather than one
// in memory, so the crash child and its parent share the keys.
func keysFor(t testing.TB, dir string) *vault.Vault {
	t.Helper()
	v, err := openKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openKeys(dir string) (*vault.Vault, error) {
	base := filepath.Dir(dir)
	kekFile := filepath.Join(base, "kek")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(kekFile); errors.Is(err, fs.ErrNotExist) {
		if err := vault.GenerateFileKEK(kekFile); err != nil {
			return nil, err
		}
	}
	kek, err := vault.FileKEK(kekFile)
	if err != nil {
		return nil, err
	}
	return vault.Open(filepath.Join(base, "vault"), kek)
}

func mustLeafHash(t testing.TB, payload []byte) []byte {
	t.Helper()
	h, err := leafHash(payload)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
