package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// leafFormRecords are v2 records as the writer writes them: one part, two
// parts, attributes in clear, no part at all, and the same with their
// ciphertexts removed (compacted).
func leafFormRecords(t testing.TB) [][]byte {
	t.Helper()
	keys := keysFor(t, t.TempDir()+"/audit")
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	events := []Event{
		ev(1),
		{Type: Exec, Time: at, Person: "alice", Source: "192.0.2.1:22", Attrs: map[string]string{"cmd": `a "ct":"b"`}},
		{Type: LogSegment, Time: at, Attrs: map[string]string{"segment": "2", "reason": `"ct":"x"`}},
		{Type: LogCheckpoint, Time: at},
	}
	var out [][]byte
	for i, e := range events {
		if e.Time.IsZero() {
			e.Time = at
		}
		rec, err := EncodeRecordV2(uint64(i), e, keys)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
		if c := regexp.MustCompile(`"ct":"[^"]*",`).ReplaceAll(rec, nil); !bytes.Equal(c, rec) {
			out = append(out, c)
		}
	}
	return out
}

// sameLeafForm fails unless appendForm (with its shortcut over the
// writer's layout) gives exactly what scan, the definition, gives.
func sameLeafForm(t *testing.T, rec []byte) {
	t.Helper()
	var a, b leafFormer
	for _, check := range []bool{true, false} {
		got, gerr := a.appendForm([]byte("x"), rec, check)
		want, werr := b.scan([]byte("x"), rec, check)
		if !bytes.Equal(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("check %v, record %q:\nappendForm %q, %v\nscan       %q, %v", check, rec, got, gerr, want, werr)
		}
	}
}

func TestLeafFormLayout(t *testing.T) {
	for _, rec := range leafFormRecords(t) {
		// The writer's records must take the shortcut, or verification
		// is back to its slower speed without anyone noticing.
		var s leafFormer
		if _, ok := s.appendFormV2(nil, rec, true); !ok {
			t.Errorf("the layout shortcut does not take the writer's record %s", rec)
		}
		sameLeafForm(t, rec)
		// Every byte changed, dropped or doubled: the shortcut either
		// agrees with the scan or leaves the record to it.
		for i := range rec {
			for _, c := range []byte{'"', '\\', ',', '}', ']', 'c', 'A', '0', 0xff} {
				m := bytes.Clone(rec)
				m[i] = c
				sameLeafForm(t, m)
			}
			sameLeafForm(t, append(bytes.Clone(rec[:i]), rec[i+1:]...))
			sameLeafForm(t, append(bytes.Clone(rec[:i+1]), rec[i:]...))
		}
	}
}

func FuzzLeafForm(f *testing.F) {
	for _, rec := range leafFormRecords(f) {
		f.Add(rec)
	}
	f.Fuzz(sameLeafForm)
}

// TestVerifyOrderAcrossBatches damages records across the batches that
// verification's workers check in parallel: the report must name them as
// a walk record by record does, in order, the first one FirstBad.
func TestVerifyOrderAcrossBatches(t *testing.T) {
	o := testOpts(t)
	o.CheckpointEvents = 100
	l := mustOpen(t, o)
	total := 2*batchRecords + 100
	appendN(t, l, 0, total)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fr := frames(t, o.Dir)
	var want []string
	for i := 3; i < total; i += 7 {
		var w wireV2
		if err := json.Unmarshal(payloadOf(fr[i]), &w); err != nil {
			t.Fatal(err)
		}
		w.Parts[0].CTSHA256 = strings.Repeat("0", 64)
		b, err := json.Marshal(&w)
		if err != nil {
			t.Fatal(err)
		}
		fr[i] = refit(b)
		want = append(want, fmt.Sprintf("record %d: part: ct does not match its ct_sha256", i))
	}
	writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
	rep, err := Verify(o.Dir, pubKey(t, o.Dir), "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.FirstBad != 3 || len(rep.Problems) < len(want) || !slices.Equal(rep.Problems[:len(want)], want) {
		t.Fatalf("FirstBad %d, problems:\n%s", rep.FirstBad, strings.Join(rep.Problems, "\n"))
	}
}

