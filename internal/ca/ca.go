// Package ca holds the gateway's long-lived keys and signs the short-lived
// certificates that let it reach targets (M2) and present itself as any
// configured host in jump mode.
//
// Three ECDSA P-384 keys live in <data_dir>/keys, each created once on first
// use and never silently replaced: the gateway's host key, the user CA that
// targets trust (TrustedUserCAKeys), and the host CA that clients trust with
// one @cert-authority line.
//
// The two CAs can be rotated (rotate.go): for a while a CA publishes two
// keys, so that targets and clients trust old and new before the gateway
// signs with the new one.
package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// Keys holds the gateway's signers. UserCA and HostCA change when a
// rotation finishes (Refresh); read them through the methods while the
// gateway serves.
type Keys struct {
	HostKey ssh.Signer
	UserCA  ssh.Signer
	HostCA  ssh.Signer
	now     func() time.Time
	dir     string

	mu        sync.Mutex
	hostCerts map[string]cachedCert
	// also holds the keys a rotation publishes besides the signing one.
	also map[Kind][]published
	wrap func(Kind, ssh.Signer) ssh.Signer
}

type published struct {
	key  ssh.PublicKey
	role string // next or retired
}

type cachedCert struct {
	signer ssh.Signer
	until  time.Time
}

// KeyType is the kind of key the gateway makes for itself (host key,
// user CA, host CA): gateway.key_type. Both are ECDSA curves the BSI
// lists for SSH; P-384 has the larger margin, P-256 is what OpenSSH and
// OpenSSL verify fastest (docs/PERFORMANCE.md: each P-384 verification
// costs an OpenSSH client or sshd about 4 ms with OpenSSL 3.0, and every
// login verifies two). Keys already on disk keep their type; a CA
// rotation makes its next key of the configured type.
type KeyType string

const (
	KeyP384 KeyType = "ecdsa-p384"
	KeyP256 KeyType = "ecdsa-p256"
	// DefaultKeyType is the type used when none is configured.
	DefaultKeyType = KeyP384
)

// KeyTypes lists the accepted values, for errors and docs.
var KeyTypes = []KeyType{KeyP384, KeyP256}

// curve returns the elliptic curve of t; the empty type is the default.
func (t KeyType) curve() (elliptic.Curve, error) {
	switch t {
	case KeyP384, "":
		return elliptic.P384(), nil
	case KeyP256:
		return elliptic.P256(), nil
	}
	return nil, fmt.Errorf("unknown key type %q (known: %s, %s)", string(t), KeyP384, KeyP256)
}

// Valid reports whether t is a known key type (or empty: the default).
func (t KeyType) Valid() error {
	_, err := t.curve()
	return err
}

// LoadOrCreate is LoadOrCreateType with the default key type.
func LoadOrCreate(dir string, now func() time.Time) (*Keys, error) {
	return LoadOrCreateType(dir, now, DefaultKeyType)
}

// LoadOrCreateType reads the three keys from dir, creating the directory
// (0700) and any key file that does not exist yet (0600), of type kt. A key
// file that exists but cannot be read or parsed is an error: replacing it
// would silently break every target's trust.
func LoadOrCreateType(dir string, now func() time.Time, kt KeyType) (*Keys, error) {
	if err := kt.Valid(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	k := &Keys{now: now, dir: dir, hostCerts: map[string]cachedCert{}}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{HostKeyFile, &k.HostKey}, {UserCAFile, &k.UserCA}, {HostCAFile, &k.HostCA}} {
		s, err := loadOrCreate(filepath.Join(dir, f.name), kt)
		if err != nil {
			return nil, err
		}
		*f.dst = s
	}
	return k, k.loadPublished()
}

