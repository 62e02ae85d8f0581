package record

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Errors about data keys. They are wrapped with the tenant and day.
var (
	// ErrShredded: the data key was destroyed on purpose (retention,
	// contract end); the recordings it protected are gone for good.
	ErrShredded = errors.New("data key destroyed (crypto-shredded); recordings of that tenant and day are unreadable")
	// ErrNoKey: no data key exists, nor a record of its destruction
	// (wrong data directory, or a key store restored from an old backup).
	ErrNoKey = errors.New("data key not found")
	// ErrKEK: a wrapped data key does not open with the configured
	// key-encryption key.
	ErrKEK = errors.New("data key does not unwrap with this key-encryption key (wrong KEK?)")
)

// KEK is a key-encryption key: it wraps the data keys kept in the vault.
// Implementations must use an authenticated cipher, so Unwrap with the wrong
// key fails rather than returning garbage.
type KEK interface {
	Wrap(dataKey []byte) ([]byte, error)
	Unwrap(wrapped []byte) ([]byte, error)
}

const (
	dataKeySize  = 32
	keysDir      = "keys"
	keyExt       = ".key"
	tombstoneExt = ".shredded"
	// keyLabel starts the plaintext a KEK wraps; with tenant, day and id
	// after it, a wrapped key cannot be passed off for another tenant or
	// day by renaming files, whatever the KEK.
	keyLabel = "tandem-data-key-v1"
	// sealedKeysDir and sealedKeyLabel are those of the sealed class: a
	// sealed key is stored apart, and its label differs, so a sealed key
	// file moved into keys/ does not unwrap as a data key, nor the other
	// way round.
	sealedKeysDir  = "sealed-keys"
	sealedKeyLabel = "tandem-sealed-key-v1"
)

// keyClass tells the two kinds of keys of a tenant and day apart.
type keyClass int

const (
	// classData keys encrypt recordings; read grants use them.
	classData keyClass = iota
	// classSealed keys encrypt sealed keystrokes (input typed at a secret
	// prompt). Nothing that serves read grants loads them; only the
	// disclosure process (M15) is meant to.
	classSealed
)

func (c keyClass) dir() string {
	if c == classSealed {
		return sealedKeysDir
	}
	return keysDir
}

func (c keyClass) label() string {
	if c == classSealed {
		return sealedKeyLabel
	}
	return keyLabel
}

func (c keyClass) cacheKey(tenant, day string) string {
	if c == classSealed {
		return "sealed:" + tenant + "/" + day
	}
	return tenant + "/" + day
}

// keyFile is the JSON stored in <vault>/keys/<tenant>/<day>.key.
type keyFile struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	Day     string `json:"day"`
	ID      string `json:"id"`
	Wrapped string `json:"wrapped"` // base64 of KEK.Wrap(label…key)
}

// tombstone is the JSON left in <day>.shredded when a key is destroyed.
type tombstone struct {
	Tenant string `json:"tenant"`
	Day    string `json:"day"`
	ID     string `json:"id"`
}

type cachedKey struct {
	id  string
	key []byte
}

// Vault keeps the data keys, one per tenant and UTC day, wrapped by a KEK,
// and apart from them (in sealed-keys/) the sealed keys, also one per
// tenant and day, which encrypt sealed keystrokes.
// It is safe for concurrent use; several processes may share the directory
// (a key is created with a link that fails if another process won).
type Vault struct {
	dir   string
	kek   KEK
	mu    sync.Mutex
	cache map[string]cachedKey // "tenant/day"
}

// Shredded tells what Shred removed.
type Shredded struct {
	Tenant string
	Day    string
	KeyID  string
	Path   string // the wrapped key file that was deleted
	// SealedPath is the sealed key file deleted with it, if the day had one.
	SealedPath string
}

// OpenVault opens (creating if needed) the key store under dir/keys.
func OpenVault(dir string, kek KEK) (*Vault, error) {
	if kek == nil {
		return nil, errors.New("vault: no key-encryption key configured")
	}
	if err := os.MkdirAll(filepath.Join(dir, keysDir), 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, sealedKeysDir), 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return &Vault{dir: dir, kek: kek, cache: map[string]cachedKey{}}, nil
}

