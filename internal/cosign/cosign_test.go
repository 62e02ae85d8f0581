package cosign

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

const origin = "tandem/audit/a"

// node is one gateway's log in a test.
type node struct {
	dir string
	key *audit.SigningKey
	log *audit.Log
}

func newNode(t *testing.T, key *audit.SigningKey) *node {
	t.Helper()
	return newNodeOrigin(t, key, origin)
}

func newNodeOrigin(t *testing.T, key *audit.SigningKey, origin string) *node {
	t.Helper()
	base := t.TempDir()
	kekFile := filepath.Join(base, "kek")
	if err := vault.GenerateFileKEK(kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := vault.FileKEK(kekFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(filepath.Join(base, "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dir: filepath.Join(base, "audit"), key: key}
	n.log, err = audit.Open(audit.Options{Dir: n.dir, Key: key, Keys: v, Origin: origin, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.log.Close() })
	return n
}

// grow appends k events with the given command and signs a checkpoint.
func (n *node) grow(t *testing.T, k int, cmd string) {
	t.Helper()
	for i := 0; i < k; i++ {
		e := audit.Event{Type: audit.Exec, Person: "alice", Tenant: "t1", Host: "db1", Attrs: map[string]string{"cmd": cmd + strconv.Itoa(i)}}
		if err := n.log.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.log.Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T, name string) (*audit.SigningKey, string) {
	t.Helper()
	k, text, err := audit.GenerateSigningKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(text)
}

func newWitness(t *testing.T, a *node) (*Witness, string) {
	t.Helper()
	wk, text := newKey(t, "tandem/witness/b")
	w, err := NewWitness(t.TempDir(), text, []Peer{{Node: "a", Origin: origin, Key: a.key.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	return w, wk.Verifier()
}

// round publishes a's last checkpoint to w from what w co-signed last.
func round(t *testing.T, p *Publisher, w *Witness) ([]byte, error) {
	t.Helper()
	have, err := w.Last("a")
	if err != nil {
		t.Fatal(err)
	}
	s, ok, err := p.Submission(have, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil, nil
	}
	return w.Cosign(s)
}

func TestWitnessCosignsAGrowingLog(t *testing.T) {
	key, _ := newKey(t, origin)
	a := newNode(t, key)
	w, wkey := newWitness(t, a)
	p := NewPublisher("a", a.dir)
	for _, k := range []int{3, 1, 7, 16, 2} {
		a.grow(t, k, "uptime")
		cosigned, err := round(t, p, w)
		if err != nil || cosigned == nil {
			t.Fatalf("after %d more: %v", k, err)
		}
		cv, _ := note.NewVerifier(key.Verifier())
		if _, err := note.Open(cosigned, note.VerifierList(cv)); err != nil {
			t.Fatalf("the co-signed note lost the node's signature: %v", err)
		}
	}
	if c, err := round(t, p, w); c != nil || err != nil {
		t.Fatalf("nothing new, yet: %q %v", c, err)
	}
	rep, err := VerifyCopy(w.CopyFile("a"), wkey)
	if err != nil || !rep.OK() || rep.Notes != 5 {
		t.Fatalf("copy: %+v %v", rep, err)
	}
	vr, err := audit.Verify(a.dir, key.Verifier(), w.CopyFile("a"))
	if err != nil || !vr.OK() || vr.Witnessed != 5 {
		t.Fatalf("the node's log against the witness's copy: %+v %v", vr, err)
	}
	other, _ := newKey(t, "tandem/witness/c")
	if rep, _ := VerifyCopy(w.CopyFile("a"), other.Verifier()); rep.OK() {
		t.Error("the copy verified with another witness's key")
	}
}

// The attacks on a witness: a rewritten log (same key) at the same size
// and beyond, a checkpoint older than one co-signed, a forged proof, a
// stranger's key, an unknown node. None is co-signed.
func TestWitnessRefuses(t *testing.T) {
	key, _ := newKey(t, origin)
	a := newNode(t, key)
	w, _ := newWitness(t, a)
	p := NewPublisher("a", a.dir)
	a.grow(t, 5, "uptime")
	older, _, err := p.Submission(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Cosign(older); err != nil {
		t.Fatal(err)
	}
	first, _ := w.Last("a")
	a.grow(t, 5, "uptime")
	if _, err := round(t, p, w); err != nil {
		t.Fatal(err)
	}
	have, _ := w.Last("a")

	// The same key writing another history: a rewrite.
	rw := newNode(t, key)
	rw.grow(t, int(have), "rm -rf") // a fresh log: its first checkpoint is at size have
	rwp := NewPublisher("a", rw.dir)
	sameSize, _, err := rwp.Submission(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rw.grow(t, 4, "rm -rf")
	beyond, _, err := rwp.Submission(have, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.grow(t, 2, "uptime")
	good, _, err := p.Submission(have, nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := newKey(t, origin)
	sa := newNode(t, stranger)
	sa.grow(t, 20, "x")
	strangers, _, _ := NewPublisher("a", sa.dir).Submission(0, nil)

	badProof := good
	badProof.Proof = append([][]byte(nil), good.Proof...)
	badProof.Proof[0] = bytes.Repeat([]byte{1}, 32)
	wrongFrom := good
	wrongFrom.From = first

	for _, tc := range []struct {
		name string
		s    Submission
		want error
	}{
		{"rewrite of the same size", sameSize, ErrConflict},
		{"rewrite beyond", beyond, ErrProof},
		{"an older checkpoint", older, ErrRollback},
		{"a forged proof", badProof, ErrProof},
		{"a stranger's key", strangers, ErrSignature},
		{"an unknown node", Submission{Node: "z", Note: good.Note}, ErrUnknownNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := w.Cosign(tc.s); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got, _ := w.Last("a"); got != have {
				t.Fatalf("the refusal moved the witness from %d to %d", have, got)
			}
		})
	}
	var fe *FromError
	if _, err := w.Cosign(wrongFrom); !errors.As(err, &fe) || fe.Have != have {
		t.Fatalf("a proof from another size: %v", err)
	}
	if _, err := w.Cosign(good); err != nil {
		t.Fatalf("the honest log after the attacks: %v", err)
	}
}

// After a signing key hand-over the witness follows the node to its new
// key and refuses the retired one.
func TestWitnessFollowsAHandover(t *testing.T) {
	k1, _ := newKey(t, origin)
	a := newNode(t, k1)
	w, wkey := newWitness(t, a)
	p := NewPublisher("a", a.dir)
	a.grow(t, 4, "uptime")
	if _, err := round(t, p, w); err != nil {
		t.Fatal(err)
	}
	k2, _ := newKey(t, origin)
	if _, err := a.log.HandOver(k2); err != nil {
		t.Fatal(err)
	}
	// The witness must see the hand-over itself before a checkpoint of k2.
	if _, err := round(t, p, w); err != nil {
		t.Fatalf("the hand-over: %v", err)
	}
	a.grow(t, 3, "uptime")
	if _, err := round(t, p, w); err != nil {
		t.Fatalf("after the hand-over: %v", err)
	}
	have, _ := w.Last("a")
	a.grow(t, 1, "uptime")
	s, _, err := p.Submission(have, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same checkpoint signed with the retired key only.
	cp, _ := checkpointBody(s.Note)
	s.Note = signWith(t, cp.Marshal(), k1)
	if _, err := w.Cosign(s); !errors.Is(err, ErrSignature) {
		t.Fatalf("a checkpoint of the retired key: %v", err)
	}
	if rep, err := VerifyCopy(w.CopyFile("a"), wkey); err != nil || !rep.OK() {
		t.Fatalf("copy: %+v %v", rep, err)
	}
	if vr, err := audit.Verify(a.dir, k1.Verifier(), w.CopyFile("a")); err != nil || !vr.OK() {
		t.Fatalf("verify across the hand-over with the witness's copy: %+v %v", vr, err)
	}
}

func signWith(t *testing.T, body []byte, k *audit.SigningKey) []byte {
	t.Helper()
	b, err := k.SignNote(string(body))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
