package cosign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"tandem.dev/tandem/internal/store"
)

// Exchange is the shared store as the nodes use it to reach each other's
// witnesses (internal/store: cosign.go).
type Exchange interface {
	CosignSubmit(ctx context.Context, node, witness string, size uint64, body []byte) error
	CosignPending(ctx context.Context, witness string) ([]store.CosignPosted, error)
	CosignAnswer(ctx context.Context, node, witness string, seq int64, size uint64, note []byte, refusal string, at time.Time) error
	CosignAnswerOf(ctx context.Context, node, witness string) (store.CosignAnswered, bool, error)
	CosignAnswers(ctx context.Context, node string) ([]store.CosignAnswered, error)
}

// Refusal is a witness refusing a node's checkpoint for a reason that is
// evidence (a rewrite, a forged proof, a foreign key, a rollback), not a
// matter of catching up.
type Refusal struct {
	Node, Witness string
	Size          uint64 // the size of the refused checkpoint
	Have          uint64 // the size the witness co-signed last
	Reason        string
}

// Node is one gateway in the exchange: it submits its own checkpoints to
// every peer and co-signs theirs. One goroutine runs it (Run).
type Node struct {
	Name      string
	Peers     []string
	Publisher *Publisher
	Witness   *Witness
	X         Exchange
	Log       *slog.Logger
	Now       func() time.Time
	// OnRefused is called for every refusal this node makes as a
	// witness (the caller audits it and raises the alarm).
	OnRefused func(Refusal)

	mu        sync.Mutex
	submitted map[string]span    // what was last submitted to each peer
	refused   []Refusal          // this node's checkpoints the peers refused, latest per peer
	refusing  map[string]Refusal // per peer, the refusal in force (until it submits one we co-sign)
}

// span is a submission's proof: from the witness's size to the new one.
type span struct{ from, to uint64 }

// Run does a round every interval until ctx ends.
func (n *Node) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := n.Round(ctx); err != nil && ctx.Err() == nil {
			n.Log.Warn("cosigning round failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round submits this node's latest checkpoint to the peers that have not
// co-signed it and answers the peers' pending submissions.
func (n *Node) Round(ctx context.Context) error {
	return errors.Join(n.submit(ctx), n.answer(ctx))
}

func (n *Node) submit(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.submitted == nil {
		n.submitted = map[string]span{}
	}
	var errs []error
	var refused []Refusal
	for _, w := range n.Peers {
		a, _, err := n.X.CosignAnswerOf(ctx, n.Name, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a.Refusal != "" {
			refused = append(refused, Refusal{Node: n.Name, Witness: w, Have: a.Size, Reason: a.Refusal})
		}
		var haveRoot []byte
		if cp, err := checkpointBody(a.Note); err == nil && cp.Size == a.Size {
			haveRoot = cp.Hash
		}
		s, ok, err := n.Publisher.Submission(a.Size, haveRoot)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		sp := span{from: a.Size, to: sizeOf(s)}
		if n.submitted[w] == sp {
			continue // posted already: answered or not, the same again would change nothing
		}
		body, err := json.Marshal(s)
		if err == nil {
			err = n.X.CosignSubmit(ctx, n.Name, w, sp.to, body)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.submitted[w] = sp
	}
	for _, r := range refused {
		if !slices.ContainsFunc(n.refused, func(p Refusal) bool { return p.Witness == r.Witness && p.Reason == r.Reason }) {
			n.Log.Error("a peer refused this node's audit checkpoint: this log no longer matches what the peer saw", "witness", r.Witness, "have", r.Have, "reason", r.Reason)
		}
	}
	n.refused = refused
	return errors.Join(errs...)
}

func (n *Node) answer(ctx context.Context) error {
	posted, err := n.X.CosignPending(ctx, n.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range posted {
		var s Submission
		if err := json.Unmarshal(p.Body, &s); err != nil {
			// Bytes on the store that are not a submission name no node
			// to answer: say so in the log.
			n.Log.Warn("unreadable cosigning submission on the store", "err", err)
			continue
		}
		note, err := n.Witness.Cosign(s)
		last, lerr := n.Witness.Last(s.Node)
		if errors.Is(lerr, ErrUnknownNode) {
			continue // not our peer: not ours to answer
		}
		// A proof from another size than ours is no refusal: the answer
		// tells the node where we stand, and it submits from there.
		refusal := ""
		var fe *FromError
		switch {
		case err == nil:
			n.accepted(s.Node)
		case !errors.As(err, &fe):
			refusal = err.Error()
			r := Refusal{Node: s.Node, Witness: n.Name, Size: sizeOf(s), Have: last, Reason: refusal}
			if n.refuse(r) && n.OnRefused != nil {
				n.OnRefused(r)
			}
		}
		if err := n.X.CosignAnswer(ctx, s.Node, n.Name, p.Seq, last, note, refusal, n.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refuse records a refusal of a peer's checkpoint and reports whether it
// is news: a refused submission stays on the store and is refused again
// every round until the peer submits another, but is reported once.
func (n *Node) refuse(r Refusal) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refusing == nil {
		n.refusing = map[string]Refusal{}
	}
	prev, ok := n.refusing[r.Node]
	n.refusing[r.Node] = r
	return !ok || prev.Size != r.Size
}

func (n *Node) accepted(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.refusing, node)
}

// Refusing returns the peers' checkpoints this node refuses now.
func (n *Node) Refusing() []Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Refusal
	for _, r := range n.refusing {
		out = append(out, r)
	}
	return out
}

// Refused returns the refusals of this node's checkpoints that the last
// round found (readiness shows them).
func (n *Node) Refused() []Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Refusal(nil), n.refused...)
}

// sizeOf is the size of the submission's checkpoint (0 if unreadable:
// the witness refuses it anyway).
func sizeOf(s Submission) uint64 {
	cp, err := checkpointBody(s.Note)
	if err != nil {
		return 0
	}
	return cp.Size
}

func (r Refusal) String() string {
	return fmt.Sprintf("witness %s refused checkpoint %d of node %s: %s", r.Witness, r.Size, r.Node, r.Reason)
}
