package record

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// castLine is one decoded asciicast event line.
type castLine struct {
	T    float64
	Code string
	Data string
}

func parseCast(t *testing.T, data []byte) (map[string]any, []castLine) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	var hdr map[string]any
	var lines []castLine
	for sc.Scan() {
		if hdr == nil {
			must(t, json.Unmarshal(sc.Bytes(), &hdr))
			continue
		}
		var raw []any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil || len(raw) != 3 {
			t.Fatalf("bad event line %q: %v", sc.Text(), err)
		}
		lines = append(lines, castLine{T: raw[0].(float64), Code: raw[1].(string), Data: raw[2].(string)})
	}
	return hdr, lines
}

func exportCast(t *testing.T, e *env, name string) []byte {
	t.Helper()
	r, err := e.open(name)
	must(t, err)
	defer r.Close()
	var buf bytes.Buffer
	must(t, ExportAsciicast(r, &buf))
	return buf.Bytes()
}

func TestRoundTripPTY(t *testing.T) { eachStorage(t, testRoundTripPTY) }

func testRoundTripPTY(t *testing.T) {
	e := newEnv(t)
	m := e.meta("s-roundtrip", KindPTY)
	w := e.create(t, m, Options{})
	// "é" is C3 A9; the PTY read ends between the two bytes.
	e.clock.Advance(100 * time.Millisecond)
	must(t, w.Output([]byte("h\xc3")))
	e.clock.Advance(10 * time.Millisecond)
	must(t, w.Output([]byte("\xa9llo w\xc3\xb6rld\r\n$ ")))
	e.clock.Advance(time.Second)
	must(t, w.Input("alice", []byte("ls\r")))
	must(t, w.Resize(100, 30))
	must(t, w.Marker("bob joined as peer"))
	sum, err := w.Close()
	must(t, err)
	if sum.Events != 6 || sum.Chunks != 2 || sum.Duration != 1110*time.Millisecond {
		t.Fatalf("summary %+v", sum)
	}
	if backendNow == "local" {
		st, err := os.Stat(w.Path())
		must(t, err)
		if st.Mode().Perm() != 0o600 || w.Path() != Path(e.dir, "acme", m.Started, "s-roundtrip") {
			t.Fatalf("file %s mode %v", w.Path(), st.Mode())
		}
	}
	data, err := e.readRaw(w.Path())
	must(t, err)
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum.FileSHA256 {
		t.Fatal("FileSHA256 is not the hash of the file")
	}

	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	got := r.Meta()
	if !got.Started.Equal(m.Started) || got.Host != "db1" || got.Owner != "alice" || got.Cols != 120 {
		t.Fatalf("meta %+v", got)
	}
	want := []Event{
		{Type: EvOutput, T: 100 * time.Millisecond, Data: []byte("h\xc3")},
		{Type: EvOutput, T: 110 * time.Millisecond, Data: []byte("\xa9llo w\xc3\xb6rld\r\n$ ")},
		{Type: EvInput, T: 1110 * time.Millisecond, Person: "alice", Data: []byte("ls\r")},
		{Type: EvResize, T: 1110 * time.Millisecond, Cols: 100, Rows: 30},
		{Type: EvMarker, T: 1110 * time.Millisecond, Text: "bob joined as peer"},
	}
	for i, w := range want {
		ev, err := r.Next()
		must(t, err)
		if !reflect.DeepEqual(ev, w) {
			t.Fatalf("event %d: %+v, want %+v", i, ev, w)
		}
	}
	vs, err := r.Verify()
	must(t, err)
	if !reflect.DeepEqual(vs, sum) {
		t.Fatalf("verify %+v, writer %+v", vs, sum)
	}

	hdr, lines := parseCast(t, exportCast(t, e, w.Path()))
	if hdr["version"].(float64) != 2 || hdr["width"].(float64) != 120 || hdr["height"].(float64) != 40 ||
		hdr["title"] != "s-roundtrip root@db1" || hdr["env"].(map[string]any)["TERM"] != "xterm-256color" ||
		int64(hdr["timestamp"].(float64)) != m.Started.Unix() {
		t.Fatalf("header %v", hdr)
	}
	wantLines := []castLine{
		{0.1, "o", "h"},
		{0.11, "o", "éllo wörld\r\n$ "},
		{1.11, "m", "input: alice"},
		{1.11, "i", "ls\r"},
		{1.11, "r", "100x30"},
		{1.11, "m", "bob joined as peer"},
	}
	if !reflect.DeepEqual(lines, wantLines) {
		t.Fatalf("cast events\n%v\nwant\n%v", lines, wantLines)
	}
}

