// Package vault keeps the data keys that encrypt Tandem's evidence: one key
// per tenant, retention class and UTC day, wrapped by a key-encryption key
// (KEK) kept outside the data directory. Destroying a day's key
// (crypto-shredding) makes everything it encrypted unreadable for good,
// while the ciphertext — and the audit log's Merkle leaves over it — stays
// in place, so proofs over the log still hold (M10, M14, M16).
//
// The package knows nothing of recordings or the audit log: it hands out
// keys, finds them again by id, lists them and destroys them.
package vault

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
	"sort"
	"strings"
	"sync"
	"time"
)

// Errors about data keys. They are wrapped with the class, tenant and day.
var (
	// ErrShredded: the data key was destroyed on purpose (retention,
	// contract end); what it protected is gone for good.
	ErrShredded = errors.New("data key destroyed (crypto-shredded); data of that tenant and day are unreadable")
	// ErrNoKey: no data key exists, nor a record of its destruction
	// (wrong data directory, or a key store restored from an old backup).
	ErrNoKey = errors.New("data key not found")
	// ErrKEK: a wrapped data key does not open with the configured
	// key-encryption key.
	ErrKEK = errors.New("data key does not unwrap with this key-encryption key (wrong KEK?)")
	// ErrOtherKey: data names a key id other than the one the vault holds
	// for its class, tenant and day. KeyByID wraps it with ErrShredded
	// (the named key is gone); since a destroyed day never gets a new key,
	// a reader that must tell destruction from tampering checks it first.
	ErrOtherKey = errors.New("data names another key than the vault holds")
)

// KEK is a key-encryption key: it wraps the data keys kept in the vault.
// Implementations must use an authenticated cipher, so Unwrap with the wrong
// key fails rather than returning garbage.
type KEK interface {
	Wrap(dataKey []byte) ([]byte, error)
	Unwrap(wrapped []byte) ([]byte, error)
}

// Class is a retention class: what kind of data a key protects, and so how
// long it may be kept. The four classes and their default periods are
// described in docs/RETENTION.md.
type Class string

const (
	// Admin: who did what, when, where, under which approval.
	Admin Class = "admin"
	// Operational: source addresses, client versions, connection metadata.
	Operational Class = "operational"
	// Content: recordings and exec stream content.
	Content Class = "content"
	// Sealed: keystrokes typed at secret prompts. Stored apart from
	// content keys, so nothing that serves read grants can load them.
	Sealed Class = "sealed"
)

// Classes lists every class, in the order reports show them.
var Classes = []Class{Admin, Operational, Content, Sealed}

// Valid reports whether c is one of Classes.
func (c Class) Valid() bool {
	for _, k := range Classes {
		if c == k {
			return true
		}
	}
	return false
}

// dir is where the class's keys live under the vault directory. Content
// and sealed keep the directory names recordings used before classes
// existed, so existing vaults open unchanged.
func (c Class) dir() string {
	switch c {
	case Content:
		return "keys"
	case Sealed:
		return "sealed-keys"
	}
	return string(c) + "-keys"
}

// label starts the plaintext a KEK wraps; with tenant, day and id after
// it, a wrapped key cannot be passed off for another class, tenant or day
// by renaming or moving files, whatever the KEK.
func (c Class) label() string {
	switch c {
	case Content:
		return "tandem-data-key-v1"
	case Sealed:
		return "tandem-sealed-key-v1"
	}
	return "tandem-" + string(c) + "-key-v1"
}

const (
	dataKeySize  = 32
	keyExt       = ".key"
	tombstoneExt = ".shredded"
)

// keyFile is the JSON stored in <vault>/<class dir>/<tenant>/<day>.key.
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

// Vault keeps the data keys, one per class, tenant and UTC day, wrapped by
// a KEK. It is safe for concurrent use; several processes may share the
// directory (a key is created with a link that fails if another process
// won).
type Vault struct {
	dir   string
	kek   KEK
	mu    sync.Mutex
	cache map[string]cachedKey // "class/tenant/day"
	// onShred runs after a key's tombstone is written and before its
	// wrapped key is deleted (SetShredHook).
	onShred func(c Class, tenant, day string) error
}

