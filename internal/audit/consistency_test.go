package audit

import (
	"bytes"
	"testing"

	"github.com/transparency-dev/merkle/proof"
)

// TestTreeExtendProvesConsistency: proofs built by extending a tree, step
// by step or in one go, verify between the roots a full read gives; a
// proof checked against a changed root fails.
func TestTreeExtendProvesConsistency(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 70)
	total := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rootAt := func(n uint64) []byte {
		tr, err := TreeAt(o.Dir, n)
		if err != nil {
			t.Fatal(err)
		}
		_, root, _, err := tr.Extend(o.Dir, n)
		if err != nil {
			t.Fatal(err)
		}
		return root
	}
	for _, steps := range [][]uint64{
		{1, 2, 3, 4, 5, 6, 7, 8, 9},
		{6, 8, 16, 17, 32, 33, 64, 70},
		{7, 70},
		{0, 1, 70},
		{64, 64, 65},
	} {
		var tr Tree
		for _, n := range steps {
			p, root, next, err := tr.Extend(o.Dir, n)
			if err != nil {
				t.Fatalf("%v: extend %d→%d: %v", steps, tr.Size, n, err)
			}
			if !bytes.Equal(root, rootAt(n)) {
				t.Fatalf("%v: root at %d differs from a full read", steps, n)
			}
			if tr.Size > 0 {
				if err := proof.VerifyConsistency(hasher, tr.Size, n, p, rootAt(tr.Size), root); err != nil {
					t.Fatalf("%v: proof %d→%d: %v", steps, tr.Size, n, err)
				}
				if tr.Size < n {
					bad := bytes.Clone(root)
					bad[0] ^= 1
					if proof.VerifyConsistency(hasher, tr.Size, n, p, rootAt(tr.Size), bad) == nil {
						t.Fatalf("%v: proof %d→%d verifies against a changed root", steps, tr.Size, n)
					}
				}
			}
			tr = next
		}
	}
	if _, _, _, err := (Tree{}).Extend(o.Dir, total+1); err == nil {
		t.Error("a tree past the end of leaves.bin")
	}
}
