package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{HostKeyFile, UserCAFile, HostCAFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	k2, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.UserCA.PublicKey().Marshal(), k2.UserCA.PublicKey().Marshal()) {
		t.Error("user CA replaced on second load")
	}
	if k1.HostKey.PublicKey().Type() != ssh.KeyAlgoECDSA384 {
		t.Errorf("host key type %s, want P-384", k1.HostKey.PublicKey().Type())
	}
}

func TestCorruptKeyIsNotReplaced(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, UserCAFile)
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir, nil); err == nil || !strings.Contains(err.Error(), "refusing to replace") {
		t.Fatalf("corrupt key: err = %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "garbage" {
		t.Error("corrupt key file was overwritten")
	}
}

func TestLoadDoesNotCreate(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load created or found keys in an empty directory")
	}
}

func TestSignUser(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	k, err := LoadOrCreate(t.TempDir(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := ssh.NewPublicKey(&priv.PublicKey)
	for _, pty := range []bool{false, true} {
		cert, err := k.SignUser(UserCert{Key: pub, KeyID: "session=s1 person=alice", Principals: []string{"root"}, Validity: 5 * time.Minute, PTY: pty})
		if err != nil {
			t.Fatal(err)
		}
		checker := ssh.CertChecker{
			IsUserAuthority: func(a ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), k.UserCA.PublicKey().Marshal()) },
			Clock:           func() time.Time { return now },
		}
		if _, err := checker.Authenticate(connMeta("root"), cert); err != nil {
			t.Fatalf("valid cert refused: %v", err)
		}
		if _, err := checker.Authenticate(connMeta("postgres"), cert); err == nil {
			t.Error("cert accepted for a principal it does not name")
		}
		checker.Clock = func() time.Time { return now.Add(6 * time.Minute) }
		if _, err := checker.Authenticate(connMeta("root"), cert); err == nil {
			t.Error("cert accepted after its validity")
		}
		_, hasPTY := cert.Extensions["permit-pty"]
		if hasPTY != pty || len(cert.Extensions) > 1 {
			t.Errorf("extensions %v for pty=%v", cert.Extensions, pty)
		}
	}
	if _, err := k.SignUser(UserCert{Key: pub, Validity: time.Minute}); err == nil {
		t.Error("signed a cert without principals")
	}
}

func TestHostSigner(t *testing.T) {
	k, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.HostSigner("db1")
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := s.PublicKey().(*ssh.Certificate)
	if !ok {
		t.Fatal("host signer does not present a certificate")
	}
	checker := ssh.CertChecker{IsHostAuthority: func(a ssh.PublicKey, _ string) bool {
		return bytes.Equal(a.Marshal(), k.HostCA.PublicKey().Marshal())
	}}
	if err := checker.CheckHostKey("db1:22", fakeAddr{}, cert); err != nil {
		t.Errorf("host cert for db1 refused: %v", err)
	}
	if err := checker.CheckHostKey("db2:22", fakeAddr{}, cert); err == nil {
		t.Error("host cert for db1 accepted for db2")
	}
	again, _ := k.HostSigner("db1")
	if again != s {
		t.Error("host certificate not cached")
	}
	if line, err := k.PublicLine(Host); err != nil || !strings.HasPrefix(line, "ecdsa-sha2-nistp384 ") {
		t.Errorf("PublicLine = %q, %v", line, err)
	}
	if _, err := k.PublicLine("other"); err == nil {
		t.Error("unknown kind accepted")
	}
}

type fakeAddr struct{}

func (fakeAddr) Network() string { return "tcp" }
func (fakeAddr) String() string  { return "127.0.0.1:22" }

type meta struct{ user string }

func connMeta(user string) ssh.ConnMetadata { return meta{user} }

func (m meta) User() string        { return m.user }
func (meta) SessionID() []byte     { return nil }
func (meta) ClientVersion() []byte { return nil }
func (meta) ServerVersion() []byte { return nil }
func (meta) RemoteAddr() net.Addr  { return fakeAddr{} }
func (meta) LocalAddr() net.Addr   { return fakeAddr{} }