// SetShredHook makes every Shred call fn after the tombstone is written
// and before the wrapped key is deleted; if fn fails, Shred fails and the
// key stays unusable (tombstoned) until a later Shred finishes. Backups use
// it to destroy their escrow copy of the key in the same step, so that a
// destroyed key is destroyed in every key store a backup points to.
// Call it before the vault is shared.
func (v *Vault) SetShredHook(fn func(c Class, tenant, day string) error) { v.onShred = fn }

// AddShredHook is SetShredHook for a further hook: fn runs after the hooks
// set before it, and Shred fails if any of them fails. Recordings on
// shared storage use it to destroy the copies of a key other gateways
// read them with.
func (v *Vault) AddShredHook(fn func(c Class, tenant, day string) error) {
	prev := v.onShred
	if prev == nil {
		v.onShred = fn
		return
	}
	v.onShred = func(c Class, tenant, day string) error {
		if err := prev(c, tenant, day); err != nil {
			return err
		}
		return fn(c, tenant, day)
	}
}

// KeyFile returns the stored (wrapped) form of the key of class, tenant
// and day (as Day writes it), as the vault keeps it: what another
// gateway holding the same KEK opens with OpenKeyFile. It never creates a
// key; ErrShredded or ErrNoKey when there is none.
func (v *Vault) KeyFile(c Class, tenant, day string) ([]byte, error) {
	if err := checkArgs(c, tenant); err != nil {
		return nil, err
	}
	if fileExists(v.tombPath(c, tenant, day)) {
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, ErrShredded)
	}
	raw, err := os.ReadFile(v.keyPath(c, tenant, day))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: read data key: %w", err)
	}
	return raw, nil
}

// OpenKeyFile unwraps a key in the stored form KeyFile returns, kept by
// another gateway's vault, with this vault's KEK, and returns its id and
// key. The wrapped key is bound to class, tenant, day and id, so a copy
// cannot be passed off for another; a different KEK gives ErrKEK. name
// says where the copy came from, for errors.
func (v *Vault) OpenKeyFile(c Class, tenant, day string, raw []byte, name string) (string, []byte, error) {
	return OpenKeyFileWith(v.kek, c, tenant, day, raw, name)
}

// OpenKeyFileWith is OpenKeyFile with the KEK kek, for a process that
// holds a KEK but no vault (a check of which KEK copies open with).
func OpenKeyFileWith(kek KEK, c Class, tenant, day string, raw []byte, name string) (string, []byte, error) {
	if err := checkArgs(c, tenant); err != nil {
		return "", nil, err
	}
	kf, wrapped, err := parseKeyFile(name, raw, tenant, day)
	if err != nil {
		return "", nil, err
	}
	key, err := unwrapBound(kek, wrapped, c, tenant, day, kf.ID, name)
	if err != nil {
		return "", nil, err
	}
	return kf.ID, key, nil
}

// Dir is the directory the vault keeps its keys in.
func (v *Vault) Dir() string { return v.dir }

// KeyPath is the file that holds the wrapped key of class, tenant and day
// (as Day writes it), relative to the vault directory.
func KeyPath(c Class, tenant, day string) string {
	return filepath.Join(c.dir(), tenant, day+keyExt)
}

// TombstonePath is the file that records the destruction of that key,
// relative to the vault directory.
func TombstonePath(c Class, tenant, day string) string {
	return filepath.Join(c.dir(), tenant, day+tombstoneExt)
}