func TestInputAttribution(t *testing.T) { eachStorage(t, testInputAttribution) }

func testInputAttribution(t *testing.T) {
	e := newEnv(t)
	w := e.create(t, e.meta("s-attr", KindPTY), Options{})
	steps := []struct{ person, text string }{
		{"alice", "ls"}, {"alice", "\r"}, {"bob", "pwd\r"}, {"alice", "x"},
	}
	for _, s := range steps {
		e.clock.Advance(500 * time.Millisecond)
		must(t, w.Input(s.person, []byte(s.text)))
	}
	_, err := w.Close()
	must(t, err)

	_, lines := parseCast(t, exportCast(t, e, w.Path()))
	var got []string
	for _, l := range lines {
		got = append(got, l.Code+":"+l.Data)
	}
	want := []string{"m:input: alice", "i:ls", "i:\r", "m:input: bob", "i:pwd\r", "m:input: alice", "i:x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}

	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	var buf bytes.Buffer
	must(t, ExportAttribution(r, &buf))
	wantAttr := `{"t":0.500000,"person":"alice","bytes":2}
{"t":1.000000,"person":"alice","bytes":1}
{"t":1.500000,"person":"bob","bytes":4}
{"t":2.000000,"person":"alice","bytes":1}
`
	if buf.String() != wantAttr {
		t.Fatalf("attribution\n%s\nwant\n%s", buf.String(), wantAttr)
	}
}

func TestPasswordMasking(t *testing.T) { eachStorage(t, testPasswordMasking) }

func testPasswordMasking(t *testing.T) {
	type step struct {
		out    string // output before the input, "" for none
		person string
		in     string
	}
	tests := []struct {
		name       string
		steps      []step
		wantInputs []string // recorded input events, in order
		wantHidden []string // persons with a sealed-input event, in order
	}{
		{"sudo prompt until Enter",
			[]step{{"$ sudo -i\r\n[sudo] password for alice: ", "alice", "s"}, {"", "alice", "3cr"}, {"", "alice", "et"}, {"", "alice", "\r"}, {"\r\n# ", "alice", "id\r"}},
			[]string{"\r", "id\r"}, []string{"alice"}},
		{"Password: and paste with Enter and more",
			[]step{{"Password:", "alice", "s3cret\rwhoami\r"}},
			[]string{"\rwhoami\r"}, []string{"alice"}},
		{"prompt split across reads, coloured",
			[]step{{"\x1b[1m[sudo] pass", "", ""}, {"word for alice:\x1b[0m ", "bob", "s3cret\n"}},
			[]string{"\n"}, []string{"bob"}},
		{"two typists during one prompt",
			[]step{{"alice@db1's password: ", "alice", "s3c"}, {"", "bob", "ret"}, {"", "alice", "\r"}},
			[]string{"\r"}, []string{"alice", "bob"}},
		{"ssh key passphrase, Ctrl-C ends",
			[]step{{"Enter passphrase for key '/root/.ssh/id_ed25519': ", "alice", "s3cret\x03"}, {"^C\r\n$ ", "alice", "ls\r"}},
			[]string{"\x03", "ls\r"}, []string{"alice"}},
		{"prompt again after a failed try",
			[]step{{"Password: ", "alice", "s3cret\r"}, {"\r\nSorry, try again.\r\n[sudo] password for alice: ", "alice", "s3cret\r"}},
			[]string{"\r", "\r"}, []string{"alice", "alice"}},
		{"not a password prompt",
			[]step{{"Name: ", "alice", "s3cret\r"}, {"password stored\r\n$ ", "alice", "ls\r"}},
			[]string{"s3cret\r", "ls\r"}, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.create(t, e.meta("s-mask-"+string(rune('a'+i)), KindPTY), Options{})
			for _, s := range tc.steps {
				if s.out != "" {
					must(t, w.Output([]byte(s.out)))
				}
				if s.in != "" {
					must(t, w.Input(s.person, []byte(s.in)))
				}
			}
			_, err := w.Close()
			must(t, err)
			evs, err := readAll(t, e, w.Path())
			must(t, err)
			var inputs, hidden []string
			for _, ev := range evs {
				switch ev.Type {
				case EvInput:
					inputs = append(inputs, string(ev.Data))
				case EvSealed:
					hidden = append(hidden, ev.Person)
				}
			}
			if !reflect.DeepEqual(inputs, tc.wantInputs) || !reflect.DeepEqual(hidden, tc.wantHidden) {
				t.Fatalf("inputs %q hidden %q, want %q %q", inputs, hidden, tc.wantInputs, tc.wantHidden)
			}
			cast := exportCast(t, e, w.Path())
			if tc.wantHidden != nil {
				if bytes.Contains(cast, []byte("s3c")) || bytes.Contains(cast, []byte(`"ret`)) {
					t.Fatalf("password in export:\n%s", cast)
				}
				if !bytes.Contains(cast, []byte(`keystrokes sealed (secret prompt)"`)) {
					t.Fatalf("no sealed marker:\n%s", cast)
				}
				// The secret is in the sidecar, under the sealed key.
				sealed, err := e.openSealed(w.SealedPath())
				must(t, err)
				var got []byte
				for _, s := range sealed {
					got = append(got, s.Data...)
				}
				if !bytes.Contains(got, []byte("s3c")) {
					t.Fatalf("sealed keystrokes %q lack the secret", got)
				}
			}
		})
	}
}

