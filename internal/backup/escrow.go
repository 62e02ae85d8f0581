package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"tandem.dev/tandem/internal/vault"
)

// Escrow is the backup key store (backup.key_store): one age identity per
// vault data key, kept outside data_dir like the KEK. A backup holds each
// wrapped data key only encrypted to that key's escrow identity, and
// vault.Shred destroys the identity together with the key (ShredHook), so
// a backup taken before a destruction cannot bring the key back: its copy
// no longer opens.
type Escrow struct{ dir string }

// OpenEscrow opens (creating, 0700) the escrow key store in dir.
func OpenEscrow(dir string) (*Escrow, error) {
	if dir == "" {
		return nil, errors.New("backup: no key store (backup.key_store) configured")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: key store: %w", err)
	}
	return &Escrow{dir: dir}, nil
}

func (e *Escrow) path(c vault.Class, tenant, day string) string {
	return filepath.Join(e.dir, strings.TrimSuffix(vault.KeyPath(c, tenant, day), ".key")+".age")
}

// recipient returns the escrow recipient of a key, creating its identity
// on first use.
func (e *Escrow) recipient(c vault.Class, tenant, day string) (age.Recipient, error) {
	id, err := e.identity(c, tenant, day)
	if err == nil {
		return id.Recipient(), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	nid, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	p := e.path(c, tenant, day)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("backup: key store: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another backup created it first: use theirs.
		return e.recipient(c, tenant, day)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: key store: %w", err)
	}
	_, err = io.WriteString(f, nid.String()+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return nil, fmt.Errorf("backup: key store: %w", err)
	}
	return nid.Recipient(), vault.SyncDir(filepath.Dir(p))
}

// identity reads a key's escrow identity; fs.ErrNotExist when there is
// none (never escrowed, or destroyed with the key).
func (e *Escrow) identity(c vault.Class, tenant, day string) (*age.X25519Identity, error) {
	raw, err := os.ReadFile(e.path(c, tenant, day))
	if err != nil {
		return nil, err
	}
	id, err := age.ParseX25519Identity(string(bytes.TrimSpace(raw)))
	if err != nil {
		return nil, fmt.Errorf("backup: key store: %s: malformed identity", e.path(c, tenant, day))
	}
	return id, nil
}

// Destroy deletes a key's escrow identity; a missing one is no error.
func (e *Escrow) Destroy(c vault.Class, tenant, day string) error {
	p := e.path(c, tenant, day)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: key store: %w", err)
	}
	if err := vault.SyncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: key store: %w", err)
	}
	return nil
}

// ShredHook is what vault.SetShredHook needs: every process that can
// shred (serve, `retention run`) installs it when a key store is
// configured.
func (e *Escrow) ShredHook() func(c vault.Class, tenant, day string) error {
	return e.Destroy
}