// WriteTombstone records in the vault directory dir that the key id of
// class, tenant and day is destroyed, and deletes its key file if one is
// there. A restore uses it for keys destroyed after the backup was taken:
// such a day must read as shredded, not as missing.
func WriteTombstone(dir string, c Class, tenant, day, id string) error {
	if err := checkArgs(c, tenant); err != nil {
		return err
	}
	sub := filepath.Join(dir, c.dir(), tenant)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	tomb, err := json.Marshal(tombstone{Tenant: tenant, Day: day, ID: id})
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	if err := publishFile(sub, filepath.Join(dir, TombstonePath(c, tenant, day)), append(tomb, '\n')); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("vault: write tombstone: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, KeyPath(c, tenant, day))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("vault: %w", err)
	}
	return SyncDir(sub)
}

// Shredded tells what Shred removed.
type Shredded struct {
	Class  Class
	Tenant string
	Day    string
	KeyID  string
	Path   string // the wrapped key file that was deleted
}

// Open opens (creating if needed) the key store under dir.
func Open(dir string, kek KEK) (*Vault, error) {
	if kek == nil {
		return nil, errors.New("vault: no key-encryption key configured")
	}
	for _, c := range Classes {
		if err := os.MkdirAll(filepath.Join(dir, c.dir()), 0o700); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
	}
	return &Vault{dir: dir, kek: kek, cache: map[string]cachedKey{}}, nil
}

// KEK returns the key-encryption key the vault was opened with.
func (v *Vault) KEK() KEK { return v.kek }

func (v *Vault) keyPath(c Class, tenant, day string) string {
	return filepath.Join(v.dir, c.dir(), tenant, day+keyExt)
}

func (v *Vault) tombPath(c Class, tenant, day string) string {
	return filepath.Join(v.dir, c.dir(), tenant, day+tombstoneExt)
}

func cacheKey(c Class, tenant, day string) string { return string(c) + "/" + tenant + "/" + day }

func checkArgs(c Class, tenant string) error {
	if !c.Valid() {
		return fmt.Errorf("vault: unknown retention class %q", c)
	}
	if err := CheckName("tenant", tenant); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

// Key returns the key of class and tenant for the UTC day of day, creating
// and storing it (wrapped) on first use. The key id goes into whatever the
// key encrypts, so a reader finds it again with KeyByID. A shredded key is
// never created again: ErrShredded.
func (v *Vault) Key(c Class, tenant string, day time.Time) (id string, key []byte, err error) {
	if err := checkArgs(c, tenant); err != nil {
		return "", nil, err
	}
	d := Day(day)
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.cache[cacheKey(c, tenant, d)]; ok {
		return k.id, bytes.Clone(k.key), nil
	}
	k, err := v.loadLocked(c, tenant, d)
	if errors.Is(err, ErrNoKey) {
		k, err = v.createLocked(c, tenant, d)
	}
	if err != nil {
		return "", nil, err
	}
	return k.id, bytes.Clone(k.key), nil
}

// KeyByID returns the key of class, tenant and day (as Day writes it) with
// the given id, for reading; it never creates one. A key destroyed since
// (or replaced after a destruction) gives ErrShredded.
func (v *Vault) KeyByID(c Class, tenant, day, id string) ([]byte, error) {
	if err := checkArgs(c, tenant); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.cache[cacheKey(c, tenant, day)]
	if ok && fileExists(v.tombPath(c, tenant, day)) {
		// Another process on the same directory (`tandem retention run`
		// beside serve) destroyed the key after this one cached it. Shred
		// writes the tombstone first, so looking for it on every read
		// keeps a long-running reader from showing what was shredded.
		delete(v.cache, cacheKey(c, tenant, day))
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, ErrShredded)
	}
	if !ok {
		var err error
		if k, err = v.loadLocked(c, tenant, day); err != nil {
			return nil, err
		}
	}
	if k.id != id {
		return nil, fmt.Errorf("vault: %s %s/%s: data needs key %s, the vault holds %s (the old key was destroyed): %w: %w", c, tenant, day, id, k.id, ErrOtherKey, ErrShredded)
	}
	return bytes.Clone(k.key), nil
}

