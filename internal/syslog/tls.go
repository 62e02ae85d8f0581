package syslog

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"tandem.dev/tandem/internal/cryptoprofile"

	"tandem.dev/tandem/internal/config"
)

// clientTLS is the TLS configuration towards one collector: the BSI
// profile of docs/STANDARDS.md (cryptoprofile.TLSClient: TLS 1.2 with
// ECDHE and AES-GCM only, or 1.3; P-384/P-256 and their hybrids), no
// renegotiation, the gateway's client certificate, and the collector's
// certificate verified against the configured CA alone (not the system's
// roots). Go's TLS 1.3 always offers ChaCha20-Poly1305: a known deviation
// (docs/CENTRAL-LOG.md).
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
	if err := cryptoprofile.AcceptsTLSKey(cert.Leaf); err != nil {
		return nil, fmt.Errorf("syslog collector %s: client certificate: %w", c.Name, err)
	}
	return cryptoprofile.TLSClient(cert, roots, c.ServerName), nil
}
