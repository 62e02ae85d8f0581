package monitoring

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestReadyz checks the answers of /readyz and /healthz, and that a round
// of checks is reused within a second.
func TestReadyz(t *testing.T) {
	runs := 0
	storeErr := error(nil)
	failed := make(chan struct{})
	caKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caKey)
	h := NewHealth(AuditCheck(failed),
		StoreCheck(func(context.Context) error { runs++; return storeErr }),
		SigningCheck(ca))
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	handler := Handler(New("test"), h, quiet, false)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != 200 || body != "ok audit\nok store\nok signing\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	storeErr = errors.New("store: database is locked")
	close(failed)
	if code, _ := get("/readyz"); code != 200 || runs != 1 {
		t.Fatalf("/readyz within a second: %d after %d runs; want the cached 200 and 1 run", code, runs)
	}
	now = now.Add(2 * time.Second)
	code, body := get("/readyz")
	if code != 503 || !strings.Contains(body, "fail audit: the audit log failed") || !strings.Contains(body, "fail store: store: database is locked") {
		t.Fatalf("/readyz: %d %q; want 503 naming audit and store", code, body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Fatalf("/debug/pprof/: %d, want 404", code)
	}
}

// TestListenRefusesPlainNonLoopback: only loopback may go without TLS.
func TestListenRefusesPlainNonLoopback(t *testing.T) {
	_, err := Listen(config.Monitoring{Listen: "0.0.0.0:9"})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("got %v", err)
	}
}

// TestTLSListener serves over TLS with the profile: TLS 1.2 with a CBC
// suite or TLS 1.1 is refused, AES-GCM is served with HSTS.
func TestTLSListener(t *testing.T) {
	cert, key := selfSigned(t)
	ln, err := Listen(config.Monitoring{Listen: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, Handler(New("test"), NewHealth(), quiet, true), quiet)
	url := "https://" + ln.Addr().String() + "/healthz"
	client := func(c *tls.Config) *http.Client {
		c.InsecureSkipVerify = true // a self-signed test certificate
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
	}
	resp, err := client(&tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=31536000") {
		t.Errorf("healthz over TLS: %q, HSTS %q", body, resp.Header.Get("Strict-Transport-Security"))
	}
	for name, c := range map[string]*tls.Config{
		"CBC":     {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		"TLS 1.1": {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
	} {
		if resp, err := client(c).Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("%s: served, want the handshake refused", name)
		}
	}
}

// selfSigned writes an ECDSA P-256 certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "m.crt"), filepath.Join(dir, "m.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestReadyzWarnsOfBreakglass: unreported emergency access is named in
// /readyz without taking the gateway out of service.
func TestReadyzWarnsOfBreakglass(t *testing.T) {
	pending := error(nil)
	h := NewHealth(BreakglassCheck(func() error { return pending }))
	handler := Handler(New("test"), h, quiet, false)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || body != "ok breakglass\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	pending = errors.New("1 emergency certificate(s) issued and not reported")
	h.last = nil // a new round of checks
	if code, body := get(); code != 200 || body != "warn breakglass: 1 emergency certificate(s) issued and not reported\n" {
		t.Fatalf("/readyz: %d %q; want 200 with the warning", code, body)
	}
}
