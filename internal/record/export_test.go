package record

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
)

func carryAll(pieces ...string) string {
	var c utf8Carry
	var b strings.Builder
	for _, p := range pieces {
		b.WriteString(c.text([]byte(p)))
	}
	b.WriteString(c.flush())
	return b.String()
}

func TestUTF8Carry(t *testing.T) {
	tests := []struct {
		name   string
		pieces []string
		want   string
	}{
		{"ascii", []string{"ab", "cd"}, "abcd"},
		{"2-byte split", []string{"h\xc3", "\xa9"}, "hé"},
		{"3-byte split twice", []string{"\xe2", "\x82", "\xac!"}, "€!"},
		{"4-byte split", []string{"\xf0\x9f", "\x98\x80"}, "😀"},
		{"empty piece in between", []string{"\xc3", "", "\xa9"}, "é"},
		{"invalid byte once", []string{"a\xffb"}, "a\uFFFDb"},
		{"invalid run once", []string{"a\xff\xfe\xfdb"}, "a\uFFFDb"},
		{"prefix broken by ascii", []string{"\xe2\x82", "A"}, "\uFFFDA"},
		{"prefix at the end", []string{"ok\xe2\x82"}, "ok\uFFFD"},
		{"stray continuation", []string{"\x80", "a"}, "\uFFFDa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := carryAll(tc.pieces...); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestExportSplitOutputs: every split point of a multi-byte text goes
// through writer, file, reader and export unchanged.
func TestExportSplitOutputs(t *testing.T) { eachStorage(t, testExportSplitOutputs) }

func testExportSplitOutputs(t *testing.T) {
	text := []byte("Grüße, 世界 😀\r\n")
	e := newEnv(t)
	for i := 1; i < len(text); i++ {
		m := e.meta("s-split-"+string(rune('a'+i)), KindPTY)
		w := e.create(t, m, Options{NoSync: true})
		must(t, w.Output(text[:i]))
		must(t, w.Output(text[i:]))
		_, err := w.Close()
		must(t, err)
		_, lines := parseCast(t, exportCast(t, e, w.Path()))
		var got strings.Builder
		for _, l := range lines {
			got.WriteString(l.Data)
		}
		if got.String() != string(text) {
			t.Fatalf("split at %d: %q", i, got.String())
		}
	}
}

// requireProgram finds a program; under CI=true its absence fails.
func requireProgram(t *testing.T, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: %s", name, hint)
		}
		t.Skipf("%s not found: %s", name, hint)
	}
	return p
}

// TestAsciinemaCat replays an export with the real asciinema (which wants
// a terminal, so it runs in a PTY).
func TestAsciinemaCat(t *testing.T) {
	bin := requireProgram(t, "asciinema", "apt-get install -y asciinema")
	e := newEnv(t)
	w := e.create(t, e.meta("s-cat", KindPTY), Options{})
	must(t, w.Output([]byte("$ ")))
	e.clock.Advance(time.Second)
	must(t, w.Input("alice", []byte("echo hi\r")))
	must(t, w.Marker("bob joined as observer"))
	must(t, w.Output([]byte("echo hi\r\nh\xc3")))
	must(t, w.Output([]byte("\xa9llo w\xc3\xb6rld\r\n")))
	must(t, w.Resize(90, 20))
	must(t, w.Output([]byte("[sudo] password for alice: ")))
	must(t, w.Input("bob", []byte("hunter2\r")))
	must(t, w.Output([]byte("\r\ndone\r\n")))
	_, err := w.Close()
	must(t, err)
	cast := filepath.Join(t.TempDir(), "s.cast")
	must(t, os.WriteFile(cast, exportCast(t, e, w.Path()), 0o600))

	cmd := exec.Command(bin, "cat", cast)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "ASCIINEMA_CONFIG_HOME="+t.TempDir())
	f, err := pty.Start(cmd)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(f) // ends with EIO once the program exits
		got <- b
	}()
	var out []byte
	select {
	case out = <-got:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("asciinema cat did not finish")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, out)
	}
	want := "$ echo hi\r\nhéllo wörld\r\n[sudo] password for alice: \r\ndone\r\n"
	if !bytes.Contains(out, []byte(want)) {
		t.Fatalf("asciinema cat printed %q, want %q", out, want)
	}
	if bytes.Contains(out, []byte("hunter2")) {
		t.Fatal("password replayed")
	}
}