// BenchmarkLeafForm makes the leaf forms of many different records, as a
// verification does: with one record over and over, the branch predictor
// learns its hashes and hides what a real log costs.
func BenchmarkLeafForm(b *testing.B) {
	keys := keysFor(b, b.TempDir()+"/audit")
	recs := make([][]byte, 1024)
	for i := range recs {
		e := ev(i)
		e.Time = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		rec, err := EncodeRecordV2(uint64(i), e, keys)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = rec
	}
	var s leafFormer
	var dst []byte
	b.Run("layout", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			dst, _ = s.appendForm(dst[:0], recs[i%len(recs)], true)
		}
	})
	b.Run("scan", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			dst, _ = s.scan(dst[:0], recs[i%len(recs)], true)
		}
	})
}

func TestSlabHashChildren(t *testing.T) {
	var s hashSlab
	for i := range 300 {
		l, r := bytes.Repeat([]byte{byte(i)}, 32), bytes.Repeat([]byte{byte(i * 7)}, 32)
		if got, want := s.hashChildren(l, r), hasher.HashChildren(l, r); !bytes.Equal(got, want) {
			t.Fatalf("%d: %x, want %x", i, got, want)
		}
	}
}

// readCheckpointsSerial is readCheckpoints as it was before signatures
// were checked in chunks on every CPU: one note after the other.
func readCheckpointsSerial(t *testing.T, path, what string, kc *keyChain, rep *Report) []cpEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []cpEntry
	var lastGood uint64
	n := 0
	err = readNotes(bytes.NewReader(b), func(raw rawNote) error {
		n++
		cp, err := kc.open(raw.Text)
		if err != nil {
			rep.bad(int64(lastGood), "%s: checkpoint %d (byte %d) does not verify: %v", what, n, raw.Offset, err)
			return nil
		}
		_, seg := splitOrigin(cp.Origin)
		out = append(out, cpEntry{Size: cp.Size, Root: cp.Hash, Origin: cp.Origin, Offset: raw.Offset, Segment: seg})
		lastGood = max(lastGood, cp.Size)
		return nil
	})
	if err := reportNotesEnd(err, what, lastGood, rep); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckpointsInChunksReportAsSerial damages checkpoint notes on both
