package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/safetext"
)

// Proof shows that one record is part of the log as committed to by a
// signed checkpoint. Anyone with the verifier key can check it offline.
type Proof struct {
	Index      uint64   `json:"index"`
	Size       uint64   `json:"size"`
	LeafHash   []byte   `json:"leaf_hash"`
	Hashes     [][]byte `json:"hashes"`
	Root       []byte   `json:"root"`
	Checkpoint string   `json:"checkpoint"`       // the signed note
	Record     string   `json:"record,omitempty"` // canonical record bytes
}

// InclusionProof builds the inclusion proof of record index against the
// latest checkpoint in dir.
func InclusionProof(dir string, index uint64) (*Proof, error) {
	key, err := PublicKey(dir)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, err
	}
	last, err := lastNote(filepath.Join(dir, checkpointsFile))
	if err != nil {
		return nil, err
	}
	if last == nil {
		return nil, errors.New("audit: no checkpoint yet")
	}
	cp, err := openCheckpoint(last, v)
	if err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("audit: record %d is not covered by the latest checkpoint (size %d) yet", index, cp.Size)
	}
	nodes, err := proof.Inclusion(index, cp.Size)
	if err != nil {
		return nil, err
	}
	w := newTreeWalk()
	w.want(nodes.IDs)
	lf, err := os.Open(filepath.Join(dir, leavesFile))
	if err != nil {
		return nil, fmt.Errorf("audit: open leaves: %w", err)
	}
	defer lf.Close()
	br := bufio.NewReaderSize(lf, 1<<16)
	var leafHash []byte
	for i := uint64(0); i < cp.Size; i++ {
		h := make([]byte, 32)
		if _, err := io.ReadFull(br, h); err != nil {
			return nil, fmt.Errorf("audit: read leaf %d: %w", i, err)
		}
		if i == index {
			leafHash = h
		}
		if err := w.add(h); err != nil {
			return nil, err
		}
	}
	hashes, err := w.hashes(nodes)
	if err != nil {
		return nil, err
	}
	p := &Proof{Index: index, Size: cp.Size, LeafHash: leafHash, Hashes: hashes, Root: cp.Hash, Checkpoint: string(last)}
	stop := errors.New("stop")
	err = Read(dir, Filter{}, func(r Record) error {
		if r.Index == index {
			p.Record = string(r.Raw)
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		return nil, err
	}
	return p, nil
}

// Verify checks the proof with the verifier key text: the checkpoint's
// signature, that it commits to Size and Root, that Record (if present)
// hashes to LeafHash and carries Index, and the inclusion path.
func (p *Proof) Verify(verifierKey string) error {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	cp, err := openCheckpoint([]byte(p.Checkpoint), v)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if cp.Size != p.Size || !bytes.Equal(cp.Hash, p.Root) {
		return errors.New("proof does not match its checkpoint")
	}
	if p.Record != "" {
		if h, err := leafHash([]byte(p.Record)); err != nil || !bytes.Equal(h, p.LeafHash) {
			return errors.New("record does not match the leaf hash")
		}
		idx, _, err := DecodeRecord([]byte(p.Record))
		if err != nil {
			return err
		}
		if idx != p.Index {
			return fmt.Errorf("record claims index %d, proof is for %d", idx, p.Index)
		}
	}
	if err := proof.VerifyInclusion(hasher, p.Index, p.Size, p.LeafHash, p.Hashes, p.Root); err != nil {
		return fmt.Errorf("inclusion: %w", err)
	}
	return nil
}

// JSON returns the proof as indented JSON (hashes in base64).
func (p *Proof) JSON() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}

// String renders the proof as text for people.
func (p *Proof) String() string {
	var b strings.Builder
	enc := base64.StdEncoding.EncodeToString
	fmt.Fprintf(&b, "record:    %d of %d\n", p.Index, p.Size)
	fmt.Fprintf(&b, "leaf hash: %s\n", enc(p.LeafHash))
	fmt.Fprintf(&b, "root:      %s\n", enc(p.Root))
	for i, h := range p.Hashes {
		fmt.Fprintf(&b, "path %2d:   %s\n", i, enc(h))
	}
	if p.Record != "" {
		// The record's JSON leaves C1, bidi and format characters raw;
		// people see them escaped, and told so, since escaped bytes no
		// longer hash to the leaf. The JSON form keeps the exact bytes.
		// (JSON's own backslash escapes alone need no warning.)
		if shown := safetext.Line(p.Record); strings.ReplaceAll(shown, `\\`, `\`) == p.Record {
			fmt.Fprintf(&b, "record bytes:\n%s\n", p.Record)
		} else {
			fmt.Fprintf(&b, "record bytes (escaped for the terminal; --json has them exact):\n%s\n", shown)
		}
	}
	fmt.Fprintf(&b, "checkpoint:\n%s", safetext.Lines(p.Checkpoint))
	return b.String()
}
