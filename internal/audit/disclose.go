package audit

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"

	"tandem.dev/tandem/internal/vault"
)

// Disclosing single records to a third party (the evidence report of
// internal/report): the reader must be able to check each record's
// fields against the Merkle tree without the hoster's word, yet must not
// receive a data key, which would open every record of that tenant, class
// and day — and a content key also the day's recordings.
//
// A part is sealed with XChaCha20-Poly1305, which is HChaCha20 of the
// data key and the first 16 bytes of the nonce (a one-time subkey), then
// ChaCha20-Poly1305 under that subkey with the nonce's last 8 bytes
// (draft-irtf-cfrg-xchacha, as golang.org/x/crypto implements it). The
// subkey opens exactly one ciphertext and reveals nothing of the data
// key (HChaCha20 is a PRF), so it is what a disclosure hands over, per
// record and class. The ciphertext itself is fixed by its ct_sha256 in the
// leaf, so a reader who opens it with the subkey reads what was committed
// when the record was written. Poly1305 does not commit to its key: a
// writer who crafted a ciphertext at write time to open under two keys
// could show either plaintext later; one able to do that could as well
// have written a false record, which no log excludes.

// Disclose returns the one-time subkey of each part of the v2 record raw
// whose class is in classes, from the data keys of keys. A part whose key
// is gone (shredded) is left out; the reader sees it as not disclosed.
func Disclose(raw []byte, keys KeyReader, classes ...vault.Class) (map[vault.Class][]byte, error) {
	if !isV2(raw) {
		return nil, nil // a v1 record is in clear: nothing to disclose
	}
	w, err := parseV2(raw)
	if err != nil {
		return nil, err
	}
	want := map[vault.Class]bool{}
	for _, c := range classes {
		want[c] = true
	}
	out := map[vault.Class][]byte{}
	for _, p := range w.Parts {
		if !want[p.Class] || p.CT == "" {
			continue
		}
		key, err := keys.KeyByID(p.Class, w.Tenant, p.Day, p.Key)
		if errors.Is(err, vault.ErrShredded) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: record %d, %s part: %w", *w.Index, p.Class, err)
		}
		ct, err := base64.StdEncoding.DecodeString(p.CT)
		if err != nil || len(ct) < chacha20poly1305.NonceSizeX {
			clear(key)
			return nil, fmt.Errorf("audit: record %d, %s part: malformed ciphertext", *w.Index, p.Class)
		}
		sub, err := chacha20.HChaCha20(key, ct[:16])
		clear(key)
		if err != nil {
			return nil, err
		}
		// Hand over only a subkey that opens the part: a reader must never
		// be the first to find that a record does not decrypt.
		e := Event{Type: w.Type} // the type is part of the additional data
		if err := openInto(&e, subkeyOpener(map[vault.Class][]byte{p.Class: sub}), p, w.Tenant, w.Time); err != nil {
			return nil, fmt.Errorf("audit: record %d, %s part: %w", *w.Index, p.Class, err)
		}
		out[p.Class] = sub
	}
	return out, nil
}

// OpenDisclosed decodes the v2 record raw with the subkeys Disclose gave;
// parts without one are listed as unreadable (ReasonNotDisclosed). A v1
// record is all in clear. Like DecodeRecord it refuses a record not in
// canonical form.
func OpenDisclosed(raw []byte, subkeys map[vault.Class][]byte) (uint64, Event, []Unreadable, error) {
	if !isV2(raw) {
		idx, e, err := decodeV1(raw)
		return idx, e, nil, err
	}
	return decodeV2With(raw, subkeyOpener(subkeys))
}

var errNotDisclosed = errors.New("part not disclosed")

func subkeyOpener(subkeys map[vault.Class][]byte) partOpener {
	return func(p part, _ string) (cipher.AEAD, error) {
		sub, ok := subkeys[p.Class]
		if !ok {
			return nil, errNotDisclosed
		}
		aead, err := chacha20poly1305.New(sub)
		if err != nil {
			return nil, err
		}
		return subkeyAEAD{aead}, nil
	}
}

// subkeyAEAD is XChaCha20-Poly1305 with the HChaCha20 step already done:
// it takes the 24-byte nonce of a part and uses its last 8 bytes, as
// chacha20poly1305.NewX does after deriving the subkey.
type subkeyAEAD struct{ inner cipher.AEAD }