// sides of the chunks whose signatures are checked in parallel: the
// checkpoints, problems, first bad index and warnings must be exactly
// those of a check note by note, and a second file holding the same
// notes (the witness) must get the same answers from the cache.
func TestCheckpointsInChunksReportAsSerial(t *testing.T) {
	o := testOpts(t)
	o.CheckpointEvents = 3
	l := mustOpen(t, o)
	appendN(t, l, 0, 3*(noteChunk+40))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.Dir, checkpointsFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	if err := readNotes(bytes.NewReader(orig), func(n rawNote) error { notes = append(notes, n.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(notes) <= noteChunk+1 {
		t.Fatalf("only %d checkpoints; the test needs more than one chunk", len(notes))
	}
	// breakAt changes a digit of the size line of the given notes, so
	// that their signatures no longer verify.
	breakAt := func(idx ...int) []byte {
		var out [][]byte
		for i, n := range notes {
			n = bytes.Clone(n)
			if slices.Contains(idx, i) {
				line := bytes.IndexByte(n, '\n') + 1
				n[line] = '0' + (n[line]-'0'+1)%10
			}
			out = append(out, n)
		}
		return bytes.Join(out, nil)
	}
	last := len(notes) - 1
	cases := []struct {
		name string
		file []byte
	}{
		{"intact", orig},
		{"broken around the chunk edges", breakAt(0, 1, noteChunk-1, noteChunk, noteChunk+1, last)},
		{"every other broken", breakAt(func() []int {
			var idx []int
			for i := 0; i < len(notes); i += 2 {
				idx = append(idx, i)
			}
			return idx
		}()...)},
		{"torn tail", append(breakAt(3), notes[last][:len(notes[last])/2]...)},
		{"not a note in the second chunk", append(append(breakAt(5), []byte("garbage\n\nmore\n")...), notes[last]...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.file, 0o600); err != nil {
				t.Fatal(err)
			}
			kc, err := singleKey(pubKey(t, o.Dir))
			if err != nil {
				t.Fatal(err)
			}
			want := &Report{FirstBad: -1}
			wantList := readCheckpointsSerial(t, path, "checkpoints.log", kc, want)
			for round := range 2 { // the second round answers from the cache
				got := &Report{FirstBad: -1}
				list, err := readCheckpoints(path, "checkpoints.log", kc, got)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(list, wantList) || got.FirstBad != want.FirstBad ||
					!slices.Equal(got.Problems, want.Problems) || !slices.Equal(got.Warnings, want.Warnings) {
					t.Fatalf("round %d: got %d checkpoints, FirstBad %d, problems %q, warnings %q\nwant %d, %d, %q, %q",
						round, len(list), got.FirstBad, got.Problems, got.Warnings, len(wantList), want.FirstBad, want.Problems, want.Warnings)
				}
			}
			if c.name != "intact" && len(want.Problems)+len(want.Warnings) == 0 {
				t.Fatal("the damage went unnoticed")
			}
		})
	}
}

// TestTreeWalkKeepsWantedNodesAndRoots holds the walk's lists of wanted
// nodes and roots to what a lookup of every node and every size in the
// maps keeps, for the nodes of consistency and inclusion proofs.
func TestTreeWalkKeepsWantedNodesAndRoots(t *testing.T) {
	const n = 300
	w := newTreeWalk()
	for _, s := range [][2]uint64{{1, 2}, {3, 7}, {100, 200}, {200, 300}, {17, 256}, {255, 257}} {
		p, err := proof.Consistency(s[0], s[1])
		if err != nil {
			t.Fatal(err)
		}
		w.want(p.IDs)
		w.roots[s[0]], w.roots[s[1]] = nil, nil
	}
	p, err := proof.Inclusion(77, n)
	if err != nil {
		t.Fatal(err)
	}
	w.want(p.IDs)
	wantNodes := map[compact.NodeID][]byte{}
	for id := range w.nodes {
		wantNodes[id] = nil
	}
	wantRoots := map[uint64][]byte{}
	for s := range w.roots {
		wantRoots[s] = nil
	}
	rng := (&compact.RangeFactory{Hash: hasher.HashChildren}).NewEmptyRange(0)
	for i := range uint64(n) {
		leaf := hasher.HashLeaf([]byte(strconv.FormatUint(i, 10)))
		if err := w.add(leaf); err != nil {
			t.Fatal(err)
		}
		if err := rng.Append(leaf, func(id compact.NodeID, h []byte) {
			if v, ok := wantNodes[id]; ok && v == nil {
				wantNodes[id] = bytes.Clone(h)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if _, ok := wantRoots[rng.End()]; ok {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			wantRoots[rng.End()] = root
		}
	}
	if !reflect.DeepEqual(w.nodes, wantNodes) || !reflect.DeepEqual(w.roots, wantRoots) {
		t.Fatalf("nodes %x\nwant %x\nroots %x\nwant %x", w.nodes, wantNodes, w.roots, wantRoots)
	}
	for id, h := range w.nodes {
		if (id.Index+1)<<id.Level <= n && h == nil {
			t.Errorf("node %+v not kept", id)
		}
	}
}

// indexField is what fastIndex reads: the first "index" followed by a
// number.
var indexField = regexp.MustCompile(`"index":([0-9]+)`)

func FuzzFastIndex(f *testing.F) {
	for _, s := range []string{`{"index":0,"x":1}`, `{"attrs":{"a":"\"index\":5"},"index":18446744073709551615}`,
		`{"index":18446744073709551616}`, `{"index":00042}`, `{"index":-1,"index":7}`, `"index":`, `{"index":99999999999999999999999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		v, ok := fastIndex(p)
		var wv uint64
		var err error = strconv.ErrSyntax
		if m := indexField.FindSubmatch(p); m != nil {
			wv, err = strconv.ParseUint(string(m[1]), 10, 64)
		}
		wok := err == nil
		if v != wv || ok != wok {
			t.Fatalf("fastIndex(%q) = %d, %v; strconv gives %d, %v", p, v, ok, wv, wok)
		}
	})
}

// sameBase64 fails unless decodeBase64 either declines src or gives
// exactly what base64.StdEncoding.Decode gives.
func sameBase64(t *testing.T, src []byte) bool {
	t.Helper()
	dst := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	n, ok := decodeBase64(dst, src)
	want := make([]byte, len(dst))
	wn, err := base64.StdEncoding.Decode(want, src)
	if ok && (err != nil || !bytes.Equal(dst[:n], want[:wn])) {
		t.Fatalf("decodeBase64(%q) = %x; Decode gives %x, %v", src, dst[:n], want[:wn], err)
	}
	return ok
}

func TestDecodeBase64(t *testing.T) {
	for n := range 200 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*131 + n)
		}
		src := []byte(base64.StdEncoding.EncodeToString(b))
		// The writer's text must take the fast way.
		if n > 0 && !sameBase64(t, src) {
			t.Fatalf("canonical text of %d bytes declined", n)
		}
		for i := range src {
			for _, c := range []byte{'=', 'A', '/', '\n', '\r', 0x80, '-'} {
				m := bytes.Clone(src)
				m[i] = c
				sameBase64(t, m)
			}
		}
	}
	for _, s := range []string{"", "=", "====", "QQ==", "QR==", "QUE=", "QUF=", "QUFB", "Q===", "QQ=A", "QQ==QQ==", "QQ\n=="} {
		sameBase64(t, []byte(s))
	}
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"QUJD", "QUI=", "QR==", "QUJDRA==\n", "AAAA"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) { sameBase64(t, src) })
}

// TestVerifyEndsOfFiles holds what Verify says when records.log and
// leaves.bin do not end together: the count of extra leaf hashes, the
// first record without one, a torn last record, a torn last leaf hash.
func TestVerifyEndsOfFiles(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	const n = 3*batchRecords + 5 // ends inside a batch, past several
	appendN(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rec, leaves := filepath.Join(o.Dir, recordsFile), filepath.Join(o.Dir, leavesFile)
	recData, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	leafData, err := os.ReadFile(leaves)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(len(leafData) / sha256.Size) // n and the log's own events
	tests := []struct {
		name          string
		records, leaf []byte
		count         uint64
		warning       string
	}{
		{"extra leaf hashes", recData, append(bytes.Clone(leafData), make([]byte, 3*sha256.Size)...), size,
			"3 leaf hashes past the last record (a crash not yet recovered, or records removed after the last checkpoint)"},
		{"records without a leaf hash", recData, leafData[:len(leafData)-2*sha256.Size], size - 2,
			fmt.Sprintf("records from %d on have no leaf hash yet (a crash not yet recovered, or a write in flight)", size-2)},
		{"torn last record", append(bytes.Clone(recData), 0, 0, 1, 0, '{'), leafData, size,
			fmt.Sprintf("records.log ends in an unfinished record at byte %d (a crash not yet recovered, or a write in flight)", len(recData))},
		{"torn last leaf hash", recData, append(bytes.Clone(leafData), 1, 2, 3), size, ""},
	}
	for _, tc := range tests {
		writeParts(t, rec, [][]byte{tc.records})
		writeParts(t, leaves, [][]byte{tc.leaf})
		rep, err := Verify(o.Dir, pubKey(t, o.Dir), "")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Records != tc.count || tc.warning != "" && !slices.Contains(rep.Warnings, tc.warning) || tc.warning == "" && len(rep.Warnings) != 0 {
			t.Errorf("%s: %d records, warnings %q; want %d and %q", tc.name, rep.Records, rep.Warnings, tc.count, tc.warning)
		}
	}
}
