package testenv

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSKSigner: x/crypto's own sk-ecdsa verifier accepts the software
// signer's signatures with user presence and rejects one without.
func TestSKSigner(t *testing.T) {
	s, err := NewSKSigner()
	if err != nil {
		t.Fatal(err)
	}
	line := s.AuthorizedKey()
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if pub.Type() != ssh.KeyAlgoSKECDSA256 || !strings.HasPrefix(line, ssh.KeyAlgoSKECDSA256+" ") || comment == "" {
		t.Fatalf("authorized key %q: type %s", line, pub.Type())
	}
	data := []byte("session id and userauth request")
	sig, err := s.Sign(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Format != ssh.KeyAlgoSKECDSA256 {
		t.Errorf("signature format %q", sig.Format)
	}
	if err := pub.Verify(data, sig); err != nil {
		t.Fatalf("x/crypto rejects the signature: %v", err)
	}
	if err := pub.Verify([]byte("other data"), sig); err == nil {
		t.Errorf("a signature verified for other data")
	}
	s.Flags = 0
	sig0, err := s.Sign(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(data, sig0); err == nil {
		t.Errorf("a signature without user presence (flags 0) verified")
	}
}
