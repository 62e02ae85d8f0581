package syslog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"tandem.dev/tandem/internal/config"
)

// clientTLS is the TLS configuration towards one collector: the BSI
// profile of docs/STANDARDS.md verbatim (TLS 1.2 with ECDHE and AES-GCM
// only, or 1.3; P-384/P-256 and their hybrids), no renegotiation, the
// gateway's client certificate, and the collector's certificate verified
// against the configured CA alone (not the system's roots). Go's TLS 1.3
// always offers ChaCha20-Poly1305: a known deviation (docs/CENTRAL-LOG.md).
func clientTLS(c config.Collector) (*tls.Config, error) {
	pemCA, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("syslog collector %s: ca_file: %w", c.Name, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("syslog collector %s: ca_file %s holds no PEM certificate", c.Name, c.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("syslog collector %s: client certificate: %w", c.Name, err)
	}
	if err := strongKey(cert.Leaf); err != nil {
		return nil, fmt.Errorf("syslog collector %s: client certificate: %w", c.Name, err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{ // TLS 1.2: ECDHE + AES-GCM only
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		CurvePreferences: []tls.CurveID{tls.SecP384r1MLKEM1024, tls.SecP256r1MLKEM768,
			tls.CurveP384, tls.CurveP256, tls.CurveP521},
		Renegotiation: tls.RenegotiateNever,
		RootCAs:       roots,
		ServerName:    c.ServerName,
		Certificates:  []tls.Certificate{cert},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("collector presented no certificate")
			}
			return strongKey(cs.PeerCertificates[0])
		},
	}, nil
}

// strongKey refuses certificate keys outside the profile: ECDSA P-256 or
// P-384, RSA of at least 3072 bits.
func strongKey(c *x509.Certificate) error {
	if c == nil {
		return errors.New("no certificate")
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("certificate key on curve %s; only P-256 and P-384 are accepted", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 3072 {
			return nil
		}
		return fmt.Errorf("RSA certificate key of %d bits; at least 3072 are required", k.N.BitLen())
	}
	return fmt.Errorf("certificate key of type %T; only ECDSA P-256/P-384 or RSA ≥ 3072 are accepted", c.PublicKey)
}