func TestExecStreams(t *testing.T) { eachStorage(t, testExecStreams) }

func testExecStreams(t *testing.T) {
	e := newEnv(t)
	m := e.meta("s-exec", KindExec)
	m.Command = "tar czf - /etc"
	m.Env = []string{"LANG", "TZ"}
	w := e.create(t, m, Options{NoSync: true})
	rng := rand.NewChaCha8([32]byte{1})
	out := make([]byte, 5<<20)
	rng.Read(out)
	must(t, w.Stream("stdin", []byte("yes\n")))
	for p := out; len(p) > 0; {
		n := min(len(p), 40000)
		must(t, w.Stream("stdout", p[:n]))
		p = p[n:]
	}
	must(t, w.Stream("stderr", []byte("tar: removing leading '/'\n")))
	e.clock.Advance(2500 * time.Millisecond)
	must(t, w.Exit(3, ""))
	sum, err := w.Close()
	must(t, err)
	h := sha256.Sum256(out)
	wantOut := StreamSummary{Bytes: 5 << 20, SHA256: hex.EncodeToString(h[:]), StoredBytes: 1 << 20, Truncated: true}
	if sum.Streams["stdout"] != wantOut {
		t.Fatalf("stdout %+v, want %+v", sum.Streams["stdout"], wantOut)
	}
	if s := sum.Streams["stderr"]; s.Bytes != 26 || s.StoredBytes != 26 || s.Truncated {
		t.Fatalf("stderr %+v", s)
	}
	if stored, _ := e.readRaw(w.Path()); len(stored) > 1<<20+200<<10 {
		t.Fatalf("recording is %d bytes: content not capped", len(stored))
	}

	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	if got := r.Meta(); got.Command != m.Command || !reflect.DeepEqual(got.Env, m.Env) || got.Kind != KindExec {
		t.Fatalf("meta %+v", got)
	}
	var stored bytes.Buffer
	var exit Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		switch {
		case ev.Type == EvStream && ev.Name == "stdout":
			stored.Write(ev.Data)
		case ev.Type == EvExit:
			exit = ev
		}
	}
	if !bytes.Equal(stored.Bytes(), out[:1<<20]) {
		t.Fatalf("stored stdout: %d bytes, not the first MiB", stored.Len())
	}
	if exit.Status != 3 || exit.T != 2500*time.Millisecond {
		t.Fatalf("exit %+v", exit)
	}
	vs, err := r.Verify()
	must(t, err)
	if !reflect.DeepEqual(vs, sum) {
		t.Fatalf("verify %+v\nwriter %+v", vs, sum)
	}
}

// threeChunks writes a recording with three chunks (two flushed, one final)
// and returns its path.
func threeChunks(t *testing.T, e *env, session string) string {
	t.Helper()
	w := e.create(t, e.meta(session, KindPTY), Options{})
	must(t, w.Output([]byte("first\r\n")))
	must(t, w.Flush())
	must(t, w.Output([]byte("second\r\n")))
	_, err := w.Close()
	must(t, err)
	return w.Path()
}

func TestTamperedChunk(t *testing.T) { eachStorage(t, testTamperedChunk) }

