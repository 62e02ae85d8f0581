package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"
)

// NewSigner makes an in-memory ECDSA key on curve as an SSH signer: a
// person's key (P-256, as `tandem demo` makes them) or a gateway's own
// kind of key (P-384: host key, CAs, a cluster node's link key).
func NewSigner(t testing.TB, curve elliptic.Curve) ssh.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
