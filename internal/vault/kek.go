package vault

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// checkSecretFile refuses key files that others can read: a KEK readable by
// the group is not a secret any more.
func checkSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible by group or others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}

// fileKEK wraps data keys with XChaCha20-Poly1305 under a 32-byte key.
type fileKEK struct{ aead cipher.AEAD }

const (
	fileKEKVersion = 1
	fileKEKAD      = "tandem-kek-file-v1"
)

// FileKEK loads a key-encryption key from a file holding exactly 32 random
// bytes (see GenerateFileKEK). The file must not be accessible by group or
// others.
func FileKEK(path string) (KEK, error) {
	if err := checkSecretFile(path); err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	if len(key) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("key-encryption key %s: want %d bytes, file has %d", path, chacha20poly1305.KeySize, len(key))
	}
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return fileKEK{aead: a}, nil
}

// GenerateFileKEK creates path (which must not exist) with 32 random bytes,
// mode 0600.
func GenerateFileKEK(path string) error {
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate key-encryption key: %w", err)
	}
	return writeSecret(path, key)
}

func writeSecret(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	return f.Close()
}

// Wrap returns version | nonce | sealed data key.
func (k fileKEK) Wrap(dataKey []byte) ([]byte, error) {
	out := make([]byte, 1+k.aead.NonceSize(), 1+k.aead.NonceSize()+len(dataKey)+k.aead.Overhead())
	out[0] = fileKEKVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("wrap: random: %w", err)
	}
	return k.aead.Seal(out, out[1:], dataKey, []byte(fileKEKAD)), nil
}

func (k fileKEK) Unwrap(wrapped []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(wrapped) < 1+ns+k.aead.Overhead() || wrapped[0] != fileKEKVersion {
		return nil, fmt.Errorf("malformed wrapped key: %w", ErrKEK)
	}
	pt, err := k.aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], []byte(fileKEKAD))
	if err != nil {
		return nil, ErrKEK
	}
	return pt, nil
}

// ageKEK wraps data keys by age-encrypting them to the identity's own
// recipient.
type ageKEK struct {
	id  age.Identity
	rcp age.Recipient
}

// AgeKEK loads an age identity file (one X25519 "AGE-SECRET-KEY-1…" or
// hybrid post-quantum "AGE-SECRET-KEY-PQ-1…" line, as written by age-keygen
// or GenerateAgeKEK) as a key-encryption key. The file must not be
// accessible by group or others.
func AgeKEK(identityFile string) (KEK, error) {
	if err := checkSecretFile(identityFile); err != nil {
		return nil, fmt.Errorf("age key-encryption key: %w", err)
	}
	f, err := os.Open(identityFile)
	if err != nil {
		return nil, fmt.Errorf("age key-encryption key: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(io.LimitReader(f, 64<<10))
	if err != nil {
		// age's parse errors do not echo key material.
		return nil, fmt.Errorf("age key-encryption key %s: %w", identityFile, err)
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("age key-encryption key %s: want exactly one identity, found %d", identityFile, len(ids))
	}
	switch id := ids[0].(type) {
	case *age.X25519Identity:
		return ageKEK{id: id, rcp: id.Recipient()}, nil
	case *age.HybridIdentity:
		return ageKEK{id: id, rcp: id.Recipient()}, nil
	default:
		return nil, fmt.Errorf("age key-encryption key %s: unsupported identity type %T", identityFile, id)
	}
}

// GenerateAgeKEK creates path (which must not exist) with a new age X25519
// identity, mode 0600, and returns its public recipient string.
func GenerateAgeKEK(path string) (recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("generate age identity: %w", err)
	}
	data := "# tandem key-encryption key\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"
	if err := writeSecret(path, []byte(data)); err != nil {
		return "", err
	}
	return id.Recipient().String(), nil
}

func (k ageKEK) Wrap(dataKey []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, k.rcp)
	if err != nil {
		return nil, fmt.Errorf("age wrap: %w", err)
	}
	if _, err := w.Write(dataKey); err != nil {
		return nil, fmt.Errorf("age wrap: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age wrap: %w", err)
	}
	return buf.Bytes(), nil
}

func (k ageKEK) Unwrap(wrapped []byte) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(wrapped), k.id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, ErrKEK
		}
		return nil, fmt.Errorf("age unwrap: %v: %w", err, ErrKEK)
	}
	pt, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return nil, fmt.Errorf("age unwrap: %v: %w", err, ErrKEK)
	}
	return pt, nil
}
