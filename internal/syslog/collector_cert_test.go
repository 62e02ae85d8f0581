package syslog

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// selfSigned is a collector certificate that is its own CA, written to
// dir/ca.pem for the shipper's ca_file.
func selfSigned(t *testing.T, dir string, key crypto.Signer, name string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestShipRefusesCollectorCertificates: a collector whose certificate is
// expired, not yet valid, for another name or on a key below the profile
// gets no record; the reason is in the status. The valid case shows the
// set-up itself works.
func TestShipRefusesCollectorCertificates(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, host string
		key        crypto.Signer
		from, to   time.Time
		want       string // in LastErr; "" for the valid collector
	}{
		{"valid", "localhost", ec, now.Add(-time.Hour), now.Add(time.Hour), ""},
		{"expired", "localhost", ec, now.Add(-48 * time.Hour), now.Add(-24 * time.Hour), "expired"},
		{"not yet valid", "localhost", ec, now.Add(24 * time.Hour), now.Add(48 * time.Hour), "not yet valid"},
		{"another name", "collector.example", ec, now.Add(-time.Hour), now.Add(time.Hour), "collector.example"},
		{"rsa 2048", "localhost", rsa2048, now.Add(-time.Hour), now.Add(time.Hour), "RSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.stop()
			f.srv.conf.Certificates = []tls.Certificate{selfSigned(t, f.dir, tc.key, tc.host, tc.from, tc.to)}
			f.srv.start()
			f.opts.Config.Collectors[0].Addr = f.srv.addr
			f.opts.Config.Collectors[0].CAFile = filepath.Join(f.dir, "ca.pem")
			f.append(t, 3)
			s := run(t, f.opts)
			if tc.want == "" {
				waitRecords(t, f.srv, f.log.Size())
				return
			}
			if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(s.Status()[0].LastErr, tc.want) }) {
				t.Fatalf("status: %+v", s.Status())
			}
			if n := len(f.srv.messages()); n != 0 {
				t.Fatalf("the collector got %d messages", n)
			}
		})
	}
}
