package cosign

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/transparency-dev/formats/log"

	"tandem.dev/tandem/internal/audit"
)

// Publisher builds a node's submissions for its witnesses from its own
// log: the last checkpoint with a consistency proof from the size each
// witness co-signed last. It keeps the tree at each such size, so that a
// witness that keeps up costs only the leaves since its last answer.
type Publisher struct {
	node string
	dir  string // the log's current segment

	mu    sync.Mutex
	trees map[uint64]audit.Tree // by size; bounded by the number of witnesses
}

// NewPublisher publishes the log in dir (the current segment) of node.
func NewPublisher(node, dir string) *Publisher {
	return &Publisher{node: node, dir: dir, trees: map[uint64]audit.Tree{}}
}

// Submission returns the node's last checkpoint for a witness that
// co-signed size have, with root haveRoot, last (0, nil: none yet). ok is
// false when there is nothing new for it. A log that is now shorter than
// what the witness saw, or has another tree at that size, is submitted
// all the same, without a proof: the witness refuses it, which is the
// point — an honest log never shrinks or changes.
func (p *Publisher) Submission(have uint64, haveRoot []byte) (s Submission, ok bool, err error) {
	raw, err := audit.LastNote(filepath.Join(p.dir, "checkpoints.log"))
	if err != nil || raw == nil {
		return Submission{}, false, err
	}
	cp, err := checkpointBody(raw)
	if err != nil {
		return Submission{}, false, err
	}
	switch {
	case cp.Size == have && (haveRoot == nil || bytes.Equal(cp.Hash, haveRoot)):
		return Submission{}, false, nil
	case cp.Size <= have:
		return Submission{Node: p.node, Note: raw, From: cp.Size}, true, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, cached := p.trees[have]
	if !cached {
		if t, err = audit.TreeAt(p.dir, have); err != nil {
			return Submission{}, false, err
		}
	}
	prf, _, next, err := t.Extend(p.dir, cp.Size)
	if err != nil {
		return Submission{}, false, err
	}
	// Keep the tree each witness will ask from next; forget the old one
	// unless another witness still stands there.
	p.trees[cp.Size] = next
	if len(p.trees) > 16 {
		clear(p.trees)
		p.trees[cp.Size] = next
	}
	return Submission{Node: p.node, Note: raw, From: have, Proof: prf}, true, nil
}

// checkpointBody parses a note's checkpoint without checking signatures:
// the node reads its own file, and the witnesses check them.
func checkpointBody(raw []byte) (log.Checkpoint, error) {
	n, err := openUnverified(raw)
	if err != nil {
		return log.Checkpoint{}, err
	}
	var cp log.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return log.Checkpoint{}, fmt.Errorf("cosign: %w", err)
	}
	return cp, nil
}
