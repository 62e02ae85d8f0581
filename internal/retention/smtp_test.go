package retention

import (
	"context"
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
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// smtpPython is Debian's python3, for which python3-aiosmtpd is installed
// (not a python3 earlier on PATH).
const smtpPython = "/usr/bin/python3"

// saver is the aiosmtpd handler the test runs: every message is appended
// to $SAVE_TO.
const saver = `import os
class Saver:
    async def handle_DATA(self, server, session, envelope):
        with open(os.environ["SAVE_TO"], "ab") as f:
            f.write(envelope.content)
        return "250 OK"
`

// selfSigned writes a certificate for 127.0.0.1 and its key, PEM.
func selfSigned(t *testing.T, dir string) (cert, key string) {
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

// startSMTP runs aiosmtpd on loopback with STARTTLS required and returns
// its address and the file messages land in.
func startSMTP(t *testing.T) (addr, cert, mbox string) {
	if err := exec.Command(smtpPython, "-c", "import aiosmtpd").Run(); err != nil {
		if testenv.InCI() {
			t.Fatalf("aiosmtpd for %s missing: apt-get install python3-aiosmtpd (scripts/test-deps.sh)", smtpPython)
		}
		t.Skipf("aiosmtpd for %s missing: apt-get install python3-aiosmtpd (scripts/test-deps.sh)", smtpPython)
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	mbox = filepath.Join(dir, "mbox")
	if err := os.WriteFile(filepath.Join(dir, "saver.py"), []byte(saver), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(smtpPython, "-m", "aiosmtpd", "-n", "-c", "saver.Saver", "-l", addr, "--tlscert", cert, "--tlskey", key)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "SAVE_TO="+mbox)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, cert, mbox
		}
		if time.Now().After(deadline) {
			t.Fatalf("aiosmtpd did not listen on %s", addr)
		}
	}
}

func TestSMTPNoticeArrivesOverSTARTTLS(t *testing.T) {
	addr, cert, mbox := startSMTP(t)
	n := NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 10 * time.Second},
		SMTP: &config.SMTP{Addr: addr, CAFile: cert, StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "Tandem: test notice", "Tenant: t1\nRequest: INC-1\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: Tandem: test notice", "To: dpo@example.org", "Request: INC-1"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("mail lacks %q:\n%s", want, b)
		}
	}

	// A certificate the CA file does not vouch for: nothing is sent.
	other, _ := selfSigned(t, t.TempDir())
	n = NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 10 * time.Second},
		SMTP: &config.SMTP{Addr: addr, CAFile: other, StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "x", "y"); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("untrusted server accepted: %v", err)
	}
}

func TestSMTPRefusesServerWithoutSTARTTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // a server that offers no STARTTLS
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		c.Write([]byte("220 plain ESMTP\r\n"))
		c.Read(buf)
		c.Write([]byte("250-plain\r\n250 8BITMIME\r\n"))
		c.Read(buf)
	}()
	n := NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 5 * time.Second},
		SMTP: &config.SMTP{Addr: ln.Addr().String(), StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "x", "secret text"); err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("sent without STARTTLS: %v", err)
	}
	ln.Close()
	<-done
}