func (v *Vault) keyPath(c keyClass, tenant, day string) string {
	return filepath.Join(v.dir, c.dir(), tenant, day+keyExt)
}

func (v *Vault) tombPath(c keyClass, tenant, day string) string {
	return filepath.Join(v.dir, c.dir(), tenant, day+tombstoneExt)
}

// DataKey returns the data key of tenant for the UTC day of day, creating
// and storing it (wrapped) on first use. The key id goes into recording
// headers. A shredded key is never created again: ErrShredded.
func (v *Vault) DataKey(tenant string, day time.Time) (id string, key []byte, err error) {
	return v.classKey(classData, tenant, day)
}

// sealedKey returns the sealed key of tenant for the UTC day of day,
// creating it on first use, like DataKey. It is not exported: the package
// uses it to seal keystrokes and, in OpenSealed, for the disclosure
// process; nothing that serves read grants calls it.
func (v *Vault) sealedKey(tenant string, day time.Time) (id string, key []byte, err error) {
	return v.classKey(classSealed, tenant, day)
}

func (v *Vault) classKey(class keyClass, tenant string, day time.Time) (id string, key []byte, err error) {
	if err := checkName("tenant", tenant); err != nil {
		return "", nil, fmt.Errorf("vault: %w", err)
	}
	d := Day(day)
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.cache[class.cacheKey(tenant, d)]; ok {
		return c.id, bytes.Clone(c.key), nil
	}
	c, err := v.loadLocked(class, tenant, d)
	if errors.Is(err, ErrNoKey) {
		c, err = v.createLocked(class, tenant, d)
	}
	if err != nil {
		return "", nil, err
	}
	return c.id, bytes.Clone(c.key), nil
}

// key returns the data key with the given id, for reading; it never
// creates one.
func (v *Vault) key(tenant, day, id string) ([]byte, error) {
	return v.classKeyByID(classData, tenant, day, id)
}

func (v *Vault) classKeyByID(class keyClass, tenant, day, id string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cache[class.cacheKey(tenant, day)]
	if !ok {
		var err error
		if c, err = v.loadLocked(class, tenant, day); err != nil {
			return nil, err
		}
	}
	if c.id != id {
		return nil, fmt.Errorf("vault: %s/%s: recording needs data key %s, the vault holds %s (the old key was destroyed): %w", tenant, day, id, c.id, ErrShredded)
	}
	return c.key, nil
}

// loadLocked reads and unwraps a stored key. ErrShredded if a tombstone
// exists, ErrNoKey if nothing is stored.
func (v *Vault) loadLocked(class keyClass, tenant, day string) (cachedKey, error) {
	if _, err := os.Stat(v.tombPath(class, tenant, day)); err == nil {
		return cachedKey{}, fmt.Errorf("vault: %s/%s: %w", tenant, day, ErrShredded)
	}
	path := v.keyPath(class, tenant, day)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cachedKey{}, fmt.Errorf("vault: %s/%s: %w", tenant, day, ErrNoKey)
	}
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: read data key: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil || kf.Version != 1 || kf.Tenant != tenant || kf.Day != day || checkName("key id", kf.ID) != nil {
		return cachedKey{}, fmt.Errorf("vault: %s: malformed data key file", path)
	}
	wrapped, err := base64.StdEncoding.DecodeString(kf.Wrapped)
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: %s: malformed data key file", path)
	}
	pt, err := v.kek.Unwrap(wrapped)
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: %s/%s: %w", tenant, day, err)
	}
	label := keyBinding(class, tenant, day, kf.ID)
	if len(pt) != len(label)+dataKeySize || !bytes.Equal(pt[:len(label)], label) {
		return cachedKey{}, fmt.Errorf("vault: %s: key is bound to another tenant, day, id or class", path)
	}
	c := cachedKey{id: kf.ID, key: bytes.Clone(pt[len(label):])}
	v.cache[class.cacheKey(tenant, day)] = c
	return c, nil
}