// Load reads the keys without creating any (for read-only commands that
// must not invent a CA, such as printing it for an auditor).
func Load(dir string) (*Keys, error) {
	k := &Keys{now: time.Now, dir: dir, hostCerts: map[string]cachedCert{}}
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
	return k, k.loadPublished()
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

// LoadOrCreateKey loads the ECDSA P-384 key at path, creating it (0600,
// with path.pub beside it) when it does not exist, as the gateway's own
// keys are: the link key of a cluster node (cluster.link_key).
func LoadOrCreateKey(path string) (ssh.Signer, error) { return loadOrCreate(path, KeyP384) }

func loadOrCreate(path string, kt KeyType) (ssh.Signer, error) {
	s, err := load(path)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createKey(path, kt)
}

// createKey makes a new key at path. It is written whole to a temporary
// file, synced and then linked to its name: a crash leaves no key or the
// whole key, never half of one, and a link never replaces a file, so if
// another process created the key meanwhile, theirs is kept and returned.
func createKey(path string, kt KeyType) (ssh.Signer, error) {
	curve, err := kt.curve()
	if err != nil {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "tandem "+filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	tmp, err := writeTemp(path, pem.EncodeToMemory(block), 0o600)
	if err != nil {
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return load(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	s := mustSigner(priv)
	return s, writePublic(path, s)
}

// writePublic writes path.pub, the public half for people and scripts to
// read; it is derived from the key, so replacing it is harmless.
func writePublic(path string, s ssh.Signer) error {
	return replaceFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
}

// replaceFile writes data to path through a synced temporary file and a
// rename, so that readers see the old or the new content, never a part.
// Not for private keys: those are never replaced (createKey).
func replaceFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new file beside path and syncs it.
func writeTemp(path string, data []byte, mode fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// syncDir makes a new or renamed directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func mustSigner(priv *ecdsa.PrivateKey) ssh.Signer {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		panic(err) // an ECDSA key is always usable as a signer
	}
	return s
}

// PublicLine returns the signing CA's public key in authorized_keys
// format, with a comment naming it.
func (k *Keys) PublicLine(kind Kind) (string, error) {
	s, err := k.signer(kind)
	if err != nil {
		return "", err
	}
	return publicLine(s.PublicKey(), kind, ""), nil
}

// PublicLines returns every key of the CA that targets (user) or clients
// (host) must trust now: the signing one first, and during a rotation the
// next or the retired one as well.
func (k *Keys) PublicLines(kind Kind) ([]string, error) {
	s, err := k.signer(kind)
	if err != nil {
		return nil, err
	}
	lines := []string{publicLine(s.PublicKey(), kind, "")}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.also[kind] {
		lines = append(lines, publicLine(p.key, kind, p.role))
	}
	return lines, nil
}

func publicLine(key ssh.PublicKey, kind Kind, role string) string {
	line := ssh.MarshalAuthorizedKey(key)
	comment := " tandem-" + string(kind) + "-ca"
	if role != "" {
		comment += "-" + role
	}
	return string(line[:len(line)-1]) + comment
}

// signer returns the CA that signs for kind now.
func (k *Keys) signer(kind Kind) (ssh.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch kind {
	case User:
		return k.UserCA, nil
	case Host:
		return k.HostCA, nil
	}
	return nil, fmt.Errorf("unknown CA kind %q (want user or host)", kind)
}

// WrapCA replaces each CA signer by f(kind, signer), now and after every
// Refresh (monitoring counts signatures this way).
func (k *Keys) WrapCA(f func(Kind, ssh.Signer) ssh.Signer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wrap = f
	k.UserCA, k.HostCA = f(User, k.UserCA), f(Host, k.HostCA)
}

// Refresh re-reads the CA keys and what a rotation publishes, so that a
// running gateway signs with the new CA once a rotation has finished. It
// reports which CAs now sign with a different key. On an error the keys
// in use stay.
func (k *Keys) Refresh() ([]Kind, error) {
	user, err := load(filepath.Join(k.dir, UserCAFile))
	if err != nil {
		return nil, err
	}
	host, err := load(filepath.Join(k.dir, HostCAFile))
	if err != nil {
		return nil, err
	}
	also, err := readPublished(k.dir)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.also = also
	var changed []Kind
	if !sameKey(user, k.UserCA) {
		k.UserCA = k.wrapped(User, user)
		changed = append(changed, User)
	}
	if !sameKey(host, k.HostCA) {
		k.HostCA = k.wrapped(Host, host)
		k.hostCerts = map[string]cachedCert{} // present certificates of the new CA
		changed = append(changed, Host)
	}
	return changed, nil
}

func (k *Keys) wrapped(kind Kind, s ssh.Signer) ssh.Signer {
	if k.wrap == nil {
		return s
	}
	return k.wrap(kind, s)
}

func (k *Keys) loadPublished() error {
	also, err := readPublished(k.dir)
	if err != nil {
		return err
	}
	k.also = also
	return nil
}

func sameKey(a, b ssh.Signer) bool {
	return bytes.Equal(a.PublicKey().Marshal(), b.PublicKey().Marshal())
}

// UserCert describes a per-session certificate for a target login.
type UserCert struct {
	Key        ssh.PublicKey
	KeyID      string
	Principals []string
	Validity   time.Duration
	PTY        bool
	Forward    bool // permit-port-forwarding: the session is a port forward
	// SourceAddress, when not empty, becomes the source-address critical
	// option (addresses or CIDR networks): the target's sshd accepts the
	// certificate only from there, so a copy taken off the gateway is
	// useless elsewhere.
	SourceAddress []string
}

// SignUser signs a user certificate for reaching a target. It is valid from
// one minute ago (clock skew between gateway and target) until Validity
// from now, and carries only the extensions the session needs.
func (k *Keys) SignUser(c UserCert) (*ssh.Certificate, error) {
	if len(c.Principals) == 0 {
		return nil, errors.New("sign user certificate: no principal")
	}
	signer, err := k.signer(User)
	if err != nil {
		return nil, err
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
	if len(c.SourceAddress) > 0 {
		cert.CriticalOptions = map[string]string{"source-address": strings.Join(c.SourceAddress, ",")}
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
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

// LiveHostSigner is HostSigner for a server configuration that outlives
// a certificate: x/crypto asks its host keys for their public key and a
// signature at every handshake, and this signer answers with the
// certificate in force then, re-minted (by HostSigner) when less than half
// its validity is left, and by the new host CA after a rotation. The
// gateway builds its own configuration once, at start and at each reload;
// with a fixed certificate it would present an expired one after
// hostCertValidity, and every client that trusts the host CA would refuse
// the gateway.
func (k *Keys) LiveHostSigner(names ...string) (ssh.Signer, error) {
	s, err := k.HostSigner(names...)
	if err != nil {
		return nil, err
	}
	return &liveHostSigner{k: k, names: names, last: s}, nil
}

type liveHostSigner struct {
	k     *Keys
	names []string
	mu    sync.Mutex
	last  ssh.Signer
}

// current is the certificate signer in force. Should minting fail (it
// cannot while the host CA is in memory), the last one serves on.
func (l *liveHostSigner) current() ssh.Signer {
	s, err := l.k.HostSigner(l.names...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.last = s
	}
	return l.last
}

func (l *liveHostSigner) PublicKey() ssh.PublicKey { return l.current().PublicKey() }

func (l *liveHostSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return l.current().Sign(r, data)
}

// SignWithAlgorithm keeps the certificate signer's algorithm choice
// (x/crypto picks the algorithm through this interface).
func (l *liveHostSigner) SignWithAlgorithm(r io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s := l.current()
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(r, data, algorithm)
	}
	return s.Sign(r, data)
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