// loadLocked reads and unwraps a stored key. ErrShredded if a tombstone
// exists, ErrNoKey if nothing is stored.
func (v *Vault) loadLocked(c Class, tenant, day string) (cachedKey, error) {
	if _, err := os.Stat(v.tombPath(c, tenant, day)); err == nil {
		return cachedKey{}, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, ErrShredded)
	}
	path := v.keyPath(c, tenant, day)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cachedKey{}, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, ErrNoKey)
	}
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: read data key: %w", err)
	}
	kf, wrapped, err := parseKeyFile(path, raw, tenant, day)
	if err != nil {
		return cachedKey{}, err
	}
	key, err := unwrapBound(v.kek, wrapped, c, tenant, day, kf.ID, path)
	if err != nil {
		return cachedKey{}, err
	}
	k := cachedKey{id: kf.ID, key: bytes.Clone(key)}
	v.cache[cacheKey(c, tenant, day)] = k
	return k, nil
}

func keyBinding(c Class, tenant, day, id string) []byte {
	return []byte(c.label() + "\x00" + tenant + "\x00" + day + "\x00" + id + "\x00")
}

func (v *Vault) createLocked(c Class, tenant, day string) (cachedKey, error) {
	key := make([]byte, dataKeySize)
	idb := make([]byte, 8)
	if _, err := rand.Read(key); err != nil {
		return cachedKey{}, fmt.Errorf("vault: random: %w", err)
	}
	if _, err := rand.Read(idb); err != nil {
		return cachedKey{}, fmt.Errorf("vault: random: %w", err)
	}
	id := hex.EncodeToString(idb)
	wrapped, err := v.kek.Wrap(append(keyBinding(c, tenant, day, id), key...))
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: wrap data key: %w", err)
	}
	data, err := json.Marshal(keyFile{Version: 1, Tenant: tenant, Day: day, ID: id, Wrapped: base64.StdEncoding.EncodeToString(wrapped)})
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: %w", err)
	}
	dir := filepath.Join(v.dir, c.dir(), tenant)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cachedKey{}, fmt.Errorf("vault: %w", err)
	}
	err = publishFile(dir, v.keyPath(c, tenant, day), append(data, '\n'))
	if errors.Is(err, fs.ErrExist) {
		// Another process created the key first: use theirs.
		return v.loadLocked(c, tenant, day)
	}
	if err != nil {
		return cachedKey{}, fmt.Errorf("vault: store data key: %w", err)
	}
	k := cachedKey{id: id, key: key}
	v.cache[cacheKey(c, tenant, day)] = k
	return k, nil
}

// publishFile writes data to a temporary file in dir, syncs it, and links it
// to path, failing with fs.ErrExist if path exists: the file appears whole
// or not at all, and never replaces another.
func publishFile(dir, path string, data []byte) error {
	return placeFile(dir, path, data, os.Link)
}

// placeFile writes data to a synced temporary file (0600) in dir, puts it
// at path with place (os.Link: never over another file; os.Rename:
// replacing it) and syncs dir, so path appears whole or not at all.
func placeFile(dir, path string, data []byte, place func(tmp, path string) error) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // after a rename, nothing is there
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
	if err := place(name, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a directory's new entries (created, linked or removed
// files) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Shred destroys the key of class and tenant for the UTC day of day
// (crypto-shredding): it leaves a tombstone naming the key id, then
// deletes the wrapped key. Afterwards everything that key encrypted fails
// to open with ErrShredded, and Key refuses to create a new key for that
// day. Shredding an already shredded day returns ErrShredded; a day that
// never had a key returns ErrNoKey. Copies of the key store in backups made
// by `tandem backup` go with it through the shred hook (SetShredHook);
// other copies must expire on their own (docs/RETENTION.md).
func (v *Vault) Shred(c Class, tenant string, day time.Time) (Shredded, error) {
	if err := checkArgs(c, tenant); err != nil {
		return Shredded{}, err
	}
	d := Day(day)
	v.mu.Lock()
	defer v.mu.Unlock()
	id, path, err := v.shredLocked(c, tenant, d)
	if err != nil {
		return Shredded{}, err
	}
	return Shredded{Class: c, Tenant: tenant, Day: d, KeyID: id, Path: path}, nil
}

func (v *Vault) shredLocked(c Class, tenant, d string) (id, path string, err error) {
	path = v.keyPath(c, tenant, d)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, terr := os.Stat(v.tombPath(c, tenant, d)); terr == nil {
			return "", "", fmt.Errorf("vault: shred %s %s/%s: %w", c, tenant, d, ErrShredded)
		}
		return "", "", fmt.Errorf("vault: shred %s %s/%s: %w", c, tenant, d, ErrNoKey)
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
	if err := publishFile(dir, v.tombPath(c, tenant, d), append(tomb, '\n')); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("vault: shred: write tombstone: %w", err)
	}
	if v.onShred != nil {
		if err := v.onShred(c, tenant, d); err != nil {
			return "", "", fmt.Errorf("vault: shred %s %s/%s: %w", c, tenant, d, err)
		}
	}
	if err := os.Remove(path); err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	if err := SyncDir(dir); err != nil {
		return "", "", fmt.Errorf("vault: shred: %w", err)
	}
	delete(v.cache, cacheKey(c, tenant, d))
	return kf.ID, path, nil
}