func keyBinding(class keyClass, tenant, day, id string) []byte {
	return []byte(class.label() + "\x00" + tenant + "\x00" + day + "\x00" + id + "\x00")
}

func (v *Vault) createLocked(class keyClass, tenant, day string) (cachedKey, error) {
	key := make([]byte, dataKeySize)
	idb := make([]byte, 8)
	if _, err := rand.Read(key); err != nil {
		return cachedKey{}, fmt.Errorf("vault: random: %w", err)
	}
	if _, err := rand.Read(idb); err != nil {
		return cachedKey{}, fmt.Errorf("vault: random: %w", err)
	}
	id := hex.EncodeToString(idb)
	wrapped, err := v.kek.Wrap(append(keyBinding(class, tenant, day, id), key...))
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: wrap data key: %w", err)
	}
	data, err := json.Marshal(keyFile{Version: 1, Tenant: tenant, Day: day, ID: id, Wrapped: base64.StdEncoding.EncodeToString(wrapped)})
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: %w", err)
	}
	dir := filepath.Join(v.dir, class.dir(), tenant)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cachedKey{}, fmt.Errorf("vault: %w", err)
	}
	err = publishFile(dir, v.keyPath(class, tenant, day), append(data, '\n'))
	if errors.Is(err, fs.ErrExist) {
		// Another process created the key first: use theirs.
		return v.loadLocked(class, tenant, day)
	}
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: store data key: %w", err)
	}
	c := cachedKey{id: id, key: key}
	v.cache[class.cacheKey(tenant, day)] = c
	return c, nil
}

// publishFile writes data to a temporary file in dir, syncs it, and links it
// to path, failing with fs.ErrExist if path exists: the file appears whole
// or not at all, and never replaces another.
func publishFile(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Shred destroys the data key of tenant for the UTC day of day
// (crypto-shredding), and the sealed key of that day with it: it leaves a
// tombstone naming the key id, then deletes the wrapped key. Afterwards
// every recording (and sealed keystrokes) of that tenant and day fails to
// open with ErrShredded, and DataKey refuses to create a new key for that
// day. Shredding an already shredded day returns ErrShredded; a day that
// never had a key returns ErrNoKey. Copies of the key store in backups
// must expire on their own (STANDARDS.md, Crypto-shredding).
func (v *Vault) Shred(tenant string, day time.Time) (Shredded, error) {
	if err := checkName("tenant", tenant); err != nil {
		return Shredded{}, fmt.Errorf("vault: %w", err)
	}
	d := Day(day)
	v.mu.Lock()
	defer v.mu.Unlock()
	// The sealed key goes first: if the data key's shredding then fails
	// or was done before, no sealed key outlives its day's recordings.
	_, sealedPath, err := v.shredLocked(classSealed, tenant, d)
	if err != nil && !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrShredded) {
		return Shredded{}, err
	}
	id, path, err := v.shredLocked(classData, tenant, d)
	if err != nil {
		return Shredded{}, err
	}
	return Shredded{Tenant: tenant, Day: d, KeyID: id, Path: path, SealedPath: sealedPath}, nil
}

func (v *Vault) shredLocked(class keyClass, tenant, d string) (id, path string, err error) {
	path = v.keyPath(class, tenant, d)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, terr := os.Stat(v.tombPath(class, tenant, d)); terr == nil {
			return "", "", fmt.Errorf("vault: shred %s/%s: %w", tenant, d, ErrShredded)
		}
		return "", "", fmt.Errorf("vault: shred %s/%s: %w", tenant, d, ErrNoKey)
	}
	if err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	var kf keyFile
	_ = json.Unmarshal(raw, &kf) // a malformed file is destroyed all the same
	dir := filepath.Dir(path)
	tomb, err := json.Marshal(tombstone{Tenant: tenant, Day: d, ID: kf.ID})
	if err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	// The tombstone comes first: a crash in between leaves the key marked
	// destroyed (unusable), and the next Shred deletes it.
	if err := publishFile(dir, v.tombPath(class, tenant, d), append(tomb, '\n')); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("vault: shred: write tombstone: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	delete(v.cache, class.cacheKey(tenant, d))
	return kf.ID, path, nil
}
