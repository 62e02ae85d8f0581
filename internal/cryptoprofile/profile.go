// Package cryptoprofile keeps Tandem's SSH algorithm lists in one place
// (M17). Each profile is a reading of BSI TR-02102-4; see docs/STANDARDS.md in
// the repository for the sources and the deviations.
//
// golang.org/x/crypto/ssh silently drops algorithm names it does not know,
// so a typo would quietly weaken or break a profile. Check refuses any name
// the library does not implement or lists as insecure; the gateway calls it
// at start-up.
package cryptoprofile

import (
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Profile is a named set of SSH algorithm lists, strongest first.
type Profile struct {
	Name         string
	KeyExchanges []string
	Ciphers      []string
	MACs         []string
	// HostKeys are the host key algorithms the gateway's own key may be
	// presented with, with and without certificate: ECDSA P-384 or P-256
	// (gateway.key_type).
	HostKeys []string
	// UserKeys are the signature algorithms accepted for personal keys.
	UserKeys []string
	// MinRSABits is the smallest RSA modulus accepted for personal keys.
	MinRSABits int
}

var bsiKex = []string{
	ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH16SHA512,
}

var bsiCiphers = []string{
	ssh.CipherAES256GCM, ssh.CipherAES128GCM, ssh.CipherAES256CTR, ssh.CipherAES192CTR, ssh.CipherAES128CTR,
}

var bsiMACs = []string{
	ssh.HMACSHA512ETM, ssh.HMACSHA256ETM, ssh.HMACSHA512, ssh.HMACSHA256,
}

var gatewayHostKeys = []string{
	ssh.CertAlgoECDSA384v01, ssh.KeyAlgoECDSA384, ssh.CertAlgoECDSA256v01, ssh.KeyAlgoECDSA256,
}

// strictUserKeys are the BSI-listed signature algorithms for personal keys.
var strictUserKeys = []string{
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// Ed25519 is not in the BSI lists as we read them, but it is what most
// administrators hold; the bsi profile accepts it, strict does not.
var bsiUserKeys = append(slices.Clone(strictUserKeys), ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519)

// Names lists the profiles in the order the docs present them.
var Names = []string{"bsi", "strict", "compat"}

// Get returns the named profile, or an error naming the known ones.
func Get(name string) (Profile, error) {
	p := Profile{
		Name:         name,
		KeyExchanges: slices.Clone(bsiKex),
		Ciphers:      slices.Clone(bsiCiphers),
		MACs:         slices.Clone(bsiMACs),
		HostKeys:     slices.Clone(gatewayHostKeys),
		UserKeys:     slices.Clone(bsiUserKeys),
		MinRSABits:   3072,
	}
	switch name {
	case "bsi", "":
		p.Name = "bsi"
	case "strict":
		p.UserKeys = slices.Clone(strictUserKeys)
	case "compat":
		// Not BSI-listed, no known weakness; for clients that cannot do better.
		p.KeyExchanges = append(p.KeyExchanges, ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519)
		p.Ciphers = append(p.Ciphers, ssh.CipherChaCha20Poly1305)
	default:
		return Profile{}, fmt.Errorf("unknown crypto profile %q (known: %s)", name, strings.Join(Names, ", "))
	}
	return p, p.Check()
}

// Check verifies that x/crypto implements every listed algorithm and
// considers none of them insecure.
func (p Profile) Check() error {
	sup, insec := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	lists := []struct {
		what      string
		names     []string
		supported []string
		insecure  []string
	}{
		{"key exchange", p.KeyExchanges, sup.KeyExchanges, insec.KeyExchanges},
		{"cipher", p.Ciphers, sup.Ciphers, insec.Ciphers},
		{"MAC", p.MACs, sup.MACs, insec.MACs},
		{"host key", p.HostKeys, sup.HostKeys, insec.HostKeys},
		{"user key", p.UserKeys, sup.PublicKeyAuths, insec.PublicKeyAuths},
	}
	for _, l := range lists {
		if len(l.names) == 0 {
			return fmt.Errorf("crypto profile %s: no %s algorithm", p.Name, l.what)
		}
		for _, n := range l.names {
			if !slices.Contains(l.supported, n) {
				return fmt.Errorf("crypto profile %s: %s algorithm %q is not implemented by x/crypto/ssh", p.Name, l.what, n)
			}
			if slices.Contains(l.insecure, n) {
				return fmt.Errorf("crypto profile %s: %s algorithm %q is considered insecure", p.Name, l.what, n)
			}
		}
	}
	return nil
}

// Config returns the transport settings for an ssh.ServerConfig or
// ssh.ClientConfig.
func (p Profile) Config() ssh.Config {
	return ssh.Config{
		KeyExchanges: slices.Clone(p.KeyExchanges),
		Ciphers:      slices.Clone(p.Ciphers),
		MACs:         slices.Clone(p.MACs),
	}
}

// AcceptsUserKey reports whether a personal key of this type and size may
// authenticate under the profile, with a reason when it may not.
func (p Profile) AcceptsUserKey(k ssh.PublicKey) error {
	if _, isCert := k.(*ssh.Certificate); isCert {
		return fmt.Errorf("certificates are not accepted as personal keys; register the plain public key")
	}
	typ := k.Type()
	if typ == ssh.KeyAlgoRSA {
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("unreadable RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("unreadable RSA key")
		}
		if bits := rk.N.BitLen(); bits < p.MinRSABits {
			return fmt.Errorf("RSA key with %d bits is too short: at least %d bits are required", bits, p.MinRSABits)
		}
		return nil
	}
	if !slices.Contains(p.UserKeys, typ) {
		return fmt.Errorf("key type %s is not accepted by crypto profile %s", typ, p.Name)
	}
	return nil
}
