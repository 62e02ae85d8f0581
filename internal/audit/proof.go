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
	cp, err := LatestCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("audit: record %d is not covered by the latest checkpoint (size %d) yet", index, cp.Size)
	}
	paths, leaves, err := cp.prove(dir, []uint64{index})
	if err != nil {
		return nil, err
	}
	p := &Proof{Index: index, Size: cp.Size, LeafHash: leaves[index], Hashes: paths[index], Root: cp.Root, Checkpoint: string(cp.Note)}
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

// CommittedCheckpoint is a checkpoint note, its signature checked, with
// the tree size and root it commits to.
type CommittedCheckpoint struct {
	Note []byte // the signed note, as stored
	Size uint64
	Root []byte
}

// LatestCheckpoint returns the last checkpoint of the log in dir, checked
// against the log's own public key (audit.pub).
func LatestCheckpoint(dir string) (*CommittedCheckpoint, error) {
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
	return &CommittedCheckpoint{Note: last, Size: cp.Size, Root: cp.Hash}, nil
}

// Prove returns the inclusion path of each record in indices (all below
// Size) against the checkpoint, reading the leaf hashes of dir once.
func (c *CommittedCheckpoint) Prove(dir string, indices []uint64) (map[uint64][][]byte, error) {
	paths, _, err := c.prove(dir, indices)
	return paths, err
}

func (c *CommittedCheckpoint) prove(dir string, indices []uint64) (paths map[uint64][][]byte, leaves map[uint64][]byte, err error) {
	w := newTreeWalk()
	nodes := make(map[uint64]proof.Nodes, len(indices))
	leaves = make(map[uint64][]byte, len(indices))
	for _, i := range indices {
		if i >= c.Size {
			return nil, nil, fmt.Errorf("audit: record %d is not covered by the checkpoint (size %d)", i, c.Size)
		}
		n, err := proof.Inclusion(i, c.Size)
		if err != nil {
			return nil, nil, err
		}
		w.want(n.IDs)
		nodes[i] = n
		leaves[i] = nil
	}
	lf, err := os.Open(filepath.Join(dir, leavesFile))
	if err != nil {
		return nil, nil, fmt.Errorf("audit: open leaves: %w", err)
	}
	defer lf.Close()
	br := bufio.NewReaderSize(lf, 1<<16)
	h := make([]byte, 32)
	for i := uint64(0); i < c.Size; i++ {
		if _, err := io.ReadFull(br, h); err != nil {
			return nil, nil, fmt.Errorf("audit: read leaf %d: %w", i, err)
		}
		if _, ok := leaves[i]; ok {
			leaves[i] = bytes.Clone(h)
		}
		if err := w.add(h); err != nil {
			return nil, nil, err
		}
	}
	root, err := w.rng.GetRootHash(nil)
	if c.Size == 0 {
		root, err = hasher.EmptyRoot(), nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(root, c.Root) {
		return nil, nil, errors.New("audit: the leaves do not reproduce the checkpoint's root")
	}
	paths = make(map[uint64][][]byte, len(indices))
	for i, n := range nodes {
		if paths[i], err = w.hashes(n); err != nil {
			return nil, nil, err
		}
	}
	return paths, leaves, nil
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
