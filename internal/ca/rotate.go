package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"
)

// A rotation replaces a CA without a moment in which a target or client
// trusts only the key the gateway does not sign with:
//
//	start   <ca>.next is created and published beside <ca>; <ca> still signs.
//	finish  after the overlap: <ca> is kept as <ca>.retired-<time>, <ca>.next
//	        becomes <ca> and signs; the retired key is still published.
//	retire  the retired key is no longer published (its file stays).
//
// rotation.json records the phase. Every step is idempotent and checks the
// files against the fingerprints the state names, so a step interrupted
// by a crash is completed by running it again, and a key file is never
// written over: keys are created by link, moved by rename, and the old CA
// is linked to its retired name before its name is given to the new one.

// RotationFile is the rotation state in the key directory.
const RotationFile = "rotation.json"

// Phase is where a rotation stands.
type Phase string

const (
	// Overlap: the next key is published, the old one signs.
	Overlap Phase = "overlap"
	// Finishing: the key files are being swapped (only seen after a crash).
	Finishing Phase = "finishing"
	// Finished: the new key signs, the old one is still published.
	Finished Phase = "finished"
)

// Rotation is the state of one CA's rotation.
type Rotation struct {
	Kind     Kind      `json:"kind"`
	Phase    Phase     `json:"phase"`
	Started  time.Time `json:"started"`
	Until    time.Time `json:"until"` // the end of the overlap
	Finished time.Time `json:"finished,omitzero"`
	Old      string    `json:"old"` // SHA256 fingerprints
	New      string    `json:"new"`
	Retired  string    `json:"retired,omitempty"` // the old key's file name from finish on
}

// ErrNoRotation: the CA is not being rotated.
var ErrNoRotation = errors.New("no rotation of this CA in progress")

func caFile(kind Kind) (string, error) {
	switch kind {
	case User:
		return UserCAFile, nil
	case Host:
		return HostCAFile, nil
	}
	return "", fmt.Errorf("unknown CA kind %q (want user or host)", kind)
}

// Rotations reads the rotations in progress, ordered by kind.
func Rotations(dir string) ([]Rotation, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Rotation, 0, len(st))
	for _, r := range st {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out, nil
}

// openRotation is every step's start: the CA's file name, the rotation
// lock (released by unlock) and the rotation state read under it.
func openRotation(dir string, kind Kind) (name string, st map[Kind]*Rotation, unlock func(), err error) {
	if name, err = caFile(kind); err != nil {
		return "", nil, nil, err
	}
	if unlock, err = lockRotation(dir); err != nil {
		return "", nil, nil, err
	}
	if st, err = readState(dir); err != nil {
		unlock()
		return "", nil, nil, err
	}
	return name, st, unlock, nil
}

// StartRotation creates the next key of kind's CA, of type kt, and
// publishes it for overlap. It reports false (and the rotation) when one
// is under way already. A next key without a state (a crash in between) is
// taken, not replaced, whatever its type.
func StartRotation(dir string, kind Kind, kt KeyType, overlap time.Duration, now time.Time) (Rotation, bool, error) {
	name, st, unlock, err := openRotation(dir, kind)
	if err != nil {
		return Rotation{}, false, err
	}
	defer unlock()
	if r := st[kind]; r != nil {
		if r.Phase == Finished {
			return *r, false, fmt.Errorf("the last rotation of the %s CA is finished but its old key is still published; retire it first (--retire)", kind)
		}
		return *r, false, nil
	}
	cur, err := load(filepath.Join(dir, name))
	if err != nil {
		return Rotation{}, false, err
	}
	next, err := loadOrCreate(filepath.Join(dir, name+".next"), kt)
	if err != nil {
		return Rotation{}, false, err
	}
	r := &Rotation{Kind: kind, Phase: Overlap, Started: now.UTC(), Until: now.Add(overlap).UTC(),
		Old: fingerprint(cur), New: fingerprint(next)}
	st[kind] = r
	return *r, true, writeState(dir, st)
}

// FinishRotation makes the new key sign. Before the overlap has passed it
// is refused unless force. It reports false (and the rotation) when the
// rotation was finished already.
func FinishRotation(dir string, kind Kind, now time.Time, force bool) (Rotation, bool, error) {
	name, st, unlock, err := openRotation(dir, kind)
	if err != nil {
		return Rotation{}, false, err
	}
	defer unlock()
	r := st[kind]
	switch {
	case r == nil:
		return Rotation{}, false, ErrNoRotation
	case r.Phase == Finished:
		return *r, false, nil
	case r.Phase == Overlap:
		if now.Before(r.Until) && !force {
			return *r, false, fmt.Errorf("the overlap of the %s CA's rotation runs until %s; targets and clients may not trust the new key yet (--force finishes now)",
				kind, r.Until.Format(time.RFC3339))
		}
		// Name the retired file before touching any key, so that a
		// resumed finish uses the same name.
		r.Phase, r.Retired = Finishing, name+".retired-"+now.UTC().Format("20060102T150405Z")
		if err := writeState(dir, st); err != nil {
			return *r, false, err
		}
	}
	if err := swapKeys(dir, name, r); err != nil {
		return *r, false, fmt.Errorf("finish the %s CA's rotation (run it again to resume): %w", kind, err)
	}
	r.Phase, r.Finished = Finished, now.UTC()
	return *r, true, writeState(dir, st)
}

