package cryptoprofile

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestProfilesPassCheck(t *testing.T) {
	for _, name := range Names {
		if _, err := Get(name); err != nil {
			t.Errorf("Get(%q): %v", name, err)
		}
	}
	if _, err := Get("weak"); err == nil || !strings.Contains(err.Error(), "unknown crypto profile") {
		t.Errorf("Get(weak) = %v, want unknown profile error", err)
	}
}

func TestCheckRefusesUnknownAndInsecure(t *testing.T) {
	p, _ := Get("bsi")
	p.Ciphers = append(p.Ciphers, "aes256-gmc@openssh.com") // a typo x/crypto would drop silently
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "not implemented") {
		t.Errorf("typo cipher: %v", err)
	}
	p, _ = Get("bsi")
	p.KeyExchanges = append(p.KeyExchanges, ssh.InsecureKeyExchangeDH1SHA1)
	if err := p.Check(); err == nil {
		t.Error("insecure kex accepted")
	}
	p.KeyExchanges = nil
	if err := p.Check(); err == nil {
		t.Error("empty list accepted")
	}
}

func TestBSIExcludesNonListed(t *testing.T) {
	p, _ := Get("bsi")
	for _, bad := range []string{ssh.KeyExchangeCurve25519, ssh.CipherChaCha20Poly1305} {
		for _, l := range [][]string{p.KeyExchanges, p.Ciphers} {
			for _, n := range l {
				if n == bad {
					t.Errorf("bsi profile lists %s", bad)
				}
			}
		}
	}
}

func TestAcceptsUserKey(t *testing.T) {
	mk := func(k any) ssh.PublicKey {
		t.Helper()
		pk, err := ssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	r3072, _ := rsa.GenerateKey(rand.Reader, 3072)
	cases := []struct {
		profile string
		key     ssh.PublicKey
		ok      bool
	}{
		{"bsi", mk(&ec.PublicKey), true},
		{"bsi", mk(ed), true},
		{"strict", mk(ed), false},
		{"strict", mk(&ec.PublicKey), true},
		{"bsi", mk(&r2048.PublicKey), false},
		{"bsi", mk(&r3072.PublicKey), true},
	}
	for _, c := range cases {
		p, _ := Get(c.profile)
		err := p.AcceptsUserKey(c.key)
		if (err == nil) != c.ok {
			t.Errorf("%s %s: err=%v want ok=%v", c.profile, c.key.Type(), err, c.ok)
		}
	}
}
