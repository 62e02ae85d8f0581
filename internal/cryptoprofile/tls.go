package cryptoprofile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// TLSServer returns the TLS settings of every TLS server Tandem runs (the
// monitoring listener now, the console later), as docs/STANDARDS.md lists
// them after BSI TR-02102-2: TLS 1.2 only with ECDHE and AES-GCM, the
// hybrid post-quantum groups first, then the NIST curves. Go's TLS 1.3
// always offers ChaCha20-Poly1305 as well, a known deviation documented
// there. A new value each call, so no caller changes another's.
func TLSServer(cert tls.Certificate) *tls.Config {
	c := tlsProfile()
	c.Certificates = []tls.Certificate{cert}
	return c
}

// TLSClient returns the same settings for a client that presents cert
// and trusts only roots (no system roots), with renegotiation refused
// and the server's certificate key held to the profile too.
func TLSClient(cert tls.Certificate, roots *x509.CertPool, serverName string) *tls.Config {
	c := tlsProfile()
	c.Certificates = []tls.Certificate{cert}
	c.RootCAs, c.ServerName = roots, serverName
	c.Renegotiation = tls.RenegotiateNever
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("the server presented no certificate")
		}
		return AcceptsTLSKey(cs.PeerCertificates[0])
	}
	return c
}

// tlsProfile is the one place the TLS versions, suites and groups of
// docs/STANDARDS.md are written down.
func tlsProfile() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{ // TLS 1.2: ECDHE + AES-GCM only
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		CurvePreferences: []tls.CurveID{tls.SecP384r1MLKEM1024, tls.SecP256r1MLKEM768,
			tls.CurveP384, tls.CurveP256, tls.CurveP521},
	}
}

// LoadTLSCertificate reads a certificate and its key (PEM files) and
// refuses keys the profile does not accept: ECDSA P-256 or P-384, or RSA
// with at least 3072 bits.
func LoadTLSCertificate(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	if err := AcceptsTLSKey(leaf); err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	return cert, nil
}

// AcceptsTLSKey refuses certificate keys outside the profile: ECDSA P-256
// or P-384, RSA of at least 3072 bits.
func AcceptsTLSKey(c *x509.Certificate) error {
	if c == nil {
		return fmt.Errorf("no certificate")
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not accepted; use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 3072 {
			return nil
		}
		return fmt.Errorf("RSA key of %d bits is too short; use at least 3072 bits or ECDSA P-256/P-384", k.N.BitLen())
	}
	return fmt.Errorf("key type %T is not accepted; use ECDSA P-256/P-384 or RSA with at least 3072 bits", c.PublicKey)
}