// swapKeys moves the old key to its retired name and the next key to the
// CA's name. Each step is skipped when the files show it done.
func swapKeys(dir, name string, r *Rotation) error {
	path, next, retired := filepath.Join(dir, name), filepath.Join(dir, name+".next"), filepath.Join(dir, r.Retired)
	cur, err := load(path)
	if err != nil {
		return err
	}
	switch fingerprint(cur) {
	case r.New:
	case r.Old:
		if err := os.Link(path, retired); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keep the old key: %w", err)
		}
		n, err := load(next)
		if err != nil {
			return err
		}
		if fingerprint(n) != r.New {
			return fmt.Errorf("%s is not the key the rotation published (%s); refusing to sign with it", next, r.New)
		}
		if err := os.Rename(next, path); err != nil {
			return fmt.Errorf("put the new key in place: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s is neither the old (%s) nor the new key (%s) of the rotation; it was changed outside tandem", path, r.Old, r.New)
	}
	old, err := load(retired)
	if err != nil {
		return err
	}
	if fingerprint(old) != r.Old {
		return fmt.Errorf("%s is not the old key (%s)", retired, r.Old)
	}
	n, err := load(path)
	if err != nil {
		return err
	}
	if err := writePublic(path, n); err != nil {
		return err
	}
	if err := writePublic(retired, old); err != nil {
		return err
	}
	if err := os.Remove(next + ".pub"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RetireRotation stops publishing the old key of a finished rotation. The
// retired key file stays in the directory: deleting a CA key cannot be
// undone, and that is the operator's decision. It reports false when
// there was nothing to retire.
func RetireRotation(dir string, kind Kind) (Rotation, bool, error) {
	_, st, unlock, err := openRotation(dir, kind)
	if err != nil {
		return Rotation{}, false, err
	}
	defer unlock()
	r := st[kind]
	switch {
	case r == nil:
		return Rotation{}, false, nil
	case r.Phase != Finished:
		return *r, false, fmt.Errorf("the %s CA's rotation is in phase %s; finish it before retiring the old key (--finish)", kind, r.Phase)
	}
	delete(st, kind)
	return *r, true, writeState(dir, st)
}

// FinishDue finishes every rotation whose overlap has passed, and
// resumes any finish a crash interrupted; it returns those it finished.
func FinishDue(dir string, now time.Time) ([]Rotation, error) {
	rs, err := Rotations(dir)
	if err != nil {
		return nil, err
	}
	var done []Rotation
	for _, r := range rs {
		if r.Phase == Finished || (r.Phase == Overlap && now.Before(r.Until)) {
			continue
		}
		f, changed, err := FinishRotation(dir, r.Kind, now, false)
		if err != nil {
			return done, err
		}
		if changed {
			done = append(done, f)
		}
	}
	return done, nil
}

// readPublished reads the keys a rotation publishes besides the signing
// ones: the next key during the overlap, the retired one after finish.
func readPublished(dir string) (map[Kind][]published, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	out := map[Kind][]published{}
	for kind, r := range st {
		name, err := caFile(kind)
		if err != nil {
			return nil, err
		}
		var file, role string
		switch r.Phase {
		case Overlap:
			file, role = name+".next", "next"
		case Finishing:
			// The swap may be half done: publish both, as the
			// signing key is one of them.
			for _, f := range []string{name + ".next", r.Retired} {
				if s, err := load(filepath.Join(dir, f)); err == nil {
					out[kind] = append(out[kind], published{key: s.PublicKey(), role: "rotating"})
				}
			}
			continue
		case Finished:
			file, role = r.Retired, "retired"
		}
		s, err := load(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		out[kind] = append(out[kind], published{key: s.PublicKey(), role: role})
	}
	return out, nil
}

func fingerprint(s ssh.Signer) string { return ssh.FingerprintSHA256(s.PublicKey()) }

func readState(dir string) (map[Kind]*Rotation, error) {
	st := map[Kind]*Rotation{}
	b, err := os.ReadFile(filepath.Join(dir, RotationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rotation state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("rotation state %s: %w", filepath.Join(dir, RotationFile), err)
	}
	for kind, r := range st {
		if _, err := caFile(kind); err != nil || r == nil || r.Kind != kind {
			return nil, fmt.Errorf("rotation state %s: bad entry %q", filepath.Join(dir, RotationFile), kind)
		}
	}
	return st, nil
}

func writeState(dir string, st map[Kind]*Rotation) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, RotationFile), append(b, '\n'), 0o600)
}
