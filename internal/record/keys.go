package record

import (
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

func dataKeyByID(v *Vault, tenant, day, id string) ([]byte, error) {
	return v.KeyByID(vault.Content, tenant, day, id)
}

func sealedKeyByID(v *Vault, tenant, day, id string) ([]byte, error) {
	return v.KeyByID(vault.Sealed, tenant, day, id)
}

// syncDir makes a directory's new entries durable.
func syncDir(dir string) error { return vault.SyncDir(dir) }