func testTamperedChunk(t *testing.T) {
	e := newEnv(t)
	path := threeChunks(t, e, "s-tamper")
	data, _ := e.readRaw(path)
	hdr, frames := splitFile(t, data)
	if len(frames) != 3 {
		t.Fatalf("%d chunks", len(frames))
	}
	for _, at := range []int{4, 30, len(frames[1]) - 1} { // nonce, ciphertext, tag
		bad := bytes.Clone(frames[1])
		bad[at] ^= 0x01
		e.writeRaw(t, path, join(hdr, frames[0], bad, frames[2]))
		evs, err := readAll(t, e, path)
		if !isErr(err, ErrTampered) || !strings.Contains(err.Error(), "chunk 1 at offset") {
			t.Fatalf("byte %d: err %v", at, err)
		}
		if len(evs) != 0 {
			t.Fatalf("events from a tampered chunk: %v", evs)
		}
	}
	// A changed header (here: the kind) breaks the binding of every chunk.
	badHdr := bytes.Replace(hdr, []byte(`"kind":"pty"`), []byte(`"kind":"exec"`), 1)
	e.writeRaw(t, path, join(badHdr, frames...))
	if _, err := e.open(path); !isErr(err, ErrTampered) || !strings.Contains(err.Error(), "chunk 0") {
		t.Fatalf("changed header: %v", err)
	}
	// Data appended after the final chunk.
	e.writeRaw(t, path, append(join(hdr, frames...), frames[1]...))
	if _, err := readAll(t, e, path); !isErr(err, ErrCorrupt) {
		t.Fatalf("appended chunk: %v", err)
	}
}

func TestChunksReorderedOrMoved(t *testing.T) { eachStorage(t, testChunksReorderedOrMoved) }

func testChunksReorderedOrMoved(t *testing.T) {
	e := newEnv(t)
	a := threeChunks(t, e, "s-a")
	b := threeChunks(t, e, "s-b") // same tenant and day: same data key
	da, _ := e.readRaw(a)
	db, _ := e.readRaw(b)
	ha, fa := splitFile(t, da)
	_, fb := splitFile(t, db)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"swapped", join(ha, fa[0], fa[2], fa[1]), "chunk 1"},
		{"chunk from another recording", join(ha, fa[0], fb[1], fa[2]), "chunk 1"},
		{"first chunk from another recording", join(ha, fb[0], fa[1], fa[2]), "chunk 0"},
		{"chunk dropped", join(ha, fa[0], fa[2]), "chunk 1"},
		{"chunk repeated", join(ha, fa[0], fa[1], fa[1], fa[2]), "chunk 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.writeRaw(t, a, tc.data)
			_, err := readAll(t, e, a)
			if !isErr(err, ErrTampered) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrTampered in %s", err, tc.want)
			}
		})
	}
}

func TestTruncatedAndCrash(t *testing.T) { eachStorage(t, testTruncatedAndCrash) }

func testTruncatedAndCrash(t *testing.T) {
	e := newEnv(t)
	// No background flush may run (a never-ticking Tick): every chunk
	// boundary below is the test's own, so the layout on disk is exactly
	// known. A ticked flush racing with the writes made this test flaky.
	w := e.create(t, e.meta("s-crash", KindPTY), Options{Tick: make(chan time.Time)})
	must(t, w.Output([]byte("before the crash\r\n")))
	must(t, w.Flush()) // what the interval flush writes
	must(t, w.Marker("alice left"))
	must(t, w.Flush())
	must(t, w.Output([]byte("in the buffer only\r\n")))
	crashed, err := e.readRaw(w.Path()) // what a crash now leaves on disk
	must(t, err)
	_, err = w.Close()
	must(t, err)
	full, _ := e.readRaw(w.Path())
	hdr, frames := splitFile(t, crashed)
	if len(frames) != 3 {
		t.Fatalf("%d chunks before the crash, want meta + two flushes", len(frames))
	}
	_, all := splitFile(t, full)

	tests := []struct {
		name       string
		data       []byte
		wantOut    string
		wantMarker bool
	}{
		{"crash: no final chunk", crashed, "before the crash\r\n", true},
		{"cut inside the last chunk", join(hdr, frames[0], frames[1], frames[2][:20]), "before the crash\r\n", false},
		{"cut inside a length prefix", join(hdr, frames[0], frames[1], frames[2][:2]), "before the crash\r\n", false},
		{"final chunk removed", join(hdr, all[:len(all)-1]...), "before the crash\r\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.rec")
			writeFile(t, path, tc.data)
			evs, err := readFileEvents(t, e.v, path)
			if !isErr(err, ErrIncomplete) {
				t.Fatalf("err %v, want ErrIncomplete", err)
			}
			if got := outputText(evs); got != tc.wantOut {
				t.Fatalf("output %q, want %q", got, tc.wantOut)
			}
			if hasMarker := len(evs) > 1 && evs[len(evs)-1].Text == "alice left"; hasMarker != tc.wantMarker {
				t.Fatalf("marker %v, want %v: %+v", hasMarker, tc.wantMarker, evs)
			}
			r, err := Open(e.v, path)
			must(t, err)
			var buf bytes.Buffer
			if err := ExportAsciicast(r, &buf); !isErr(err, ErrIncomplete) {
				t.Fatalf("export: %v", err)
			}
			r.Close()
			if !bytes.Contains(buf.Bytes(), []byte("before the crash")) || !bytes.HasSuffix(buf.Bytes(), []byte(`"m", "recording incomplete"]`+"\n")) {
				t.Fatalf("export:\n%s", buf.Bytes())
			}
		})
	}
	// Only the header survived: nothing to read, and it says so.
	path := filepath.Join(t.TempDir(), "y.rec")
	writeFile(t, path, hdr)
	if _, err := Open(e.v, path); !isErr(err, ErrIncomplete) {
		t.Fatalf("header only: %v", err)
	}
}

