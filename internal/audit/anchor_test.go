package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rewriteWithout replays the log in o.Dir into a fresh log signed with
// the same key, leaving out person's events: the attack of someone who can
// write the data directory and read the signing key. The witness, off-host,
// is out of their reach.
func rewriteWithout(t *testing.T, o Options, person string) {
	t.Helper()
	forged := testOpts(t)
	forged.WitnessFile = ""
	l := mustOpen(t, forged)
	for _, r := range readAll(t, o.Dir) {
		if r.Event.Person == person || r.Event.Type == LogCheckpoint {
			continue
		}
		if err := l.Append(context.Background(), r.Event); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(forged.Dir, o.Dir); err != nil {
		t.Fatal(err)
	}
}

func TestRewriteWithTheKeyIsCaughtByTheWitness(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 30)
	bob := ev(0)
	bob.Person = "bob"
	for i := 0; i < 5; i++ {
		if err := l.Append(context.Background(), bob); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, l, 30, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteWithout(t, o, "bob")

	// Without the witness the forgery verifies, and the report says so.
	rep, err := Verify(o.Dir, testKey().Verifier(), "")
	if err != nil || !rep.OK() {
		t.Fatalf("forged log without witness: %+v %v", rep, err)
	}
	if len(rep.Caveats) != 1 || rep.Caveats[0] != noWitness {
		t.Fatalf("caveats without a witness: %q", rep.Caveats)
	}

	// With it, the first divergence is named.
	rep, err = Verify(o.Dir, testKey().Verifier(), o.WitnessFile)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Diverges <= 0 {
		t.Fatalf("forged log with witness: %+v", rep)
	}
	if !strings.Contains(rep.Problems[0], "diverges from the witnessed checkpoint at size") {
		t.Fatalf("first problem: %q", rep.Problems[0])
	}

	// And the gateway refuses to carry on from it.
	if _, err := Open(o); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "diverges") {
		t.Fatalf("Open on the forged log: %v", err)
	}
}

func TestVerifyStatesWhatTheWitnessProves(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 25)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, o)
	if !rep.OK() || rep.Witnessed == 0 || rep.WitnessedUpTo != rep.LastCheckpoint || len(rep.Caveats) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	if p := rep.Proven(); !strings.Contains(strings.Join(p, "\n"), "agrees with") {
		t.Fatalf("proven: %q", p)
	}
}

func TestOpenRefusesAWitnessOfAnotherKey(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	other := testOpts(t)
	other.Key, _, _ = GenerateSigningKey("tandem/audit")
	other.WitnessFile = o.WitnessFile
	if _, err := Open(other); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with another log's witness: %v", err)
	}
}

// damage flips a byte inside record i, so that Open refuses the log.
func damage(t *testing.T, dir string, i int) {
	t.Helper()
	fr := frames(t, dir)
	fr[i][8] ^= 0xff
	writeParts(t, filepath.Join(dir, recordsFile), fr)
}

func TestRecoverStartsASegmentAndVerifyReportsTheGap(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 55)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	total := uint64(len(frames(t, o.Dir)))
	damage(t, o.Dir, 40)
	if _, err := Open(o); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open on a damaged log: %v", err)
	}
	r, err := Recover(RecoverOptions{Dir: o.Dir, Key: o.Key, WitnessFile: o.WitnessFile, Keys: o.Keys, Reason: "disk error", Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	if r.Closed != 1 || r.AnchorSize == 0 || r.AnchorSize > 40 || r.LostFrom != r.AnchorSize || r.LostTo != total || r.LostBytes <= 0 {
		t.Fatalf("recovery: %+v (records %d)", r, total)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, segmentsDir, "0001", recordsFile)); err != nil {
		t.Fatalf("closed segment not kept: %v", err)
	}

	l = mustOpen(t, o)
	appendN(t, l, 100, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := readAll(t, o.Dir); recs[0].Event.Type != LogSegment || recs[0].Event.Attrs["reason"] != "disk error" {
		t.Fatalf("first record of the new segment: %+v", recs[0])
	}
	rep := mustVerify(t, o)
	if !rep.OK() || rep.Segments != 2 || len(rep.Gaps) != 1 || rep.Witnessed == 0 {
		t.Fatalf("after recovery: %+v", rep)
	}
	if want := "indices " + itoa(r.AnchorSize) + "–" + itoa(total-1) + " of segment 1 lost"; !strings.Contains(rep.Gaps[0], want) || !strings.Contains(rep.Gaps[0], "reason: disk error") {
		t.Fatalf("gap %q, want %q", rep.Gaps[0], want)
	}

	// A second recovery chains on.
	damage(t, o.Dir, 3)
	if _, err := Recover(RecoverOptions{Dir: o.Dir, Key: o.Key, WitnessFile: o.WitnessFile, Keys: o.Keys, Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, o); !rep.OK() || rep.Segments != 3 || len(rep.Gaps) != 2 {
		t.Fatalf("after a second recovery: %+v", rep)
	}

	// Editing a closed segment before its anchor is still caught.
	closed := filepath.Join(o.Dir, segmentsDir, "0001")
	fr := frames(t, closed)
	fr[2] = refit(flipCiphertext(t, payloadOf(fr[2])))
	writeParts(t, filepath.Join(closed, recordsFile), fr)
	if rep := mustVerify(t, o); rep.OK() {
		t.Fatalf("edit of a closed segment not detected: %+v", rep)
	}
}

func TestInterruptedRecoveryIsFinishedByRunningItAgain(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 15)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, o.Dir, 12)
	if err := closeSegment(o.Dir, 1); err != nil { // the crash came right after the move
		t.Fatal(err)
	}
	if _, err := Open(o); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Open after an interrupted recovery: %v", err)
	}
	if _, err := Recover(RecoverOptions{Dir: o.Dir, Key: o.Key, WitnessFile: o.WitnessFile, Keys: o.Keys, Reason: "crash"}); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, o); !rep.OK() || rep.Segments != 2 {
		t.Fatalf("after finishing the recovery: %+v", rep)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// flipCiphertext changes one character of the first part's ciphertext:
// the edit an attacker without keys can make to an encrypted record.
func flipCiphertext(t *testing.T, rec []byte) []byte {
	t.Helper()
	out := append([]byte(nil), rec...)
	i := bytes.Index(out, []byte(`"ct":"`))
	if i < 0 {
		t.Fatalf("no ciphertext in %s", rec)
	}
	i += len(`"ct":"`)
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}
