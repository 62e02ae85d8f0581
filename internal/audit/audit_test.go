package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/vault"
)

// testClock is a deterministic clock that moves one second per reading.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var (
	testKeyOnce sync.Once
	testKeyVal  *SigningKey
)

// testKey is the signing key of every test log; it lives outside the log
// directories, as the real one does.
func testKey() *SigningKey {
	testKeyOnce.Do(func() {
		k, _, err := GenerateSigningKey("tandem/audit")
		if err != nil {
			panic(err)
		}
		testKeyVal = k
	})
	return testKeyVal
}

// testOpts returns options for a log in a fresh directory. The checkpoint
// ticker is replaced by a channel the test drives (never, by default).
func testOpts(t testing.TB) Options {
	dir := t.TempDir()
	return Options{
		Dir:              filepath.Join(dir, "audit"),
		Key:              testKey(),
		Keys:             keysFor(t, filepath.Join(dir, "audit")),
		CheckpointEvents: 10,
		WitnessFile:      filepath.Join(dir, "witness", "checkpoints"),
		Now:              newClock().Now,
		tick:             make(chan time.Time),
	}
}

func mustOpen(t testing.TB, o Options) *Log {
	t.Helper()
	l, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func ev(i int) Event {
	return Event{
		Type:    Exec,
		Person:  "alice",
		Session: "s" + strconv.Itoa(i%3),
		Tenant:  "acme",
		Host:    "db1",
		Login:   "root",
		Attrs:   map[string]string{"n": strconv.Itoa(i), "cmd": "uptime"},
	}
}

func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Append(context.Background(), ev(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func pubKey(t testing.TB, dir string) string {
	t.Helper()
	k, err := PublicKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustVerify(t testing.TB, o Options) *Report {
	t.Helper()
	rep, err := Verify(o.Dir, pubKey(t, o.Dir), o.WitnessFile)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func readAll(t testing.TB, dir string) []Record {
	t.Helper()
	var out []Record
	if err := ReadKeys(dir, keysFor(t, dir), Filter{}, func(r Record) error {
		if len(r.Unreadable) > 0 {
			return fmt.Errorf("record %d: unreadable parts %+v", r.Index, r.Unreadable)
		}
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

func TestEncodeRecordCanonical(t *testing.T) {
	ts := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"minimal", Event{Time: ts, Type: GatewayStart},
			`{"index":7,"time":"2030-01-02T02:04:05.0000006Z","type":"gateway.start"}`},
		{"all fields sorted", Event{Time: ts, Type: Exec, Person: "p", Session: "s", Tenant: "t", Host: "h", Login: "l", Source: "10.0.0.1", Request: "r", Attrs: map[string]string{"z": "1", "a": "<2>"}},
			`{"attrs":{"a":"\u003c2\u003e","z":"1"},"host":"h","index":7,"login":"l","person":"p","request":"r","session":"s","source":"10.0.0.1","tenant":"t","time":"2030-01-02T02:04:05.0000006Z","type":"exec"}`},
		{"attrs only", Event{Time: ts, Type: Command, Attrs: map[string]string{"k": "v"}},
			`{"attrs":{"k":"v"},"index":7,"time":"2030-01-02T02:04:05.0000006Z","type":"command"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeRecord(7, tc.e)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("got  %s\nwant %s", b, tc.want)
			}
			idx, e, err := DecodeRecord(b)
			if err != nil || idx != 7 || !e.Time.Equal(tc.e.Time) || e.Type != tc.e.Type {
				t.Fatalf("decode: %d %+v %v", idx, e, err)
			}
		})
	}
	for _, bad := range []string{
		`{"index":7,"type":"exec","time":"2030-01-02T02:04:05Z"}`,       // unsorted
		`{"index":7, "time":"2030-01-02T02:04:05Z","type":"exec"}`,      // spacing
		`{"index":7,"time":"2030-01-02T02:04:05Z","type":"exec","x":1}`, // unknown field
		`{"time":"2030-01-02T02:04:05Z","type":"exec"}`,                 // no index
		`{"index":7,"time":"2030-01-02T03:04:05+01:00","type":"exec"}`,  // not UTC
	} {
		if _, _, err := DecodeRecord([]byte(bad)); err == nil {
			t.Errorf("DecodeRecord(%s) accepted a non-canonical record", bad)
		}
	}
	if _, err := EncodeRecord(0, Event{Time: ts}); err == nil {
		t.Error("event without type accepted")
	}
}

func TestAppendReadVerify(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 25)
	if err := l.Append(context.Background(), Event{Type: AuthFailure, Person: "bob", Request: "r1"}); err != nil {
		t.Fatal(err)
	}
	n := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), ev(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	recs := readAll(t, o.Dir)
	if uint64(len(recs)) != n {
		t.Fatalf("read %d records, size %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Index != uint64(i) || r.Event.Time.IsZero() {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	// 25 exec events + 1 auth + log.checkpoint events every 10.
	var types []Type
	if err := Read(o.Dir, Filter{Types: []Type{AuthFailure, LogCheckpoint}}, func(r Record) error {
		types = append(types, r.Event.Type)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(types, AuthFailure) || !slices.Contains(types, LogCheckpoint) || slices.Contains(types, Exec) {
		t.Fatalf("type filter: %v", types)
	}
	tests := []struct {
		f    Filter
		want int
	}{
		{Filter{Person: "bob"}, 1},
		{Filter{Request: "r1"}, 1},
		{Filter{Session: "s1", Types: []Type{Exec}}, 8},
		{Filter{Tenant: "nobody"}, 0},
		{Filter{Since: recs[3].Event.Time, Until: recs[5].Event.Time}, 2},
	}
	for _, tc := range tests {
		got := 0
		if err := ReadKeys(o.Dir, o.Keys, tc.f, func(Record) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("filter %+v: %d records, want %d", tc.f, got, tc.want)
		}
	}
	rep := mustVerify(t, o)
	if !rep.OK() || rep.FirstBad != -1 || rep.Records != n || rep.LastCheckpoint != n || rep.Checkpoints < 3 || rep.WitnessCheckpoints != rep.Checkpoints {
		t.Fatalf("report: %+v", rep)
	}
	// Reopen and continue: the tree state must carry over.
	l = mustOpen(t, o)
	appendN(t, l, 100, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, o); !rep.OK() || rep.Records != n+5 {
		t.Fatalf("after reopen: %+v", rep)
	}
	if _, err := os.Stat(LegacyKeyFile(o.Dir)); err == nil {
		t.Fatal("a signing key in the log directory")
	}
	for _, name := range []string{pubFile, recordsFile, leavesFile, checkpointsFile} {
		st, err := os.Stat(filepath.Join(o.Dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", name, st.Mode(), err)
		}
	}
}

func TestCheckpointTriggers(t *testing.T) {
	o := testOpts(t)
	o.CheckpointEvents = 1000
	tick := make(chan time.Time)
	o.tick = tick
	l := mustOpen(t, o)
	defer l.Close()
	countCPs := func() int {
		n := 0
		f, err := os.Open(filepath.Join(o.Dir, checkpointsFile))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := readNotes(f, func(rawNote) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// sync waits until the writer has handled everything sent before.
	sync := func() {
		if _, err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	tick <- time.Time{} // empty log: nothing to checkpoint
	if n := countCPs(); n != 0 {
		t.Fatalf("checkpoint of an empty idle log: %d", n)
	}
	appendN(t, l, 0, 3)
	tick <- time.Time{}
	cp, err := l.Checkpoint() // nothing new except our own log.checkpoint event
	if err != nil {
		t.Fatal(err)
	}
	if n := countCPs(); n != 1 {
		t.Fatalf("after tick and forced checkpoint: %d checkpoints", n)
	}
	v, _ := note.NewVerifier(pubKey(t, o.Dir))
	c, _, _, err := log.ParseCheckpoint(cp, "tandem/audit", v)
	if err != nil || c.Size != 3 {
		t.Fatalf("checkpoint %+v: %v", c, err)
	}
	appendN(t, l, 3, 1)
	if cp, err = l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if c, _, _, err = log.ParseCheckpoint(cp, "tandem/audit", v); err != nil || c.Size != 5 {
		t.Fatalf("forced checkpoint %+v: %v", c, err)
	}
	tick <- time.Time{} // only our own event since: stays idle
	tick <- time.Time{}
	sync()
	if n := countCPs(); n != 2 {
		t.Fatalf("idle log kept checkpointing: %d", n)
	}
}

func TestCheckpointEveryNEvents(t *testing.T) {
	o := testOpts(t)
	o.CheckpointEvents = 5
	l := mustOpen(t, o)
	appendN(t, l, 0, 4)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := checkpointSizes(t, o.Dir); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("checkpoint sizes %v, want only the final one", got)
	}
	l = mustOpen(t, o)
	appendN(t, l, 4, 12)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// 4 (close), 9 (+5, then its log.checkpoint event), 14 (+5), close at 18.
	if got := checkpointSizes(t, o.Dir); !slices.Equal(got, []uint64{4, 9, 14, 18}) {
		t.Fatalf("checkpoint sizes %v", got)
	}
}

func TestProof(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 37)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	key := pubKey(t, o.Dir)
	for _, idx := range []uint64{0, 1, 17, 36, 39} {
		p, err := InclusionProof(o.Dir, idx)
		if err != nil {
			t.Fatalf("proof %d: %v", idx, err)
		}
		if err := p.Verify(key); err != nil {
			t.Fatalf("proof %d: %v\n%s", idx, err, p)
		}
		if !strings.Contains(p.String(), "checkpoint:") {
			t.Fatal(p.String())
		}
		if _, err := p.JSON(); err != nil {
			t.Fatal(err)
		}
		bad := *p
		bad.Record = p.Record + " "
		if bad.Verify(key) == nil {
			t.Fatalf("proof %d: altered record accepted", idx)
		}
		bad = *p
		bad.Index++
		bad.Record = ""
		if bad.Verify(key) == nil {
			t.Fatalf("proof %d: wrong index accepted", idx)
		}
	}
	if _, err := InclusionProof(o.Dir, 1000); err == nil {
		t.Fatal("proof for a record beyond the checkpoint")
	}
}

// failFile fails writes or syncs once armed.
type failFile struct {
	syncFile
	failWrite, failSync *atomic.Bool
}

func (f failFile) Write(p []byte) (int, error) {
	if f.failWrite.Load() {
		return 0, errors.New("injected write failure")
	}
	return f.syncFile.Write(p)
}

func (f failFile) Sync() error {
	if f.failSync.Load() {
		return errors.New("injected sync failure")
	}
	return f.syncFile.Sync()
}

func TestFailClosed(t *testing.T) {
	for _, mode := range []string{"write", "sync", "checkpoint"} {
		t.Run(mode, func(t *testing.T) {
			var fw, fs atomic.Bool
			o := testOpts(t)
			target := recordsFile
			if mode == "checkpoint" {
				target = "checkpoints"
			}
			o.wrapFile = func(name string, f syncFile) syncFile {
				if name != target {
					return f
				}
				return failFile{f, &fw, &fs}
			}
			l := mustOpen(t, o)
			appendN(t, l, 0, 3)
			select {
			case <-l.Failed():
				t.Fatal("failed too early")
			default:
			}
			switch mode {
			case "write":
				fw.Store(true)
			default:
				fs.Store(true)
			}
			var err error
			if mode == "checkpoint" {
				_, err = l.Checkpoint()
			} else {
				err = l.Append(context.Background(), ev(3))
			}
			if err == nil {
				t.Fatal("no error from a failing log")
			}
			select {
			case <-l.Failed():
			default:
				t.Fatal("Failed not closed")
			}
			fw.Store(false)
			fs.Store(false)
			if err := l.Append(context.Background(), ev(4)); err == nil {
				t.Fatal("log recovered silently after a failure")
			}
			if err := l.Close(); err == nil {
				t.Fatal("Close hid the failure")
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	o := testOpts(t)
	o.CheckpointEvents = 50
	l := mustOpen(t, o)
	const workers, each = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers+2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.Append(context.Background(), ev(w*each+i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(2)
	go func() { // checkpoints and reads while appending
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if _, err := l.Checkpoint(); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 5; i++ {
			if err := Read(o.Dir, Filter{}, func(Record) error { return nil }); err != nil {
				errs <- err
				return
			}
			if _, err := Verify(o.Dir, pubKey(t, o.Dir), ""); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range readAll(t, o.Dir) {
		if r.Event.Type == Exec {
			seen[r.Event.Attrs["n"]] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct events, want %d", len(seen), workers*each)
	}
	if rep := mustVerify(t, o); !rep.OK() {
		t.Fatalf("%+v", rep)
	}
}

func TestTornTailRecovery(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		cutRecs string // expected cut_bytes attr, "" if none
	}{
		{"partial frame", func(t *testing.T, dir string) {
			frame := appendFrame(nil, []byte(`{"index":99,"time":"2030-01-01T00:00:00Z","type":"exec"}`))
			appendFile(t, filepath.Join(dir, recordsFile), frame[:20])
		}, "20"},
		{"header only", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, recordsFile), []byte{0, 0})
		}, "2"},
		{"zeros", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, recordsFile), make([]byte, 300))
		}, "300"},
		{"bad checksum at end", func(t *testing.T, dir string) {
			frame := appendFrame(nil, []byte(`{"index":99,"time":"2030-01-01T00:00:00Z","type":"exec"}`))
			frame[len(frame)-1] ^= 1
			appendFile(t, filepath.Join(dir, recordsFile), frame)
		}, "64"},
		{"leaves behind records", func(t *testing.T, dir string) {
			p := filepath.Join(dir, leavesFile)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-70); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"leaves ahead of records", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, leavesFile), make([]byte, 50))
		}, ""},
		{"torn checkpoint", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, checkpointsFile), []byte("tandem/audit\n12\n"))
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(t)
			o.CheckpointEvents = 1000
			l := mustOpen(t, o)
			appendN(t, l, 0, 3)
			if _, err := l.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 3, 5) // not covered by a checkpoint
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			before := len(readAll(t, o.Dir))
			tc.damage(t, o.Dir)
			l = mustOpen(t, o)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, o.Dir)
			if len(recs) != before+1 {
				t.Fatalf("%d records after recovery, want %d", len(recs), before+1)
			}
			last := recs[len(recs)-1].Event
			if last.Type != LogRecovered || last.Attrs["cut_bytes"] != tc.cutRecs {
				t.Fatalf("last event %+v", last)
			}
			if rep := mustVerify(t, o); !rep.OK() || len(rep.Warnings) != 0 {
				t.Fatalf("%+v", rep)
			}
		})
	}
}

func TestOpenRefusesDamageInTheMiddle(t *testing.T) {
	o := testOpts(t)
	l := mustOpen(t, o)
	appendN(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(o.Dir, recordsFile)
	b, _ := os.ReadFile(p)
	b[10] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(o); err == nil {
		l.Close()
		t.Fatal("Open cut a damaged middle record")
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestMemorySink(t *testing.T) {
	var m MemorySink
	ctx := context.Background()
	if err := m.Append(ctx, Event{Type: Exec, Attrs: map[string]string{"a": "1"}}); err != nil {
		t.Fatal(err)
	}
	m.SetErr(errors.New("down"))
	if err := m.Append(ctx, Event{Type: Exec}); err == nil {
		t.Fatal("SetErr ignored")
	}
	m.SetErr(nil)
	if err := m.Append(ctx, Event{Type: SessionEnd}); err != nil {
		t.Fatal(err)
	}
	if got := m.Types(); !slices.Equal(got, []Type{Exec, SessionEnd}) || len(m.Events()) != 2 {
		t.Fatalf("%v", got)
	}
}

// frames splits records.log into its frames.
func frames(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, recordsFile))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint32(b)) + frameOverhead
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func leaves(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, leavesFile))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := 0; i+32 <= len(b); i += 32 {
		out = append(out, b[i:i+32])
	}
	return out
}

func writeParts(t *testing.T, path string, parts [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(parts, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// refit rewrites a frame's payload and fixes its length and CRC, as an
// attacker who knows the format would.
func refit(payload []byte) []byte { return appendFrame(nil, payload) }

func payloadOf(frame []byte) []byte { return frame[4 : len(frame)-4] }

// checkpointSizes lists the sizes of the checkpoints in dir.
func checkpointSizes(t *testing.T, dir string) []uint64 {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, checkpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []uint64
	if err := readNotes(f, func(n rawNote) error {
		lines := strings.Split(string(n.Text), "\n")
		s, err := strconv.ParseUint(lines[1], 10, 64)
		out = append(out, s)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTamperDetection(t *testing.T) {
	const total = 60
	type tamper func(t *testing.T, o Options) (wantFirstBad int64)
	tests := []struct {
		name    string
		tamper  tamper
		witness bool // verify against the witness file
	}{
		{"flip a byte, CRC left alone", func(t *testing.T, o Options) int64 {
			p := filepath.Join(o.Dir, recordsFile)
			fr := frames(t, o.Dir)
			fr[17] = bytes.Clone(fr[17])
			fr[17][30] ^= 1
			writeParts(t, p, fr)
			return 17
		}, false},
		{"edit JSON and fix the CRC", func(t *testing.T, o Options) int64 {
			fr := frames(t, o.Dir)
			fr[23] = refit(bytes.Replace(payloadOf(fr[23]), []byte(`"acme"`), []byte(`"acmf"`), 1))
			writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
			return 23
		}, false},
		{"edit a record and its leaf hash", func(t *testing.T, o Options) int64 {
			fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
			fr[23] = refit(bytes.Replace(payloadOf(fr[23]), []byte(`"acme"`), []byte(`"acmf"`), 1))
			lv[23] = mustLeafHash(t, payloadOf(fr[23]))
			writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
			writeParts(t, filepath.Join(o.Dir, leavesFile), lv)
			// Only a checkpoint root can tell now: the damage is placed
			// between the checkpoints around record 23.
			var below uint64
			for _, s := range checkpointSizes(t, o.Dir) {
				if s <= 23 {
					below = max(below, s)
				}
			}
			return int64(below)
		}, false},
		{"delete a record", func(t *testing.T, o Options) int64 {
			fr := frames(t, o.Dir)
			writeParts(t, filepath.Join(o.Dir, recordsFile), slices.Delete(fr, 31, 32))
			return 31
		}, false},
		{"delete a record and its leaf", func(t *testing.T, o Options) int64 {
			fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
			writeParts(t, filepath.Join(o.Dir, recordsFile), slices.Delete(fr, 31, 32))
			writeParts(t, filepath.Join(o.Dir, leavesFile), slices.Delete(lv, 31, 32))
			return 31
		}, false},
		{"swap two records and leaves", func(t *testing.T, o Options) int64 {
			fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
			fr[5], fr[40] = fr[40], fr[5]
			lv[5], lv[40] = lv[40], lv[5]
			writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
			writeParts(t, filepath.Join(o.Dir, leavesFile), lv)
			return 5
		}, false},
		{"truncate records and leaves", func(t *testing.T, o Options) int64 {
			fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
			writeParts(t, filepath.Join(o.Dir, recordsFile), fr[:44])
			writeParts(t, filepath.Join(o.Dir, leavesFile), lv[:44])
			return 44
		}, false},
		{"truncate mid-record", func(t *testing.T, o Options) int64 {
			p := filepath.Join(o.Dir, recordsFile)
			fr := frames(t, o.Dir)
			n := len(bytes.Join(fr[:50], nil)) + 7
			if err := os.Truncate(p, int64(n)); err != nil {
				t.Fatal(err)
			}
			return 50
		}, false},
		{"replace the log, re-signed under another key", func(t *testing.T, o Options) int64 {
			other := testOpts(t)
			other.Key, _, _ = GenerateSigningKey("tandem/audit")
			l := mustOpen(t, other)
			appendN(t, l, 0, total)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(o.Dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other.Dir, o.Dir); err != nil {
				t.Fatal(err)
			}
			return 0
		}, false},
		{"rewrite history with the real key, caught by the witness", func(t *testing.T, o Options) int64 {
			// An insider with the data directory (and so the key) edits
			// record 63, after the last log.checkpoint event (which would
			// give the edit away), and re-signs every checkpoint. Only the
			// witness file, outside the directory, still shows the old roots.
			fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
			fr[63] = refit(bytes.Replace(payloadOf(fr[63]), []byte(`"acme"`), []byte(`"acmf"`), 1))
			lv[63] = mustLeafHash(t, payloadOf(fr[63]))
			writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
			writeParts(t, filepath.Join(o.Dir, leavesFile), lv)
			resign(t, o.Dir)
			var below uint64
			for _, s := range checkpointSizes(t, o.Dir) {
				if s <= 63 {
					below = max(below, s)
				}
			}
			return int64(below)
		}, true},
		{"delete a checkpoint", func(t *testing.T, o Options) int64 {
			p := filepath.Join(o.Dir, checkpointsFile)
			b, _ := os.ReadFile(p)
			var notes [][]byte
			if err := readNotes(bytes.NewReader(b), func(n rawNote) error {
				notes = append(notes, bytes.Clone(n.Text))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			writeParts(t, p, slices.Delete(notes, 1, 2))
			return -1 // no record is bad, but the log says the checkpoint existed
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(t)
			l := mustOpen(t, o)
			appendN(t, l, 0, total)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			key := pubKey(t, o.Dir)
			if rep := mustVerify(t, o); !rep.OK() {
				t.Fatalf("before tampering: %+v", rep)
			}
			want := tc.tamper(t, o)
			witness := ""
			if tc.witness {
				witness = o.WitnessFile
				// Without the witness the rewrite passes: that is why it exists.
				if rep, err := Verify(o.Dir, key, ""); err != nil || !rep.OK() {
					t.Fatalf("re-signed log without witness: %+v %v", rep, err)
				}
			}
			rep, err := Verify(o.Dir, key, witness)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if rep.FirstBad != want {
				t.Fatalf("FirstBad %d, want %d; problems:\n%s", rep.FirstBad, want, strings.Join(rep.Problems, "\n"))
			}
		})
	}
}

// resign rewrites checkpoints.log from the current leaves with the key in
// dir, as an insider holding the key could.
func resign(t *testing.T, dir string) {
	t.Helper()
	signer := testKey().signer
	lv := leaves(t, dir)
	var out [][]byte
	for _, s := range checkpointSizes(t, dir) {
		w := newTreeWalk()
		w.roots[s] = nil
		w.start()
		for _, h := range lv[:s] {
			if err := w.add(h); err != nil {
				t.Fatal(err)
			}
		}
		n, err := signCheckpoint(log.Checkpoint{Origin: "tandem/audit", Size: s, Hash: w.roots[s]}, signer)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	writeParts(t, filepath.Join(dir, checkpointsFile), out)
}

func TestReadNotes(t *testing.T) {
	note1 := "o\n1\nAAAA\n\n\u2014 k sig1\n"
	note2 := "o\n2\nBBBB\n\n\u2014 k sig2\n\u2014 w sig3\n"
	tests := []struct {
		in     string
		notes  int
		torn   bool
		broken bool
	}{
		{"", 0, false, false},
		{note1, 1, false, false},
		{note1 + note2, 2, false, false},
		{note1 + "o\n3\n", 1, true, false},
		{note1 + "o\n3\nCC\n\n", 1, true, false},
		{note1 + "o\n3\nCC\n\n\u2014 k si", 1, true, false},
		{note1 + "o\n3", 1, true, false},
		{"\n" + note1, 0, false, true},
		{"o\n\nnot a signature\n", 0, false, true},
		{note1 + "\n" + note2, 1, false, true},
	}
	for i, tc := range tests {
		n := 0
		err := readNotes(strings.NewReader(tc.in), func(rawNote) error { n++; return nil })
		var ne *noteError
		isNE := errors.As(err, &ne)
		if n != tc.notes || (tc.torn && !(isNE && ne.Torn)) || (tc.broken && !(isNE && !ne.Torn)) || (!tc.torn && !tc.broken && err != nil) {
			t.Errorf("case %d: %d notes, err %v", i, n, err)
		}
	}
}

func FuzzReadRecords(f *testing.F) {
	rec, _ := EncodeRecord(3, ev(1))
	f.Add(appendFrame(nil, rec))
	e2 := ev(2)
	e2.Time = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rec2, err := EncodeRecordV2(4, e2, keysFor(f, filepath.Join(f.TempDir(), "audit")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(appendFrame(nil, rec2))
	f.Add(append(appendFrame(nil, rec), 0, 0, 1))
	f.Add([]byte{0, 0, 0, 4, '{', '}', ' ', ' ', 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data))
		// A frame that does not fit the reader's buffer is read apart
		// from the others; the smallest buffer reads every frame so.
		small := newFrameReader(bufio.NewReaderSize(bytes.NewReader(data), 16))
		// Verification's reader must read the same frames: with blocks
		// smaller than every frame, and with blocks that hold a few; the
		// payloads it returned stay intact until their blocks are
		// released, here every third frame.
		type held struct{ p, want []byte }
		type blockReader struct {
			*blockFrames
			kept    []held // payloads whose blocks are not released yet
			retired [][]byte
		}
		blocks := []*blockReader{{blockFrames: newBlockFrames(bytes.NewReader(data), 16)}, {blockFrames: newBlockFrames(bytes.NewReader(data), 512)}}
		for i := 0; i <= len(data); i++ {
			p, err := fr.next()
			sp, serr := small.next()
			if !bytes.Equal(p, sp) || fmt.Sprint(err) != fmt.Sprint(serr) || fr.off != small.off {
				t.Fatalf("frame %d: %q, %v at %d; with a small buffer %q, %v at %d", i, p, err, fr.off, sp, serr, small.off)
			}
			for _, bf := range blocks {
				bp, berr := bf.next()
				if !bytes.Equal(p, bp) || fmt.Sprint(err) != fmt.Sprint(berr) || fr.off != bf.off {
					t.Fatalf("frame %d: %q, %v at %d; in blocks of %d %q, %v at %d", i, p, err, fr.off, bf.size, bp, berr, bf.off)
				}
				if berr == nil {
					bf.kept = append(bf.kept, held{bp, bytes.Clone(bp)})
				}
				bf.retired = bf.takeRetired(bf.retired)
				if i%3 != 2 && berr == nil {
					continue
				}
				for _, h := range bf.kept {
					if !bytes.Equal(h.p, h.want) {
						t.Fatalf("frame %d: a payload read earlier changed before its block was released", i)
					}
				}
				bf.kept = bf.kept[:0]
				bf.release(bf.retired)
				bf.retired = bf.retired[:0]
			}
			if err != nil {
				return
			}
			if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(data[fr.off-4:]) {
				t.Fatal("accepted a frame with a bad checksum")
			}
			idx, e, err := DecodeRecord(p)
			if err != nil || isV2(p) { // a v2 record decodes only if it re-encodes
				continue
			}
			again, err := EncodeRecord(idx, e)
			if err != nil || !bytes.Equal(again, p) {
				t.Fatalf("decoded record does not re-encode: %q vs %q (%v)", p, again, err)
			}
		}
	})
}

func FuzzReadNotes(f *testing.F) {
	f.Add([]byte("o\n1\nAAAA\n\n\u2014 k sig1\n"))
	f.Add([]byte("o\n1\nAAAA\n\n\u2014 k sig1\no\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var total int
		err := readNotes(bytes.NewReader(data), func(n rawNote) error {
			if !bytes.Equal(data[n.Offset:n.Offset+int64(len(n.Text))], n.Text) {
				t.Fatal("note offset does not match its text")
			}
			total += len(n.Text)
			return nil
		})
		if err == nil && total != len(data) {
			t.Fatalf("no error but only %d of %d bytes in notes", total, len(data))
		}
	})
}

func Example() {
	data, _ := os.MkdirTemp("", "tandem")
	defer os.RemoveAll(data)
	// The vault keeps the data keys that encrypt each record's parts; the
	// signing key lives outside the log directory.
	_ = vault.GenerateFileKEK(filepath.Join(data, "kek"))
	kek, _ := vault.FileKEK(filepath.Join(data, "kek"))
	keys, _ := vault.Open(filepath.Join(data, "vault"), kek)
	key, _, _ := GenerateSigningKey("tandem/audit")
	dir := filepath.Join(data, "audit")
	l, _ := Open(Options{Dir: dir, Key: key, Keys: keys})
	_ = l.Append(context.Background(), Event{Type: GatewayStart, Attrs: map[string]string{KeyVersion: "1.0"}})
	_ = l.Close()
	rep, _ := Verify(dir, key.Verifier(), "") // no data keys needed
	fmt.Println(rep.OK(), rep.Records)
	_ = ReadKeys(dir, keys, Filter{}, func(r Record) error {
		fmt.Println(r.Event.Type, r.Event.Attrs[KeyVersion])
		return nil
	})
	// Output:
	// true 1
	// gateway.start 1.0
}
