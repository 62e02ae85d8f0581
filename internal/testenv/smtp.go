package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SMTPPython is Debian's python3, for which python3-aiosmtpd is installed
// (not a python3 earlier on PATH).
const SMTPPython = "/usr/bin/python3"

// smtpSaver is the aiosmtpd handler StartSMTP runs: every message is
// appended to $SAVE_TO, so a test reads what arrived from one file.
const smtpSaver = `import os
class Saver:
    async def handle_DATA(self, server, session, envelope):
        with open(os.environ["SAVE_TO"], "ab") as f:
            f.write(envelope.content)
        return "250 OK"
`

// SelfSigned writes a self-signed certificate for 127.0.0.1, valid for an
// hour, and its key, PEM, into dir. The certificate is its own CA, so it
// serves as a ca_file too.
func SelfSigned(t testing.TB, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// StartSMTP runs aiosmtpd on loopback with STARTTLS required and returns
// its address, the certificate to trust (a ca_file) and the file every
// message is appended to. It skips the test when aiosmtpd is missing
// (fails under CI) and stops the server by its process at cleanup.
func StartSMTP(t testing.TB) (addr, cert, mbox string) {
	t.Helper()
	if err := exec.Command(SMTPPython, "-c", "import aiosmtpd").Run(); err != nil {
		if InCI() {
			t.Fatalf("aiosmtpd for %s missing: apt-get install python3-aiosmtpd (scripts/test-deps.sh)", SMTPPython)
		}
		t.Skipf("aiosmtpd for %s missing: apt-get install python3-aiosmtpd (scripts/test-deps.sh)", SMTPPython)
	}
	dir := t.TempDir()
	cert, key := SelfSigned(t, dir)
	mbox = filepath.Join(dir, "mbox")
	if err := os.WriteFile(filepath.Join(dir, "saver.py"), []byte(smtpSaver), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	cmd := exec.Command(SMTPPython, "-m", "aiosmtpd", "-n", "-c", "saver.Saver", "-l", addr, "--tlscert", cert, "--tlskey", key)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "SAVE_TO="+mbox)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop(5 * time.Second) })
	if err := waitListening(addr, p, 10*time.Second); err != nil {
		t.Fatalf("aiosmtpd: %v", err)
	}
	return addr, cert, mbox
}