func (a subkeyAEAD) NonceSize() int { return chacha20poly1305.NonceSizeX }
func (a subkeyAEAD) Overhead() int  { return a.inner.Overhead() }

func (a subkeyAEAD) nonce(n []byte) []byte {
	var c [chacha20poly1305.NonceSize]byte
	copy(c[4:], n[16:24])
	return c[:]
}

func (a subkeyAEAD) Seal(dst, nonce, plaintext, ad []byte) []byte {
	return a.inner.Seal(dst, a.nonce(nonce), plaintext, ad)
}

func (a subkeyAEAD) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, errors.New("bad nonce")
	}
	return a.inner.Open(dst, a.nonce(nonce), ciphertext, ad)
}

// parseV2 checks that raw is a canonical v2 record and returns its wire form.
func parseV2(raw []byte) (*wireV2, error) {
	var w wireV2
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	if w.Index == nil {
		return nil, errors.New("decode record: no index")
	}
	ts, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return nil, fmt.Errorf("decode record: time: %w", err)
	}
	if err := checkWireV2(&w, ts, raw); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return &w, nil
}

// VerifyInclusion checks that the record raw (its canonical bytes) is
// leaf index of the tree of size with root, by the inclusion path hashes.
func VerifyInclusion(raw []byte, index, size uint64, hashes [][]byte, root []byte) error {
	leaf, err := leafHash(raw)
	if err != nil {
		return err
	}
	idx, _, err := DecodeRecord(raw)
	if err != nil {
		return err
	}
	if idx != index {
		return fmt.Errorf("record claims index %d, proof is for %d", idx, index)
	}
	if err := proof.VerifyInclusion(hasher, index, size, leaf, hashes, root); err != nil {
		// The library's message spans lines with both hashes; one line says it.
		return errors.New("inclusion: the proof does not lead from the record to the checkpoint's root")
	}
	return nil
}

// OpenCheckpointChain checks a checkpoint note against key, following the
// given hand-over notes from key to the key that signed it (forward or
// back, as Verify does), and returns its origin, size and root.
func OpenCheckpointChain(cpNote []byte, key string, handovers [][]byte) (origin string, size uint64, root []byte, err error) {
	rep := &Report{FirstBad: -1}
	var found []handover
	for i, raw := range handovers {
		h, err := readHandover(raw)
		if err != nil {
			return "", 0, nil, fmt.Errorf("hand-over %d: %w", i+1, err)
		}
		if h == nil {
			return "", 0, nil, fmt.Errorf("hand-over %d: not a signing key hand-over", i+1)
		}
		found = append(found, *h)
	}
	kc, err := chainFrom(key, found, rep)
	if err != nil {
		return "", 0, nil, err
	}
	if !rep.OK() {
		return "", 0, nil, fmt.Errorf("the signing key hand-overs cannot be followed: %v", rep.Problems)
	}
	cp, err := kc.open(cpNote)
	if err != nil {
		return "", 0, nil, err
	}
	return cp.Origin, cp.Size, cp.Hash, nil
}

// Handovers returns every signing key hand-over note of the log in dir
// (each segment's checkpoints), in log order.
func Handovers(dir string) ([][]byte, error) {
	files, err := checkpointFiles(dir, "")
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, path := range files {
		err := eachNote(path, func(n []byte) error {
			if h, err := readHandover(n); err == nil && h != nil {
				out = append(out, bytes.Clone(n))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Witnessed reports whether the checkpoint file path (a witness's copy)
// holds the note cpNote, byte for byte: the witness received it.
func Witnessed(path string, cpNote []byte) (bool, error) {
	found := false
	err := eachNote(path, func(n []byte) error {
		if bytes.Equal(n, cpNote) {
			found = true
		}
		return nil
	})
	return found, err
}

// eachNote calls fn for each complete note of a checkpoint file; an
// unfinished note at the end is left out, a missing file is an error.
func eachNote(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	err = readNotes(bufio.NewReader(f), func(n rawNote) error { return fn(n.Text) })
	var ne *noteError
	if errors.As(err, &ne) && ne.Torn {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", filepath.Base(path), err)
	}
	return nil
}
