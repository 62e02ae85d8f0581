package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

func newTestKey(t testing.TB) *SigningKey {
	t.Helper()
	k, _, err := GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handOver appends the log.key_handover event and hands the log over to
// next, as tandem audit rotate-key does.
func handOver(t testing.TB, l *Log, old, next *SigningKey) {
	t.Helper()
	e := LogKeyHandoverEvent{OldKey: old.Verifier(), NewKey: next.Verifier(), By: "alice"}
	if err := l.Append(context.Background(), e.Event()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.HandOver(next); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
}

// rotatedLog writes a log signed by keys[0] that is handed over to each
// next key in turn, with events and checkpoints before and after every
// hand-over and a restart with the newest key at the end.
func rotatedLog(t *testing.T, keys ...*SigningKey) Options {
	t.Helper()
	o := testOpts(t)
	o.Key = keys[0]
	l := mustOpen(t, o)
	n := 0
	for i, next := range keys[1:] {
		appendN(t, l, n, 25)
		n += 25
		handOver(t, l, keys[i], next)
	}
	appendN(t, l, n, 15)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	o.Key = keys[len(keys)-1]
	l = mustOpen(t, o) // a restart with the new key file
	appendN(t, l, n+15, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return o
}

func verifyKey(t *testing.T, o Options, key string) *Report {
	t.Helper()
	rep, err := Verify(o.Dir, key, o.WitnessFile)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestHandOverVerifyFollowsTheChain(t *testing.T) {
	k1, k2, k3 := newTestKey(t), newTestKey(t), newTestKey(t)
	o := rotatedLog(t, k1, k2, k3)
	for _, tc := range []struct {
		name string
		key  string
	}{
		{"the first key, forward", k1.Verifier()},
		{"the middle key, both ways", k2.Verifier()},
		{"the newest key, back", k3.Verifier()},
		{"audit.pub", pubKey(t, o.Dir)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := verifyKey(t, o, tc.key)
			if !rep.OK() {
				t.Fatalf("problems: %v", rep.Problems)
			}
			if got, want := len(rep.SigningKeys), 3; got != want {
				t.Fatalf("signing keys %v: got %d, want %d", rep.SigningKeys, got, want)
			}
			if want := uint64(2*(25+1) + 15 + 5); rep.Records < want { // plus log.checkpoint events
				t.Errorf("records: got %d, want at least %d", rep.Records, want)
			}
		})
	}
	if got := pubKey(t, o.Dir); got != k3.Verifier() {
		t.Errorf("audit.pub: got %q, want the newest key", got)
	}

	stranger := newTestKey(t)
	if rep := verifyKey(t, o, stranger.Verifier()); rep.OK() {
		t.Error("a key outside the chain verified the log")
	}
}

func TestHandOverOpenWithTheRetiredKeyRefused(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	o := rotatedLog(t, k1, k2)
	o.Key = k1
	if l, err := Open(o); err == nil {
		l.Close()
		t.Fatal("the log opened with the retired key")
	}
}

func mustLastNote(t *testing.T, path string) []byte {
	t.Helper()
	b, err := lastNote(path)
	if err != nil || b == nil {
		t.Fatalf("last note of %s: %v", path, err)
	}
	return b
}

// resignNote signs the body of a note again with the given keys.
func resignNote(t *testing.T, raw []byte, extra string, keys ...*SigningKey) []byte {
	t.Helper()
	body, _, _ := bytes.Cut(raw, []byte("\n\n"))
	var cp log.Checkpoint
	if _, err := cp.Unmarshal(append(body, '\n')); err != nil {
		t.Fatal(err)
	}
	var signers []note.Signer
	for _, k := range keys {
		signers = append(signers, k.signer)
	}
	b, err := note.Sign(&note.Note{Text: string(cp.Marshal()) + extra}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The attacks of someone who kept a copy of a retired key: go on signing
// with it, or hand it over a second time to a key of their own. Each is a
// problem; so is a hand-over one of its keys did not sign.
func TestHandOverRetiredKeyCannotContinue(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	attacker := newTestKey(t)
	for _, tc := range []struct {
		name  string
		forge func(raw []byte) []byte
		want  string
	}{
		{"retired key signs a later checkpoint", func(raw []byte) []byte {
			return resignNote(t, raw, "", k1)
		}, "term does not cover"},
		{"retired key hands over again", func(raw []byte) []byte {
			return resignNote(t, raw, handoverLine(k1.Verifier(), attacker.Verifier()), k1, attacker)
		}, "handed over twice"},
		{"hand-over signed by the new key only", func(raw []byte) []byte {
			return resignNote(t, raw, handoverLine(k2.Verifier(), attacker.Verifier()), attacker)
		}, "cannot be trusted"},
		{"hand-over to itself", func(raw []byte) []byte {
			return resignNote(t, raw, handoverLine(k2.Verifier(), k2.Verifier()), k2)
		}, "to itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := rotatedLog(t, k1, k2)
			cps := filepath.Join(o.Dir, checkpointsFile)
			appendFile(t, cps, tc.forge(mustLastNote(t, cps)))
			for _, key := range []string{k1.Verifier(), k2.Verifier()} {
				rep := verifyKey(t, o, key)
				if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
					t.Errorf("verify with %s: want a problem with %q, got %v", shortKey(key), tc.want, rep.Problems)
				}
			}
		})
	}
}

func TestLastHandover(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	o := testOpts(t)
	o.Key = k1
	l := mustOpen(t, o)
	appendN(t, l, 0, 3)
	if _, _, ok, err := LastHandover(o.Dir); ok || err != nil {
		t.Fatalf("before: ok %v err %v", ok, err)
	}
	handOver(t, l, k1, k2)
	old, next, ok, err := LastHandover(o.Dir)
	if !ok || err != nil || old != k1.Verifier() || next != k2.Verifier() {
		t.Fatalf("after the hand-over: %q %q %v %v", old, next, ok, err)
	}
	appendN(t, l, 3, 1)
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := LastHandover(o.Dir); ok {
		t.Error("a later checkpoint still reads as the hand-over")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// A recovery after a hand-over anchors the new segment on a checkpoint
// signed by the new key, found through the chain.
func TestHandOverThenRecover(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	o := rotatedLog(t, k1, k2)
	// Damage the last record: Open refuses, Recover starts segment 2.
	recs := filepath.Join(o.Dir, recordsFile)
	b, err := os.ReadFile(recs)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(recs, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(RecoverOptions{Dir: o.Dir, Key: k2, Keys: o.Keys, Origin: "tandem/audit", WitnessFile: o.WitnessFile, Reason: "test", Now: newClock().Now}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	rep := verifyKey(t, o, k1.Verifier())
	if !rep.OK() || rep.Segments != 2 {
		t.Fatalf("after recovery: segments %d problems %v", rep.Segments, rep.Problems)
	}
}

func FuzzReadHandover(f *testing.F) {
	k1, k2 := newTestKey(f), newTestKey(f)
	good, err := signHandover(log.Checkpoint{Origin: "tandem/audit", Size: 3, Hash: make([]byte, 32)}, k1, k2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("tandem/audit\n3\nAAAA\n" + handoverTag + " a b\n\n\u2014 x y\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := readHandover(raw)
		if h != nil && err != nil {
			t.Fatal("a hand-over and an error")
		}
		if h != nil && (h.old == h.new || h.old == "" || h.new == "") {
			t.Fatalf("accepted a bad hand-over: %+v", h)
		}
	})
}
