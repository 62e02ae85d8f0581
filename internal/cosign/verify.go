package cosign

import (
	"errors"
	"fmt"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/audit"
)

// CopyReport is what VerifyCopy found in a witness's copy of a node's
// checkpoints.
type CopyReport struct {
	Notes    int      // checkpoints in the copy
	Problems []string // notes without a valid cosignature of the witness
}

// OK reports whether every note carries the witness's cosignature.
func (r *CopyReport) OK() bool { return len(r.Problems) == 0 && r.Notes > 0 }

// VerifyCopy checks that every checkpoint in a witness's copy (CopyFile)
// carries a valid cosignature of witnessKey, the witness's note verifier
// key. The node's own signatures and the tree are checked by audit.Verify
// with the copy as its witness file.
func VerifyCopy(path, witnessKey string) (*CopyReport, error) {
	v, err := fnote.NewVerifierForCosignatureV1(witnessKey)
	if err != nil {
		return nil, fmt.Errorf("cosign: witness key: %w", err)
	}
	rep := &CopyReport{}
	err = audit.EachNote(path, func(off int64, raw []byte) error {
		rep.Notes++
		if _, err := note.Open(raw, note.VerifierList(v)); err != nil {
			var unv *note.UnverifiedNoteError
			if errors.As(err, &unv) {
				err = errors.New("no cosignature of the witness")
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s byte %d: %v", path, off, err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rep.Notes == 0 {
		rep.Problems = append(rep.Problems, path+": no checkpoint co-signed")
	}
	return rep, nil
}
