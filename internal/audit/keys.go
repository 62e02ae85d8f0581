package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// File names inside the log directory.
const (
	recordsFile     = "records.log"
	leavesFile      = "leaves.bin"
	checkpointsFile = "checkpoints.log"
	legacyKeyFile   = "audit.key" // where the signing key lived before it moved out of data_dir
	pubFile         = "audit.pub" // note verifier key; give it to auditors
)

// LegacyKeyFile is where older versions kept the checkpoint signing key:
// inside the log directory, where whoever can rewrite the log can also
// re-sign it. Serve refuses to start while a key is there.
func LegacyKeyFile(dir string) string { return filepath.Join(dir, legacyKeyFile) }

// SigningKey is the checkpoint signing key and its public verifier text.
// It lives outside the data directory (audit.signing_key), so that a copy
// or rewrite of the data directory cannot forge checkpoints.
type SigningKey struct {
	signer   note.Signer
	verifier string
}

// Verifier returns the note verifier key: the text auditors keep and pass
// to Verify.
func (k *SigningKey) Verifier() string { return k.verifier }

// Name returns the key's name, which checkpoints carry in their signature.
func (k *SigningKey) Name() string { return k.signer.Name() }

// SignNote signs a note text (which ends in a newline) with the key.
func (k *SigningKey) SignNote(text string) ([]byte, error) {
	return note.Sign(&note.Note{Text: text}, k.signer)
}

// ParseSigningKey reads the text of a note signer key
// ("PRIVATE+KEY+name+hash+key"). The error never contains the key.
func ParseSigningKey(text []byte) (*SigningKey, error) {
	skey := strings.TrimSpace(string(text))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	v, err := verifierOf(skey)
	if err != nil {
		return nil, err
	}
	return &SigningKey{signer: s, verifier: v}, nil
}

// verifierOf derives the verifier key text from an Ed25519 signer key, so
// that the public half never has to be trusted from a file.
func verifierOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// LoadSigningKey reads the key file at path. An age-encrypted file is
// passed to decrypt first (nil: refused, naming the file).
func LoadSigningKey(path string, decrypt func([]byte) ([]byte, error)) (*SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: read signing key: %w", err)
	}
	if IsAgeEncrypted(b) {
		if decrypt == nil {
			return nil, fmt.Errorf("audit: signing key %s is age-encrypted, but no age identity is configured to open it (recording.age_identity)", path)
		}
		if b, err = decrypt(b); err != nil {
			return nil, fmt.Errorf("audit: decrypt signing key %s: %w", path, err)
		}
	}
	k, err := ParseSigningKey(b)
	if err != nil {
		// The error text of NewSigner does not include the key itself.
		return nil, fmt.Errorf("audit: signing key %s: %w", path, err)
	}
	return k, nil
}

// GenerateSigningKey returns a fresh key named name and its secret text.
func GenerateSigningKey(name string) (*SigningKey, []byte, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: generate signing key (origin %q must be a valid note key name): %w", name, err)
	}
	k, err := ParseSigningKey([]byte(skey))
	if err != nil {
		return nil, nil, err
	}
	return k, []byte(skey + "\n"), nil
}

// CreateSigningKey writes a fresh key named name to path (mode 0600, its
// directory 0700). O_EXCL: an existing key is never replaced.
func CreateSigningKey(path, name string) error {
	_, err := CreateSealedSigningKey(path, name, nil)
	return err
}

// CreateSealedSigningKey is CreateSigningKey with the key text passed
// through seal (age encryption to the configured identity, say) before it
// is written; seal nil writes it plain. It returns the key.
func CreateSealedSigningKey(path, name string, seal func([]byte) ([]byte, error)) (*SigningKey, error) {
	k, text, err := GenerateSigningKey(name)
	if err != nil {
		return nil, err
	}
	if seal != nil {
		if text, err = seal(text); err != nil {
			return nil, fmt.Errorf("audit: encrypt signing key: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: signing key directory: %w", err)
	}
	if err := writeFileSync(path, text, os.O_EXCL); err != nil {
		return nil, err
	}
	return k, nil
}

// IsAgeEncrypted reports whether b is an age file (binary or armored), so
// the caller knows to decrypt the signing key with an age identity first.
func IsAgeEncrypted(b []byte) bool {
	return bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) ||
		bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN AGE ENCRYPTED FILE-----"))
}

// writePublicKey keeps audit.pub in the log directory for convenience: it
// is written when missing, and a different one is refused, as it means
// the log was signed with another key than the one configured.
func writePublicKey(dir string, k *SigningKey) error {
	path := filepath.Join(dir, pubFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return writeFileSync(path, []byte(k.verifier+"\n"), os.O_EXCL)
	case err != nil:
		return fmt.Errorf("audit: read %s: %w", path, err)
	case strings.TrimSpace(string(b)) != k.verifier:
		return fmt.Errorf("%w: %s holds the verifier key %q, but the configured signing key's is %q: this log was signed with another key; configure the key that signed it (audit.signing_key)",
			ErrDamaged, path, strings.TrimSpace(string(b)), k.verifier)
	}
	return nil
}

func writeFileSync(path string, data []byte, flag int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if err != nil {
		return fmt.Errorf("audit: create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("audit: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: sync %s: %w", path, err)
	}
	return f.Close()
}

// PublicKey returns the note verifier key of the log in dir: the text an
// auditor passes to Verify. Keep a copy outside the data directory; a
// verifier key read from the directory under test proves nothing about an
// attacker who could rewrite that directory.
func PublicKey(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, pubFile))
	if err != nil {
		return "", fmt.Errorf("audit: read verifier key: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(k); err != nil {
		return "", fmt.Errorf("audit: verifier key in %s: %w", dir, err)
	}
	return k, nil
}
