package disclose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/crypto/ssh"
)

// MaxRecipientKey bounds a recipient's public key (an armored OpenPGP key
// with a few subkeys and signatures is a few KiB).
const MaxRecipientKey = 64 << 10

// Recipient is the key a disclosure is encrypted to: an age recipient
// (age1…), an SSH key (ssh-ed25519, ssh-rsa; age's SSH recipients), or an
// armored OpenPGP public key.
type Recipient struct {
	Kind        string // age, ssh or openpgp
	Fingerprint string
	text        string
}

// ParseRecipient reads a recipient's public key.
func ParseRecipient(text string) (Recipient, error) {
	text = strings.TrimSpace(text)
	if len(text) > MaxRecipientKey {
		return Recipient{}, fmt.Errorf("recipient key longer than %d bytes", MaxRecipientKey)
	}
	switch {
	case strings.HasPrefix(text, "age1"):
		if _, err := age.ParseX25519Recipient(text); err != nil {
			return Recipient{}, fmt.Errorf("recipient key: %w", err)
		}
		return Recipient{Kind: "age", Fingerprint: text, text: text}, nil
	case strings.HasPrefix(text, "ssh-"):
		if _, err := agessh.ParseRecipient(text); err != nil {
			return Recipient{}, fmt.Errorf("recipient key: %w", err)
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
		if err != nil {
			return Recipient{}, fmt.Errorf("recipient key: %w", err)
		}
		return Recipient{Kind: "ssh", Fingerprint: ssh.FingerprintSHA256(pk), text: text}, nil
	case strings.HasPrefix(text, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
		ents, err := openpgp.ReadArmoredKeyRing(strings.NewReader(text))
		if err != nil {
			return Recipient{}, fmt.Errorf("recipient key: %w", err)
		}
		if len(ents) != 1 {
			return Recipient{}, fmt.Errorf("recipient key: %d OpenPGP keys; give exactly one", len(ents))
		}
		return Recipient{Kind: "openpgp", Fingerprint: fmt.Sprintf("%X", ents[0].PrimaryKey.Fingerprint), text: text}, nil
	}
	return Recipient{}, errors.New("recipient key: want an age recipient (age1…), an SSH public key (ssh-ed25519, ssh-rsa) or an armored OpenPGP public key")
}

// String is how the case names the recipient: kind and fingerprint.
func (r Recipient) String() string { return r.Kind + " " + r.Fingerprint }

// Text is the key as given.
func (r Recipient) Text() string { return r.text }

// Encrypt returns a writer that encrypts to r into w; Close finishes the
// encryption (it does not close w).
func (r Recipient) Encrypt(w io.Writer) (io.WriteCloser, error) {
	switch r.Kind {
	case "age":
		rc, err := age.ParseX25519Recipient(r.text)
		if err != nil {
			return nil, err
		}
		return age.Encrypt(w, rc)
	case "ssh":
		rc, err := agessh.ParseRecipient(r.text)
		if err != nil {
			return nil, err
		}
		return age.Encrypt(w, rc)
	case "openpgp":
		ents, err := openpgp.ReadArmoredKeyRing(bytes.NewReader([]byte(r.text)))
		if err != nil {
			return nil, err
		}
		return openpgp.Encrypt(w, ents, nil, &openpgp.FileHints{IsBinary: true, FileName: "disclosure.tar"}, nil)
	}
	return nil, fmt.Errorf("unknown recipient kind %q", r.Kind)
}

// Ext is the file extension of what Encrypt writes.
func (r Recipient) Ext() string {
	if r.Kind == "openpgp" {
		return ".tar.gpg"
	}
	return ".tar.age"
}
