package cosign

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// pair is two nodes, a and b, exchanging through one state store.
type pair struct {
	a, b       *node
	na, nb     *Node
	wkA, wkB   string // witness verifier keys
	refusedByB []Refusal
}

func newPair(t *testing.T) *pair {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ka, _ := newKey(t, "tandem/audit/a")
	kb, _ := newKey(t, "tandem/audit/b")
	p := &pair{a: newNodeOrigin(t, ka, "tandem/audit/a"), b: newNodeOrigin(t, kb, "tandem/audit/b")}
	wa, wka := newKey(t, "tandem/witness/a")
	wb, wkb := newKey(t, "tandem/witness/b")
	p.wkA, p.wkB = wa.Verifier(), wb.Verifier()
	witA, err := NewWitness(t.TempDir(), wka, []Peer{{Node: "b", Origin: "tandem/audit/b", Key: kb.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	witB, err := NewWitness(t.TempDir(), wkb, []Peer{{Node: "a", Origin: "tandem/audit/a", Key: ka.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p.na = &Node{Name: "a", Peers: []string{"b"}, Publisher: NewPublisher("a", p.a.dir), Witness: witA, X: st, Log: quiet, Now: time.Now}
	p.nb = &Node{Name: "b", Peers: []string{"a"}, Publisher: NewPublisher("b", p.b.dir), Witness: witB, X: st, Log: quiet, Now: time.Now,
		OnRefused: func(r Refusal) { p.refusedByB = append(p.refusedByB, r) }}
	return p
}

func (p *pair) rounds(t *testing.T, k int) {
	t.Helper()
	for i := 0; i < k; i++ {
		for _, n := range []*Node{p.na, p.nb} {
			if err := n.Round(context.Background()); err != nil {
				t.Fatalf("round of %s: %v", n.Name, err)
			}
		}
	}
}

// TestNodesWitnessEachOther: through the store, each node co-signs the
// other's checkpoints; each node's log verifies against the other's copy,
// whose cosignatures verify with the other's witness key.
func TestNodesWitnessEachOther(t *testing.T) {
	p := newPair(t)
	for i := 0; i < 3; i++ {
		p.a.grow(t, 4, "a")
		p.b.grow(t, 2, "b")
		p.rounds(t, 2)
	}
	for _, c := range []struct {
		n    *node
		w    *Witness
		wkey string
		name string
	}{{p.a, p.nb.Witness, p.wkB, "a"}, {p.b, p.na.Witness, p.wkA, "b"}} {
		rep, err := VerifyCopy(c.w.CopyFile(c.name), c.wkey)
		if err != nil || !rep.OK() {
			t.Fatalf("%s's copy: %+v %v", c.name, rep, err)
		}
		vr, err := audit.Verify(c.n.dir, c.n.key.Verifier(), c.w.CopyFile(c.name))
		if err != nil || !vr.OK() || vr.Witnessed == 0 {
			t.Fatalf("%s against its peer's copy: %+v %v", c.name, vr, err)
		}
		if last, _ := c.w.Last(c.name); last != c.n.log.Size()-1 && last != c.n.log.Size() {
			t.Errorf("%s: the peer co-signed up to %d of %d", c.name, last, c.n.log.Size())
		}
	}
	if len(p.na.Refused()) != 0 || len(p.refusedByB) != 0 {
		t.Fatalf("refusals: %v %v", p.na.Refused(), p.refusedByB)
	}
}

// TestNodeRewriteRefused: node a's log is replaced by another history
// signed with a's key — shorter than what b saw, as long, or longer; b
// refuses it once (audited by the caller), a sees the refusal, and b's
// copy still shows the history it co-signed.
func TestNodeRewriteRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra int // records of the rewrite beyond what b co-signed
		want  error
	}{
		{"shorter", -3, ErrRollback},
		{"as long", 0, ErrConflict},
		{"longer", 3, ErrProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			p.a.grow(t, 6, "uptime")
			p.rounds(t, 2)
			have, _ := p.nb.Witness.Last("a")
			if have < 4 {
				t.Fatalf("b co-signed only %d", have)
			}
			rw := newNodeOrigin(t, p.a.key, "tandem/audit/a")
			rw.grow(t, int(have)+tc.extra, "rm -rf") // a fresh log: its first checkpoint is at this size
			p.na.Publisher = NewPublisher("a", rw.dir)
			p.rounds(t, 3)
			if len(p.refusedByB) != 1 || !strings.Contains(p.refusedByB[0].Reason, tc.want.Error()) {
				t.Fatalf("b's refusals: %v, want one with %q", p.refusedByB, tc.want)
			}
			if got := p.na.Refused(); len(got) != 1 || got[0].Witness != "b" {
				t.Fatalf("a's view of the refusals: %v", got)
			}
			if last, _ := p.nb.Witness.Last("a"); last != have {
				t.Fatalf("b moved from %d to %d", have, last)
			}
			vr, err := audit.Verify(rw.dir, p.a.key.Verifier(), p.nb.Witness.CopyFile("a"))
			if err != nil || vr.OK() {
				t.Fatalf("the rewritten log verified against b's copy: %+v %v", vr, err)
			}
		})
	}
}