// TestLiveHostSignerRenews: a server configuration built once keeps
// presenting a valid certificate: past half its validity the live signer
// presents a fresh one, and its signatures verify with the key the
// certificate carries.
func TestLiveHostSignerRenews(t *testing.T) {
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	k, err := LoadOrCreate(t.TempDir(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.LiveHostSigner("gw")
	if err != nil {
		t.Fatal(err)
	}
	first := s.PublicKey().(*ssh.Certificate)
	now = now.Add(hostCertValidity/2 + time.Hour)
	second := s.PublicKey().(*ssh.Certificate)
	if second.Serial == first.Serial || second.ValidBefore <= first.ValidBefore {
		t.Fatalf("certificate not renewed: serial %d→%d, valid before %d→%d", first.Serial, second.Serial, first.ValidBefore, second.ValidBefore)
	}
	if uint64(now.Unix()) >= second.ValidBefore {
		t.Fatal("the renewed certificate has expired already")
	}
	data := []byte("exchange hash")
	sig, err := s.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoECDSA384)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Key.Verify(data, sig); err != nil {
		t.Fatalf("signature does not verify with the certificate's key: %v", err)
	}
}

// TestSignUserSourceAddress: gateway.egress_addresses become the
// source-address critical option, joined by commas as OpenSSH expects;
// without them the certificate has no critical option at all.
func TestSignUserSourceAddress(t *testing.T) {
	k, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := ssh.NewPublicKey(&priv.PublicKey)
	cert, err := k.SignUser(UserCert{Key: pub, Principals: []string{"root"}, Validity: time.Minute,
		SourceAddress: []string{"192.0.2.10", "198.51.100.0/28"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.CriticalOptions["source-address"]; got != "192.0.2.10,198.51.100.0/28" || len(cert.CriticalOptions) != 1 {
		t.Errorf("critical options %v, want source-address=192.0.2.10,198.51.100.0/28 only", cert.CriticalOptions)
	}
	cert, err = k.SignUser(UserCert{Key: pub, Principals: []string{"root"}, Validity: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.CriticalOptions) != 0 {
		t.Errorf("critical options %v without egress addresses, want none", cert.CriticalOptions)
	}
}

func TestKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		kt   KeyType
		want string
	}{{"", ssh.KeyAlgoECDSA384}, {KeyP384, ssh.KeyAlgoECDSA384}, {KeyP256, ssh.KeyAlgoECDSA256}} {
		dir := t.TempDir()
		k, err := LoadOrCreateType(dir, nil, tc.kt)
		if err != nil {
			t.Fatalf("%q: %v", tc.kt, err)
		}
		for name, s := range map[string]ssh.Signer{"host key": k.HostKey, "user CA": k.UserCA, "host CA": k.HostCA} {
			if got := s.PublicKey().Type(); got != tc.want {
				t.Errorf("%q: %s is %s, want %s", tc.kt, name, got, tc.want)
			}
		}
		// Keys on disk keep their type whatever is configured now: a
		// changed setting must never replace a CA the targets trust.
		other := KeyP256
		if tc.want == ssh.KeyAlgoECDSA256 {
			other = KeyP384
		}
		again, err := LoadOrCreateType(dir, nil, other)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ssh.FingerprintSHA256(again.UserCA.PublicKey()), ssh.FingerprintSHA256(k.UserCA.PublicKey()); got != want {
			t.Errorf("%q: loading with %q replaced the user CA", tc.kt, other)
		}
	}
	if _, err := LoadOrCreateType(t.TempDir(), nil, "ed25519"); err == nil || !strings.Contains(err.Error(), "unknown key type") {
		t.Errorf("unknown key type: got %v, want an error naming it", err)
	}
}

// A rotation makes its next key of the configured type, so that a gateway
// moves its CA from one curve to the other by rotating.
func TestRotationChangesKeyType(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateType(dir, nil, KeyP384); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, _, err := StartRotation(dir, User, KeyP256, time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FinishRotation(dir, User, now, true); err != nil {
		t.Fatal(err)
	}
	k, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.UserCA.PublicKey().Type(); got != ssh.KeyAlgoECDSA256 {
		t.Errorf("user CA after rotation is %s, want %s", got, ssh.KeyAlgoECDSA256)
	}
	if got := k.HostCA.PublicKey().Type(); got != ssh.KeyAlgoECDSA384 {
		t.Errorf("host CA (not rotated) is %s, want %s", got, ssh.KeyAlgoECDSA384)
	}
}
