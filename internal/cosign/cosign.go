// Package cosign lets gateways witness each other's audit logs (M10,
// M22). Each node of a cluster keeps its own Merkle log and signs its
// checkpoints; every other node checks each new checkpoint against the
// last one it saw — signature, origin, and an RFC 6962 consistency proof
// that the new tree extends the old — and only then co-signs it
// (C2SP tlog-cosignature, cosignature/v1) and keeps the co-signed copy in
// its own witness directory, on its own host, apart from the signer. A
// node that rewrites its log after a peer saw it cannot get that rewrite
// co-signed, and the peer's copy shows the rewrite to `audit verify`.
//
// The witness never reads the other node's files: it sees only what the
// node submits (Submission) through the cluster's shared store.
package cosign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// Errors a witness returns; each means the submission was not co-signed.
var (
	ErrUnknownNode = errors.New("cosign: the node is not a peer of this witness")
	ErrSignature   = errors.New("cosign: the checkpoint does not verify with the node's signing key")
	ErrRollback    = errors.New("cosign: the checkpoint is older than one already co-signed")
	// ErrConflict is the serious one: two different trees of one size,
	// both signed by the node. Its log was rewritten, or its key is used
	// by someone else; the witness's copy holds the first.
	ErrConflict = errors.New("cosign: a different tree of a size already co-signed: the node's log was rewritten")
	ErrProof    = errors.New("cosign: the consistency proof does not hold")
)

// FromError says the submission proves consistency from another size than
// the one this witness co-signed last; the node resubmits from Have.
type FromError struct{ From, Have uint64 }

func (e *FromError) Error() string {
	return fmt.Sprintf("cosign: the proof starts at size %d, but this witness co-signed size %d last", e.From, e.Have)
}

// Submission is one checkpoint a node hands to its peers.
type Submission struct {
	Node  string   `json:"node"`
	Note  []byte   `json:"note"`  // the signed checkpoint, as in the node's checkpoints.log
	From  uint64   `json:"from"`  // the size the proof starts at
	Proof [][]byte `json:"proof"` // RFC 6962 consistency proof From → the checkpoint's size
}

// Peer is a node this witness co-signs for.
type Peer struct {
	Node   string // the node's name in the cluster
	Origin string // its audit log's origin (first segment)
	Key    string // the note verifier key its log was first signed with
}

// state is what a witness remembers of one peer, in <dir>/<node>.state.
type state struct {
	Segment int    `json:"segment"`
	Size    uint64 `json:"size"`
	Root    []byte `json:"root"`
	Key     string `json:"key"` // the verifier key in force (after hand-overs)
}

// Witness co-signs its peers' checkpoints. It is safe for concurrent use.
type Witness struct {
	dir    string
	signer note.Signer
	mu     sync.Mutex
	peers  map[string]Peer
}

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidNode reports whether name is a usable node name: it names files.
func ValidNode(name string) bool { return nodeName.MatchString(name) }

// NewWitness opens the witness directory dir (created 0700) with the
// witness's note signer key text.
func NewWitness(dir, signerKey string, peers []Peer) (*Witness, error) {
	s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(signerKey))
	if err != nil {
		return nil, fmt.Errorf("cosign: witness key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cosign: witness directory: %w", err)
	}
	w := &Witness{dir: dir, signer: s, peers: map[string]Peer{}}
	for _, p := range peers {
		if !ValidNode(p.Node) {
			return nil, fmt.Errorf("cosign: node name %q: use a-z, 0-9 and -", p.Node)
		}
		if _, err := note.NewVerifier(p.Key); err != nil {
			return nil, fmt.Errorf("cosign: node %s: verifier key: %w", p.Node, err)
		}
		w.peers[p.Node] = p
	}
	return w, nil
}

// Name is the witness's key name, which its cosignatures carry.
func (w *Witness) Name() string { return w.signer.Name() }

// CopyFile is where the witness keeps its co-signed copies of a node's
// checkpoints: a checkpoint file that `tandem audit verify --witness`
// reads like the node's own witness file.
func (w *Witness) CopyFile(node string) string { return CopyPath(w.dir, node) }

// CopyPath is CopyFile of a witness whose directory is dir.
func CopyPath(dir, node string) string { return filepath.Join(dir, node+".checkpoints") }

func (w *Witness) stateFile(node string) string { return filepath.Join(w.dir, node+".state") }

// Last returns the size this witness co-signed last for node.
func (w *Witness) Last(node string) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.peers[node]
	if !ok {
		return 0, ErrUnknownNode
	}
	st, err := w.load(p)
	return st.Size, err
}