func TestWriterLifecycle(t *testing.T) { eachStorage(t, testWriterLifecycle) }

func testWriterLifecycle(t *testing.T) {
	e := newEnv(t)
	m := e.meta("s-life", KindPTY)
	w := e.create(t, m, Options{})
	if _, err := Create(e.v, e.st, m, Options{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second recording of one session: %v", err)
	}
	s1, err := w.Close()
	must(t, err)
	s2, err := w.Close()
	if err != nil || !reflect.DeepEqual(s1, s2) {
		t.Fatalf("second Close: %+v %v", s2, err)
	}
	if err := w.Output([]byte("x")); !isErr(err, ErrClosed) {
		t.Fatalf("Output after Close: %v", err)
	}
	bad := []Meta{
		{SessionID: "../x", Tenant: "acme", Kind: KindPTY, Started: m.Started},
		{SessionID: "s", Tenant: "a/b", Kind: KindPTY, Started: m.Started},
		{SessionID: "s", Tenant: "acme", Kind: "shell", Started: m.Started},
		{SessionID: "s", Tenant: "acme", Kind: KindPTY},
	}
	for _, b := range bad {
		if _, err := Create(e.v, e.st, b, Options{}); err == nil {
			t.Fatalf("Create(%+v) accepted", b)
		}
	}
}

// TestConcurrentWriters feeds output, input and markers from several
// goroutines (run with -race) and checks nothing is lost.
func TestConcurrentWriters(t *testing.T) { eachStorage(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	w := e.create(t, e.meta("s-conc", KindPTY), Options{ChunkSize: 1024})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch g {
				case 0:
					w.Output([]byte("out "))
				case 1:
					w.Input("alice", []byte("a"))
				case 2:
					w.Marker("m")
				case 3:
					if i%50 == 0 {
						w.Flush()
					}
				}
			}
		}()
	}
	wg.Wait()
	sum, err := w.Close()
	must(t, err)
	if sum.Events != 1+600 {
		t.Fatalf("events %d", sum.Events)
	}
	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	vs, err := r.Verify()
	must(t, err)
	if vs.SHA256 != sum.SHA256 || vs.Events != sum.Events {
		t.Fatalf("verify %+v writer %+v", vs, sum)
	}
}

func TestList(t *testing.T) { eachStorage(t, testList) }

