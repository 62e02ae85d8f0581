package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// Tree is the log's Merkle tree over its first Size leaves, kept as a
// compact range (at most one hash per bit of Size). It is all a node
// needs of the past to prove to a peer that the log at a later size
// extends the log at Size (RFC 6962 consistency proof), reading only the
// leaves in between.
type Tree struct {
	Size   uint64
	Hashes [][]byte
}

// TreeAt reads the first size leaf hashes of the log segment in dir.
func TreeAt(dir string, size uint64) (Tree, error) {
	_, _, t, err := Tree{}.Extend(dir, size)
	return t, err
}

// Extend reads the leaves [t.Size, size) of the log segment in dir and
// returns the consistency proof from t.Size to size, the root hash at
// size and the tree at size. A proof from size 0 is empty: there is
// nothing to be consistent with.
func (t Tree) Extend(dir string, size uint64) (proofHashes [][]byte, root []byte, next Tree, err error) {
	if size < t.Size {
		return nil, nil, Tree{}, fmt.Errorf("audit: consistency proof from size %d back to %d", t.Size, size)
	}
	rng, err := rangeFactory.NewRange(0, t.Size, t.Hashes)
	if err != nil {
		return nil, nil, Tree{}, fmt.Errorf("audit: tree at size %d: %w", t.Size, err)
	}
	var nodes proof.Nodes
	want := map[compact.NodeID][]byte{}
	if t.Size > 0 && size > t.Size {
		if nodes, err = proof.Consistency(t.Size, size); err != nil {
			return nil, nil, Tree{}, err
		}
		for _, id := range nodes.IDs {
			want[id] = nil
		}
		// Nodes left of t.Size are whole subtrees of the old tree: the
		// compact range holds them.
		for i, id := range compact.RangeNodes(0, t.Size, nil) {
			if _, ok := want[id]; ok {
				want[id] = t.Hashes[i]
			}
		}
	}
	visit := func(id compact.NodeID, h []byte) {
		if v, ok := want[id]; ok && v == nil {
			want[id] = bytes.Clone(h)
		}
	}
	if err := readLeaves(dir, t.Size, size, func(leaf []byte) error { return rng.Append(leaf, visit) }); err != nil {
		return nil, nil, Tree{}, err
	}
	if root, err = rng.GetRootHash(nil); err != nil {
		return nil, nil, Tree{}, err
	}
	if size == 0 {
		root = hasher.EmptyRoot()
	}
	next = Tree{Size: size, Hashes: rng.Hashes()}
	if len(nodes.IDs) == 0 {
		return nil, root, next, nil
	}
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if hs[i] = want[id]; hs[i] == nil {
			return nil, nil, Tree{}, fmt.Errorf("audit: consistency proof %d→%d: node %+v not found", t.Size, size, id)
		}
	}
	proofHashes, err = nodes.Rehash(hs, hasher.HashChildren)
	return proofHashes, root, next, err
}

// readLeaves calls fn with each leaf hash [from, to) of leaves.bin in dir.
func readLeaves(dir string, from, to uint64, fn func(leaf []byte) error) error {
	if from == to {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, leavesFile))
	if err != nil {
		return fmt.Errorf("audit: open leaves: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(int64(from)*sha256.Size, io.SeekStart); err != nil {
		return fmt.Errorf("audit: leaves: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for i := from; i < to; i++ {
		leaf := make([]byte, sha256.Size) // the range keeps it
		if _, err := io.ReadFull(r, leaf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("audit: leaves.bin ends at leaf %d, before %d", i, to)
			}
			return fmt.Errorf("audit: leaves: %w", err)
		}
		if err := fn(leaf); err != nil {
			return err
		}
	}
	return nil
}