// Cosign checks s and returns the node's note with this witness's
// cosignature appended, after storing it in CopyFile. A submission of the
// size co-signed last, with the same tree, is co-signed again (a node
// that did not get the first answer asks again).
func (w *Witness) Cosign(s Submission) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.peers[s.Node]
	if !ok {
		return nil, ErrUnknownNode
	}
	st, err := w.load(p)
	if err != nil {
		return nil, err
	}
	cp, seg, next, err := audit.OpenPeerCheckpoint(s.Note, p.Origin, st.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err := st.check(cp, seg, s); err != nil {
		return nil, err
	}
	cosigned, err := w.sign(s.Note)
	if err != nil {
		return nil, err
	}
	if err := appendSync(w.CopyFile(s.Node), cosigned); err != nil {
		return nil, err
	}
	st.Segment, st.Size, st.Root = seg, cp.Size, cp.Hash
	if next != "" {
		st.Key = next
	}
	return cosigned, w.save(s.Node, st)
}

// check decides whether the checkpoint extends what the witness holds.
func (st *state) check(cp log.Checkpoint, seg int, s Submission) error {
	switch {
	case seg < st.Segment:
		return fmt.Errorf("%w: segment %d after segment %d", ErrRollback, seg, st.Segment)
	case seg > st.Segment:
		// A recovery started a new tree (audit recover); the node's own
		// verify ties it to the old one. The witness starts afresh.
		st.Size, st.Root = 0, rfc6962.DefaultHasher.EmptyRoot()
	}
	switch {
	case cp.Size < st.Size:
		return fmt.Errorf("%w: size %d after size %d", ErrRollback, cp.Size, st.Size)
	case cp.Size == st.Size && !bytes.Equal(cp.Hash, st.Root):
		return fmt.Errorf("%w: size %d", ErrConflict, cp.Size)
	case cp.Size == st.Size:
		return nil
	case s.From != st.Size:
		return &FromError{From: s.From, Have: st.Size}
	case st.Size == 0:
		return nil // nothing to be consistent with
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, st.Size, cp.Size, s.Proof, st.Root, cp.Hash); err != nil {
		return fmt.Errorf("%w: %d→%d: %v", ErrProof, st.Size, cp.Size, err)
	}
	return nil
}

// sign appends this witness's cosignature line to the node's note.
func (w *Witness) sign(raw []byte) ([]byte, error) {
	n, err := openUnverified(raw)
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return nil, fmt.Errorf("cosign: sign: %w", err)
	}
	line := signed[len(n.Text)+1:] // "\n" after the text, then our line
	out := bytes.Clone(raw)
	if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\n')
	}
	return append(out, line...), nil
}

// openUnverified parses a note's text and signature lines without
// checking any signature.
func openUnverified(raw []byte) (*note.Note, error) {
	n, err := note.Open(raw, unverifying{})
	var unv *note.UnverifiedNoteError
	if errors.As(err, &unv) {
		return unv.Note, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	return n, nil
}

// unverifying knows no key: note.Open then returns the note's text in an
// UnverifiedNoteError, after the signature lines were checked for form.
type unverifying struct{}

func (unverifying) Verifier(name string, hash uint32) (note.Verifier, error) {
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

func (w *Witness) load(p Peer) (*state, error) {
	b, err := os.ReadFile(w.stateFile(p.Node))
	if errors.Is(err, os.ErrNotExist) {
		return &state{Segment: 1, Root: rfc6962.DefaultHasher.EmptyRoot(), Key: p.Key}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Key == "" {
		return nil, fmt.Errorf("cosign: %s is damaged: %v", w.stateFile(p.Node), err)
	}
	return &st, nil
}

// save replaces the state through a synced temporary file and a rename.
func (w *Witness) save(node string, st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := w.stateFile(node) + ".new"
	os.Remove(tmp)
	if err := writeSync(tmp, b, os.O_EXCL); err != nil {
		return err
	}
	if err := os.Rename(tmp, w.stateFile(node)); err != nil {
		return fmt.Errorf("cosign: %w", err)
	}
	return vault.SyncDir(w.dir)
}

func appendSync(path string, b []byte) error { return writeSync(path, b, os.O_APPEND) }

func writeSync(path string, b []byte, flag int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if err != nil {
		return fmt.Errorf("cosign: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("cosign: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cosign: sync %s: %w", path, err)
	}
	return f.Close()
}
