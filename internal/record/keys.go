package record

import (
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// The key store lives in internal/vault; recordings use two of its
// retention classes: content keys for the readable recording and sealed
// keys for keystrokes typed at secret prompts. These names keep the
// package's callers short.
type (
	// Vault is the key store recordings are encrypted under.
	Vault = vault.Vault
	// KEK wraps the vault's data keys.
	KEK = vault.KEK
)

// Errors of the key store, as recordings see them.
var (
	ErrShredded = vault.ErrShredded
	ErrNoKey    = vault.ErrNoKey
	ErrKEK      = vault.ErrKEK
)

// OpenVault opens (creating if needed) the key store under dir.
func OpenVault(dir string, kek KEK) (*Vault, error) { return vault.Open(dir, kek) }

// FileKEK, GenerateFileKEK, AgeKEK and GenerateAgeKEK are the vault's.
var (
	FileKEK         = vault.FileKEK
	GenerateFileKEK = vault.GenerateFileKEK
	AgeKEK          = vault.AgeKEK
	GenerateAgeKEK  = vault.GenerateAgeKEK
)

func dataKey(v *Vault, tenant string, day time.Time) (string, []byte, error) {
	return v.Key(vault.Content, tenant, day)
}

func sealedKey(v *Vault, tenant string, day time.Time) (string, []byte, error) {
	return v.Key(vault.Sealed, tenant, day)
}

// keyShare is shared storage's copy of the data keys its recordings are
// encrypted under: each gateway keeps its keys in its own vault, so the
// writer leaves a copy (wrapped by the KEK, which every gateway of the
// cluster holds) where the other gateways find it.
type keyShare interface {
	// PublishKey stores keyFile (the vault's stored form) of the key id
	// of class, tenant and day, unless it is there; ErrShredded if the
	// day's keys were destroyed.
	PublishKey(c vault.Class, tenant, day, id string, keyFile []byte) error
	// SharedKey returns the stored form of key id; ErrNoKey if there is
	// none, ErrShredded if the day's keys were destroyed.
	SharedKey(c vault.Class, tenant, day, id string) ([]byte, error)
	// KeyName says where a copy is, for errors.
	KeyName(c vault.Class, tenant, day, id string) string
}

// shareKey leaves a copy of the key id of class for ref's tenant and day
// in s, if s is shared storage.
func shareKey(v *Vault, s Storage, c vault.Class, ref Ref, id string) error {
	ks, ok := s.(keyShare)
	if !ok {
		return nil
	}
	raw, err := v.KeyFile(c, ref.Tenant, ref.Day)
	if err != nil {
		return err
	}
	return ks.PublishKey(c, ref.Tenant, ref.Day, id, raw)
}

// keyring finds the keys to read with: the gateway's own vault first,
// then, for a recording another gateway made, the copy in shared storage,
// opened with this gateway's KEK.
type keyring struct {
	v     *Vault
	share keyShare // nil for local storage
}

func ring(v *Vault, s Storage) keyring {
	ks, _ := s.(keyShare)
	return keyring{v: v, share: ks}
}

func (k keyring) byID(c vault.Class, tenant, day, id string) ([]byte, error) {
	key, err := k.v.KeyByID(c, tenant, day, id)
	if err == nil || k.share == nil || !(errors.Is(err, vault.ErrNoKey) || errors.Is(err, vault.ErrOtherKey)) {
		// A key this vault destroyed stays destroyed: its shred also
		// destroyed the shared copies.
		return key, err
	}
	raw, serr := k.share.SharedKey(c, tenant, day, id)
	if errors.Is(serr, vault.ErrNoKey) {
		return nil, err // the vault's own answer says more
	}
	if serr != nil {
		return nil, serr
	}
	got, key, err := k.v.OpenKeyFile(c, tenant, day, raw, k.share.KeyName(c, tenant, day, id))
	if err != nil {
		return nil, err
	}
	if got != id {
		return nil, fmt.Errorf("%s: holds key %s, not %s: %w", k.share.KeyName(c, tenant, day, id), got, id, ErrCorrupt)
	}
	return key, nil
}

func (k keyring) data(tenant, day, id string) ([]byte, error) {
	return k.byID(vault.Content, tenant, day, id)
}

func (k keyring) sealed(tenant, day, id string) ([]byte, error) {
	return k.byID(vault.Sealed, tenant, day, id)
}

// syncDir makes a directory's new entries durable.
func syncDir(dir string) error { return vault.SyncDir(dir) }
