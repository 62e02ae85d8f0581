package audit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
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
	keyFile         = "audit.key" // note signer key; secret
	pubFile         = "audit.pub" // note verifier key; give it to auditors
)

// SigningKeyFile is the name of the checkpoint signing key in the audit
// directory; serve refuses it when others can read it.
const SigningKeyFile = keyFile

// loadSigner returns the checkpoint signer kept in dir, creating a new
// Ed25519 key named name on first use.
func loadSigner(dir, name string) (note.Signer, error) {
	keyPath := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKey(dir, name); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read signing key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		// The error text of NewSigner does not include the key itself.
		return nil, fmt.Errorf("audit: signing key %s: %w", keyPath, err)
	}
	return s, nil
}

// createKey writes a fresh key pair. The public half goes first so that a
// crash in between leaves no secret key without its verifier text; the
// secret half is created with O_EXCL so two processes cannot both win.
func createKey(dir, name string) error {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return fmt.Errorf("audit: generate signing key (origin %q must be a valid note key name): %w", name, err)
	}
	if err := writeFileSync(filepath.Join(dir, pubFile), []byte(vkey+"\n"), os.O_TRUNC); err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, keyFile), []byte(skey+"\n"), os.O_EXCL)
}

func writeFileSync(path string, data []byte, flag int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if err != nil {
		return fmt.Errorf("audit: create %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("audit: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: sync %s: %w", filepath.Base(path), err)
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
