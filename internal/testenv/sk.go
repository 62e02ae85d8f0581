package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// SKSigner is a TEST-ONLY software stand-in for a FIDO2 authenticator: an
// ssh.Signer for the key type sk-ecdsa-sha2-nistp256@openssh.com whose
// private key is an in-memory P-256 key. It signs the way a FIDO2
// authenticator does when the user touched it (user presence), so a
// gateway that requires FIDO2 keys can be tested end to end with Go
// clients (OpenSSH cannot use a software sk key).
//
// It is never a security key: the private key lives in process memory,
// nobody touches anything, and the user-presence flag is merely claimed.
// Never use it outside tests.
type SKSigner struct {
	priv *ecdsa.PrivateKey
	pub  ssh.PublicKey
	// Application is the FIDO2 application (relying party) of the key,
	// "ssh:" as OpenSSH uses it.
	Application string
	// Flags is the authenticator-data flags byte of every signature;
	// 0x01 (user present) by default. Tests set 0 to make a signature a
	// verifier must reject.
	Flags   byte
	counter atomic.Uint32
}

// skFlagUserPresence is the FIDO2 "user present" flag.
const skFlagUserPresence = 0x01

// NewSKSigner creates a software sk-ecdsa key with application "ssh:".
func NewSKSigner() (*SKSigner, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	s := &SKSigner{priv: priv, Application: "ssh:", Flags: skFlagUserPresence}
	point, err := priv.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("P-256 public point: %w", err)
	}
	// The wire format of an sk-ecdsa public key (PROTOCOL.u2f): key type,
	// curve name, uncompressed point, application.
	wire := ssh.Marshal(struct {
		Type, Curve string
		Point       []byte
		Application string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", point.Bytes(), s.Application})
	if s.pub, err = ssh.ParsePublicKey(wire); err != nil {
		return nil, fmt.Errorf("parse sk-ecdsa public key: %w", err)
	}
	return s, nil
}

// PublicKey returns the sk-ecdsa-sha2-nistp256@openssh.com public key.
func (s *SKSigner) PublicKey() ssh.PublicKey { return s.pub }

// AuthorizedKey returns the key as one authorized_keys line.
func (s *SKSigner) AuthorizedKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.pub))) + " software-sk@tandem-test"
}

// Sign signs data as a FIDO2 authenticator would: the signed message is
// SHA256(application) || flags || counter || SHA256(data), signed with
// ECDSA over its SHA-256; the signature's Rest carries flags and counter.
func (s *SKSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	appDigest := sha256.Sum256([]byte(s.Application))
	dataDigest := sha256.Sum256(data)
	counter := s.counter.Add(1)
	msg := ssh.Marshal(struct {
		ApplicationDigest []byte `ssh:"rest"`
		Flags             byte
		Counter           uint32
		MessageDigest     []byte `ssh:"rest"`
	}{appDigest[:], s.Flags, counter, dataDigest[:]})
	digest := sha256.Sum256(msg)
	if r == nil {
		r = rand.Reader
	}
	R, S, err := ecdsa.Sign(r, s.priv, digest[:])
	if err != nil {
		return nil, err
	}
	return &ssh.Signature{
		Format: ssh.KeyAlgoSKECDSA256,
		Blob:   ssh.Marshal(struct{ R, S *big.Int }{R, S}),
		Rest: ssh.Marshal(struct {
			Flags   byte
			Counter uint32
		}{s.Flags, counter}),
	}, nil
}
