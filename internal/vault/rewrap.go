package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Rewrapped tells what Rewrap did.
type Rewrapped struct {
	// Rewrapped: key files this run moved from the old KEK to the new one.
	Rewrapped int
	// Already: key files that opened with the new KEK only, rewrapped by
	// an earlier run that was interrupted.
	Already int
	// Shredded: tombstoned days, left as they are.
	Shredded int
}

// Rewrap moves every data key of every class in the vault directory dir
// from the KEK old to the KEK new: each key file is unwrapped, its binding
// to class, tenant, day and id checked, wrapped again and replaced
// atomically. The data keys themselves do not change, so nothing they
// encrypted needs rewriting.
//
// A crash at any point leaves every key file whole and wrapped by either
// KEK; a key that opens only with new counts as already done, so running
// Rewrap again finishes an interrupted rotation. Nothing else may use the
// vault meanwhile: a process holding old would fail on keys it loads
// after they moved.
func Rewrap(dir string, old, new KEK) (Rewrapped, error) {
	var r Rewrapped
	if old == nil || new == nil {
		return r, errors.New("vault: rewrap needs the old and the new key-encryption key")
	}
	keys, err := ListDir(dir)
	if err != nil {
		return r, err
	}
	for _, k := range keys {
		if k.Shredded {
			// A pending shred's key file is unusable already; rewrapping
			// it would only keep destroyed material readable longer.
			r.Shredded++
			continue
		}
		done, err := rewrapOne(dir, k.Class, k.Tenant, k.Day, old, new)
		if err != nil {
			return r, err
		}
		if done {
			r.Already++
		} else {
			r.Rewrapped++
		}
	}
	return r, nil
}

// rewrapOne rewraps one key file; already reports that it opened with new.
func rewrapOne(dir string, c Class, tenant, day string, old, new KEK) (already bool, err error) {
	path := filepath.Join(dir, KeyPath(c, tenant, day))
	raw, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("vault: rewrap: %w", err)
	}
	data, already, err := RewrapKeyFile(c, tenant, day, raw, old, new, path)
	if err != nil || already {
		return already, err
	}
	sub := filepath.Dir(path)
	if err := replaceFile(sub, path, data); err != nil {
		return false, fmt.Errorf("vault: rewrap %s: %w", path, err)
	}
	// A shred by another process (tandem retention run) may have written
	// its tombstone and deleted the old file while this one was being
	// wrapped: the rename above then brought the key back. Shred writes
	// the tombstone first, so seeing none here means the shred, if any,
	// has not yet deleted the file and will delete the new one.
	if fileExists(filepath.Join(dir, TombstonePath(c, tenant, day))) {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return false, fmt.Errorf("vault: rewrap: %w", err)
		}
		if err := SyncDir(sub); err != nil {
			return false, fmt.Errorf("vault: rewrap: %w", err)
		}
	}
	return false, nil
}

// RewrapKeyFile moves one key in its stored form (KeyFile's, or a copy
// kept in shared storage) from the KEK old to the KEK new and returns the
// new stored form. A key that opens only with new is already moved:
// already is set and out is nil. A key that opens with neither gives an
// error wrapping ErrKEK. name says where the key is, for errors.
func RewrapKeyFile(c Class, tenant, day string, raw []byte, old, new KEK, name string) (out []byte, already bool, err error) {
	if err := checkArgs(c, tenant); err != nil {
		return nil, false, err
	}
	kf, wrapped, err := parseKeyFile(name, raw, tenant, day)
	if err != nil {
		return nil, false, err
	}
	key, err := unwrapBound(old, wrapped, c, tenant, day, kf.ID, name)
	if errors.Is(err, ErrKEK) {
		if _, nerr := unwrapBound(new, wrapped, c, tenant, day, kf.ID, name); nerr == nil {
			return nil, true, nil
		} else if !errors.Is(nerr, ErrKEK) {
			return nil, false, nerr
		}
		return nil, false, fmt.Errorf("vault: %s: opens with neither the old nor the new key-encryption key: %w", name, ErrKEK)
	}
	if err != nil {
		return nil, false, err
	}
	label := keyBinding(c, tenant, day, kf.ID)
	nw, err := new.Wrap(append(label, key...))
	if err != nil {
		return nil, false, fmt.Errorf("vault: rewrap %s: %w", name, err)
	}
	// Open what is about to replace the only copy of the key before it
	// does: a new KEK that cannot unwrap its own output must not cost a key.
	if back, err := unwrapBound(new, nw, c, tenant, day, kf.ID, name); err != nil || !bytes.Equal(back, key) {
		return nil, false, fmt.Errorf("vault: rewrap %s: the new key-encryption key does not open what it wrapped", name)
	}
	kf.Wrapped = base64.StdEncoding.EncodeToString(nw)
	data, err := json.Marshal(kf)
	if err != nil {
		return nil, false, fmt.Errorf("vault: %w", err)
	}
	return append(data, '\n'), false, nil
}

// parseKeyFile checks a key file's JSON as loadLocked does and decodes the
// wrapped key.
func parseKeyFile(path string, raw []byte, tenant, day string) (keyFile, []byte, error) {
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil || kf.Version != 1 || kf.Tenant != tenant || kf.Day != day || CheckName("key id", kf.ID) != nil {
		return keyFile{}, nil, fmt.Errorf("vault: %s: malformed data key file", path)
	}
	wrapped, err := base64.StdEncoding.DecodeString(kf.Wrapped)
	if err != nil {
		return keyFile{}, nil, fmt.Errorf("vault: %s: malformed data key file", path)
	}
	return kf, wrapped, nil
}

// unwrapBound unwraps with kek and checks the binding label, returning the
// bare data key. A wrong KEK gives an error wrapping ErrKEK.
func unwrapBound(kek KEK, wrapped []byte, c Class, tenant, day, id, path string) ([]byte, error) {
	pt, err := kek.Unwrap(wrapped)
	if err != nil {
		return nil, fmt.Errorf("vault: %s %s/%s: %w", c, tenant, day, err)
	}
	label := keyBinding(c, tenant, day, id)
	if len(pt) != len(label)+dataKeySize || !bytes.Equal(pt[:len(label)], label) {
		return nil, fmt.Errorf("vault: %s: key is bound to another tenant, day, id or class", path)
	}
	return pt[len(label):], nil
}

// replaceFile writes data to a temporary file in dir, syncs it, renames it
// over path and syncs dir: path holds the old or the new content, whole,
// whenever the process stops.
func replaceFile(dir, path string, data []byte) error {
	return placeFile(dir, path, data, os.Rename)
}