func testList(t *testing.T) {
	e := newEnv(t)
	for _, s := range []struct {
		tenant, id string
		days       int
	}{{"acme", "s1", 0}, {"acme", "s2", 1}, {"globex", "s3", 0}} {
		m := e.meta(s.id, KindPTY)
		m.Tenant = s.tenant
		m.Started = m.Started.AddDate(0, 0, s.days)
		w := e.create(t, m, Options{})
		_, err := w.Close()
		must(t, err)
	}
	hs, err := ListIn(e.st, "acme")
	must(t, err)
	if len(hs) != 2 || hs[0].Session != "s1" || hs[1].Session != "s2" || hs[1].Day != "2026-03-15" || hs[0].Kind != KindPTY || hs[0].Tenant != "acme" {
		t.Fatalf("list %+v", hs)
	}
	// A recording moved into another tenant's place is not listed there.
	if e.db != nil {
		_, err := e.db.Exec(`UPDATE recording_objects SET tenant = 'acme' WHERE session = 's3'`)
		must(t, err)
	} else {
		src := Path(e.dir, "globex", e.clock.Now(), "s3")
		dst := Path(e.dir, "acme", e.clock.Now(), "s3")
		must(t, os.Rename(src, dst))
	}
	hs, err = ListIn(e.st, "acme")
	if len(hs) != 2 || !isErr(err, ErrCorrupt) {
		t.Fatalf("moved file: %+v %v", hs, err)
	}
	if hs, err := ListIn(e.st, "initech"); err != nil || len(hs) != 0 {
		t.Fatalf("empty tenant: %v %v", hs, err)
	}
	if _, err := ListIn(e.st, ".."); err == nil {
		t.Fatal("List accepted ..")
	}
}

// TestNoPlaintextAtRest greps every file of the data directory for the
// personal data and content of a recording, with both kinds of KEK.
func TestNoPlaintextAtRest(t *testing.T) {
	for _, kind := range []string{"file", "age"} {
		t.Run(kind, func(t *testing.T) {
			root := t.TempDir()
			var kek KEK
			var err error
			if kind == "file" {
				must(t, GenerateFileKEK(filepath.Join(root, "kek")))
				kek, err = FileKEK(filepath.Join(root, "kek"))
			} else {
				_, err = GenerateAgeKEK(filepath.Join(root, "kek"))
				must(t, err)
				kek, err = AgeKEK(filepath.Join(root, "kek"))
			}
			must(t, err)
			dir := filepath.Join(root, "data")
			v, err := OpenVault(dir, kek)
			must(t, err)
			clock := newClock()
			m := Meta{SessionID: "s-grep", Tenant: "acme", Kind: KindPTY, Started: clock.Now(),
				Host: "zz-secret-host", Login: "zz-secret-login", Owner: "zz-secret-owner", Term: "xterm"}
			w, err := Create(v, Local(dir), m, Options{Now: clock.Now, Tick: make(chan time.Time)})
			must(t, err)
			must(t, w.Output([]byte("zz-secret-output")))
			must(t, w.Input("zz-secret-person", []byte("zz-secret-input")))
			must(t, w.Marker("zz-secret-marker"))
			must(t, w.Flush())
			_, err = w.Close()
			must(t, err)
			files := 0
			err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					if d != nil && d.IsDir() {
						if st, _ := os.Stat(p); st.Mode().Perm() != 0o700 {
							t.Errorf("%s: mode %v", p, st.Mode().Perm())
						}
					}
					return err
				}
				files++
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if bytes.Contains(b, []byte("zz-secret")) {
					t.Errorf("%s holds plaintext", p)
				}
				if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v", p, st.Mode().Perm())
				}
				return nil
			})
			must(t, err)
			if files != 2 { // one wrapped key, one recording
				t.Fatalf("%d files", files)
			}
			// And it reads back with the KEK.
			evs, err := readFileEvents(t, v, w.Path())
			if err != nil || outputText(evs) != "zz-secret-output" {
				t.Fatalf("read back: %v %q", err, outputText(evs))
			}
		})
	}
}

// A whole recording put in another session's or day's place (a file copied
// by whoever edits the data directory) is not listed there, so it is never
// read as that session's: its header names its own place.
func TestWholeFileInAnotherPlace(t *testing.T) {
	e := newEnv(t)
	a := threeChunks(t, e, "s-a")
	b := threeChunks(t, e, "s-b")
	raw, err := os.ReadFile(b)
	must(t, err)
	writeFile(t, a, raw) // s-b's recording as s-a
	next := Path(e.dir, "acme", e.clock.Now().AddDate(0, 0, 1), "s-b")
	must(t, os.MkdirAll(filepath.Dir(next), 0o700))
	writeFile(t, next, raw) // … and as s-b of the next day
	hs, err := ListIn(e.st, "acme")
	if !isErr(err, ErrCorrupt) || len(hs) != 1 || hs[0].Session != "s-b" || hs[0].Day != "2026-03-14" {
		t.Fatalf("listed %+v, %v", hs, err)
	}
}