// TestMemoryBounded pushes 50 MiB of output through one writer and checks
// the heap stays small: no whole-session buffering.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50 MiB")
	}
	e := newEnv(t)
	w := e.create(t, e.meta("s-mem", KindPTY), Options{NoSync: true})
	p := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	for i := 0; i < 50<<20/len(p); i++ {
		must(t, w.Output(p))
		if i%128 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	sum, err := w.Close()
	must(t, err)
	if sum.Bytes < 50<<20 {
		t.Fatalf("stream %d bytes", sum.Bytes)
	}
	if peak > base+20<<20 {
		t.Fatalf("heap in use grew from %d to %d bytes", base, peak)
	}
	t.Logf("heap in use: base %d KiB, peak %d KiB", base>>10, peak>>10)

	// Reading holds one chunk at a time as well.
	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	var n int64
	for i := 0; ; i++ {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		n += int64(len(ev.Data))
		if i%1024 == 0 {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base+20<<20 {
				t.Fatalf("reader heap in use %d", ms.HeapInuse)
			}
		}
	}
	if n != 50<<20 {
		t.Fatalf("read %d bytes", n)
	}
}

func BenchmarkWriterOutput(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "fsync-per-second"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			opt := Options{NoSync: !sync, Now: time.Now}
			if sync {
				opt.Tick = nil // the real one-second ticker
			}
			w, err := Create(e.v, e.st, e.meta("s-bench", KindPTY), opt)
			must(b, err)
			p := bytes.Repeat([]byte("x"), 4096)
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for b.Loop() {
				if err := w.Output(p); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_, err = w.Close()
			must(b, err)
		})
	}
}

// FuzzExportUTF8 cuts arbitrary bytes into pieces and checks the carry
// produces valid UTF-8 that keeps every valid character, and reproduces
// valid input exactly.
func FuzzExportUTF8(f *testing.F) {
	f.Add([]byte("héllo wörld"), uint8(2), uint8(5))
	f.Add([]byte("😀€\xff\xc3"), uint8(1), uint8(3))
	f.Add([]byte("\xe2\x82A"), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint8) {
		i, j := min(int(cut1), len(data)), min(int(cut2), len(data))
		if i > j {
			i, j = j, i
		}
		got := carryAll(string(data[:i]), string(data[i:j]), string(data[j:]))
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 %q", got)
		}
		if utf8.Valid(data) && got != string(data) {
			t.Fatalf("valid input %q came out as %q", data, got)
		}
		whole := strings.ToValidUTF8(string(data), "\uFFFD")
		if strings.ReplaceAll(got, "\uFFFD", "") != strings.ReplaceAll(whole, "\uFFFD", "") {
			t.Fatalf("pieces %q, whole %q", got, whole)
		}
		// And through the asciicast event encoding.
		var buf bytes.Buffer
		cw := newCastWriter(&buf)
		if err := cw.event(0, "o", got); err != nil {
			t.Fatal(err)
		}
		cw.w.Flush()
		if !utf8.Valid(buf.Bytes()) {
			t.Fatalf("event line not UTF-8: %q", buf.Bytes())
		}
	})
}

// FuzzReader feeds arbitrary bytes as a recording file: no panic, no
// unbounded allocation, only errors.
func FuzzReader(f *testing.F) {
	e := newEnv(f)
	w := e.create(f, e.meta("s-fuzz", KindExec), Options{})
	w.Output([]byte("hello\r\n"))
	w.Input("alice", []byte("x"))
	w.Flush()
	w.Stream("stdout", []byte("out"))
	w.Exit(1, "")
	w.Close()
	valid, err := e.readRaw(w.Path())
	must(f, err)
	f.Add(valid)
	f.Add(valid[:len(valid)-10])
	f.Add([]byte(`{"format":"tandem-recording","version":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(e.v, bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		ExportAsciicast(r, io.Discard)
		if _, err := r.Next(); err == nil {
			t.Fatal("Next after the end without error")
		}
	})
}

// FuzzDecodeEvents exercises the event decoder directly, which the AEAD
// otherwise shields from random input.
func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte("o\x00\x05hello"))
	f.Add([]byte("S\x01\x06stdout\x80\x80\x01" + strings.Repeat("\x00", 32) + "\x10\x01"))
	f.Add([]byte("p\x02\x0f{\"op\":\"write\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := decoder{b: data}
		for i := 0; len(d.b) > 0 && i < 1<<16; i++ {
			before := len(d.b)
			if _, err := decodeEvent(&d); err != nil {
				if errors.Is(err, errShort) && len(d.b) > before {
					t.Fatal("decoder grew")
				}
				return
			}
			if len(d.b) >= before {
				t.Fatal("decoder made no progress")
			}
		}
	})
}
