// Package ca holds the gateway's long-lived keys and signs the short-lived
// certificates that let it reach targets (M2) and present itself as any
// configured host in jump mode.
//
// Three ECDSA P-384 keys live in <data_dir>/keys, each created once on first
// use and never silently replaced: the gateway's host key, the user CA that
// targets trust (TrustedUserCAKeys), and the host CA that clients trust with
// one @cert-authority line.
package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Key file names inside the key directory.
const (
	HostKeyFile = "host_key"
	UserCAFile  = "user_ca"
	HostCAFile  = "host_ca"
)

// Kind names one of the two certificate authorities.
type Kind string

const (
	User Kind = "user"
	Host Kind = "host"
)

// hostCertValidity bounds the host certificates minted for jump mode; they
// are re-minted long before they run out.
const hostCertValidity = 24 * time.Hour

// Keys holds the gateway's signers.
type Keys struct {
	HostKey ssh.Signer
	UserCA  ssh.Signer
	HostCA  ssh.Signer
	now     func() time.Time

	mu        sync.Mutex
	hostCerts map[string]cachedCert
}

type cachedCert struct {
	signer ssh.Signer
	until  time.Time
}

// LoadOrCreate reads the three keys from dir, creating the directory (0700)
// and any key file that does not exist yet (0600). A key file that exists
// but cannot be read or parsed is an error: replacing it would silently
// break every target's trust.
func LoadOrCreate(dir string, now func() time.Time) (*Keys, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	k := &Keys{now: now, hostCerts: map[string]cachedCert{}}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{HostKeyFile, &k.HostKey}, {UserCAFile, &k.UserCA}, {HostCAFile, &k.HostCA}} {
		s, err := loadOrCreate(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		*f.dst = s
	}
	return k, nil
}

// Load reads the keys without creating any (for read-only commands that
// must not invent a CA, such as printing it for an auditor).
func Load(dir string) (*Keys, error) {
	k := &Keys{now: time.Now, hostCerts: map[string]cachedCert{}}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{HostKeyFile, &k.HostKey}, {UserCAFile, &k.UserCA}, {HostCAFile, &k.HostCA}} {
		s, err := load(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		*f.dst = s
	}
	return k, nil
}

func load(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse key %s: %w (refusing to replace it)", path, err)
	}
	return s, nil
}

func loadOrCreate(path string) (ssh.Signer, error) {
	s, err := load(path)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "tandem "+filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	// O_EXCL: if another process created the file meanwhile, keep theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return load(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close key %s: %w", path, err)
	}
	pub := ssh.MarshalAuthorizedKey(mustSigner(priv).PublicKey())
	if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return mustSigner(priv), nil
}

func mustSigner(priv *ecdsa.PrivateKey) ssh.Signer {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		panic(err) // an ECDSA key is always usable as a signer
	}
	return s
}

// PublicLine returns the CA's public key in authorized_keys format, with a
// comment naming it.
func (k *Keys) PublicLine(kind Kind) (string, error) {
	var s ssh.Signer
	switch kind {
	case User:
		s = k.UserCA
	case Host:
		s = k.HostCA
	default:
		return "", fmt.Errorf("unknown CA kind %q (want user or host)", kind)
	}
	line := ssh.MarshalAuthorizedKey(s.PublicKey())
	return string(line[:len(line)-1]) + " tandem-" + string(kind) + "-ca", nil
}

// UserCert describes a per-session certificate for a target login.
type UserCert struct {
	Key        ssh.PublicKey
	KeyID      string
	Principals []string
	Validity   time.Duration
	PTY        bool
	Forward    bool // permit-port-forwarding: the session is a port forward
}

// SignUser signs a user certificate for reaching a target. It is valid from
// one minute ago (clock skew between gateway and target) until Validity
// from now, and carries only the extensions the session needs.
func (k *Keys) SignUser(c UserCert) (*ssh.Certificate, error) {
	if len(c.Principals) == 0 {
		return nil, errors.New("sign user certificate: no principal")
	}
	now := k.now()
	ext := map[string]string{}
	if c.PTY {
		ext["permit-pty"] = ""
	}
	if c.Forward {
		ext["permit-port-forwarding"] = ""
	}
	cert := &ssh.Certificate{
		Key:             c.Key,
		Serial:          RandomSerial(),
		CertType:        ssh.UserCert,
		KeyId:           c.KeyID,
		ValidPrincipals: c.Principals,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(c.Validity).Unix()),
		Permissions:     ssh.Permissions{Extensions: ext},
	}
	if err := cert.SignCert(rand.Reader, k.UserCA); err != nil {
		return nil, fmt.Errorf("sign user certificate: %w", err)
	}
	return cert, nil
}

// HostSigner returns a signer presenting the gateway's host key with a host
// certificate for name, signed by the host CA. Certificates are cached and
// re-minted when less than half their validity is left.
func (k *Keys) HostSigner(names ...string) (ssh.Signer, error) {
	if len(names) == 0 {
		return nil, errors.New("host certificate: no name")
	}
	key := fmt.Sprint(names)
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.hostCerts[key]; ok && now.Add(hostCertValidity/2).Before(c.until) {
		return c.signer, nil
	}
	until := now.Add(hostCertValidity)
	cert := &ssh.Certificate{
		Key:             k.HostKey.PublicKey(),
		Serial:          RandomSerial(),
		CertType:        ssh.HostCert,
		KeyId:           "tandem host " + names[0],
		ValidPrincipals: names,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(until.Unix()),
	}
	if err := cert.SignCert(rand.Reader, k.HostCA); err != nil {
		return nil, fmt.Errorf("sign host certificate: %w", err)
	}
	s, err := ssh.NewCertSigner(cert, k.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host certificate signer: %w", err)
	}
	k.hostCerts[key] = cachedCert{signer: s, until: until}
	return s, nil
}

// RandomSerial is a certificate serial: random, so that serials of
// independent signers (the gateway, the emergency CA) do not collide.
func RandomSerial() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return binary.BigEndian.Uint64(b[:])
}