// KeyInfo describes one stored key or the tombstone of a destroyed one.
type KeyInfo struct {
	Class    Class
	Tenant   string
	Day      string // as Day writes it
	ID       string // empty for a tombstone whose key file was malformed
	Shredded bool
	// Pending: a tombstone exists but the key file is still there (a
	// crash between the two steps of Shred); the key is unusable, and the
	// next Shred of that day finishes the job.
	Pending bool
}

// List returns every key and tombstone in the vault, sorted by class (in
// the order of Classes), tenant and day. It reads only file names and
// tombstones, never unwraps a key.
func (v *Vault) List() ([]KeyInfo, error) {
	var out []KeyInfo
	for _, c := range Classes {
		tenants, err := os.ReadDir(filepath.Join(v.dir, c.dir()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("vault: list: %w", err)
		}
		for _, t := range tenants {
			if !t.IsDir() || CheckName("tenant", t.Name()) != nil {
				continue
			}
			infos, err := v.listTenant(c, t.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, infos...)
		}
	}
	return out, nil
}

func (v *Vault) listTenant(c Class, tenant string) ([]KeyInfo, error) {
	entries, err := os.ReadDir(filepath.Join(v.dir, c.dir(), tenant))
	if err != nil {
		return nil, fmt.Errorf("vault: list: %w", err)
	}
	days := map[string]*KeyInfo{}
	for _, e := range entries {
		name := e.Name()
		day, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		if _, err := time.Parse(dayLayout, day); err != nil || (ext != keyExt && ext != tombstoneExt) {
			continue // temporary files and anything foreign
		}
		k := days[day]
		if k == nil {
			k = &KeyInfo{Class: c, Tenant: tenant, Day: day}
			days[day] = k
		}
		if ext == tombstoneExt {
			k.Shredded = true
			var tomb tombstone
			if raw, err := os.ReadFile(filepath.Join(v.dir, c.dir(), tenant, name)); err == nil && json.Unmarshal(raw, &tomb) == nil && k.ID == "" {
				k.ID = tomb.ID
			}
			continue
		}
		var kf keyFile
		if raw, err := os.ReadFile(filepath.Join(v.dir, c.dir(), tenant, name)); err == nil && json.Unmarshal(raw, &kf) == nil {
			k.ID = kf.ID
		}
	}
	out := make([]KeyInfo, 0, len(days))
	for _, k := range days {
		k.Pending = k.Shredded && fileExists(v.keyPath(c, tenant, k.Day))
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Day < out[j].Day })
	return out, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ListDir is List for the vault in dir, without opening it: it needs no
// KEK, since it reads only file names and tombstones.
func ListDir(dir string) ([]KeyInfo, error) { return (&Vault{dir: dir}).List() }
