package record

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// replayText records the outputs as separate events (so sequences are cut
// across them) and returns what Replay writes to the auditor's terminal.
func replayText(t *testing.T, outputs ...string) string {
	t.Helper()
	e := newEnv(t)
	w := e.create(t, e.meta("s-replay", KindPTY), Options{})
	for _, o := range outputs {
		must(t, w.Output([]byte(o)))
	}
	_, err := w.Close()
	must(t, err)
	r, err := e.open(w.Path())
	must(t, err)
	defer r.Close()
	var out bytes.Buffer
	must(t, Replay(r, &out, ReplayOptions{Sleep: func(time.Duration) {}}))
	return out.String()
}

// A recorded session's output is replayed later on an auditor's terminal:
// what the recorded person printed must not reach that terminal as
// commands that write the auditor's clipboard, set its title, make it
// answer into the auditor's input (device and title reports, ENQ), or pass
// strings to the terminal's extensions (DCS, APC, PM, SOS) — also when the
// sequence is cut across events, or sent as 8-bit C1 controls.
func TestReplayDropsDangerousTerminalControls(t *testing.T) {
	got := replayText(t,
		"a\x1b]52;c;cm0gLXJmIH4K\x07b",       // OSC 52: write the clipboard
		"c\x1b]0;owned\x1b\\d",               // OSC 0 title, ended by ST
		"e\x1b]2;cut ac", "ross events\x07f", // an OSC cut across events
		"g\x1bP+q544e\x1b\\h",            // DCS (XTGETTCAP: the terminal answers)
		"i\x1b_apc\x1b\\j\x1b^pm\x1b\\k", // APC, PM
		"l\x1bXsos\x1b\\m",               // SOS
		"n\x1b[21to",                     // report the title into the input
		"p\x1b[6nq\x1b[cr\x1b[>cs",       // cursor position and device attributes reports
		"t\x1b[8;1;1tu",                  // resize the auditor's window
		"v\x05w",                         // ENQ: answerback into the input
		"x\u009b6ny\u009d0;t\u009cz",     // C1 controls as characters (dropped, their parameters are text)
		"A\x9b6nB",                       // a raw 8-bit CSI (not UTF-8)
		"C\x1b[5iD\x1b[4iE",              // printer controller mode
		"F\x1b[?1$pG",                    // DECRQM: the terminal answers
	)
	for _, bad := range []string{"\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1b[21t", "\x1b[6n", "\x1b[c", "\x1b[>c", "\x1b[8;",
		"\x05", "\u009b", "\u009d", "\u009c", "\x9b", "\x1b[5i", "\x1b[4i", "$p", "owned", "cm0g"} {
		if strings.Contains(got, bad) {
			t.Errorf("replay passes %q to the terminal:\n%q", bad, got)
		}
	}
	for _, keep := range []string{"ab", "cd", "ef", "gh", "ij", "kl", "mn", "o", "pq", "rs", "tu", "vw", "x", "y", "z", "A", "B", "CDE", "FG"} {
		if !strings.Contains(got, keep) {
			t.Errorf("replay lost the text %q around a dropped control:\n%q", keep, got)
		}
	}
}

// Normal terminal output stays as it was: colours, cursor movement,
// erasing, scroll regions, the alternate screen, modes, charsets, tabs,
// backspace, bell, UTF-8 (also cut across events).
func TestReplayKeepsNormalTerminalOutput(t *testing.T) {
	parts := []string{
		"\x1b[1;31mred\x1b[0m \x1b[38;5;208mX\x1b[m\r\n",
		"\x1b[?1049h\x1b[H\x1b[2J\x1b[3;1H\x1b[K\x1b[2A\x1b[5C\x1b[1;24r\x1b[?25l\x1b[?2004h",
		"\x1b(B\x1b)0\x0e\x0f\x1b7\x1b8\x1bM\x1b=\x1b>",
		"tab\there\bX\a",
		"Gr\xc3", "\xbc\xc3\x9fe \xe2\x82", "\xac \xf0\x9f\x98\x80\r\n",
		"\x1b[?1049l",
	}
	got := replayText(t, parts...)
	if want := strings.Join(parts, ""); !strings.Contains(got, want) {
		t.Fatalf("replay changed normal output:\n got %q\nwant %q", got, want)
	}
}

// A control string the recorded person never ends cannot hide the rest of
// the session from the auditor: a terminal would swallow it all, the
// replay swallows a bounded prefix and shows what follows.
func TestReplayUnendedControlStringHidesLittle(t *testing.T) {
	got := replayText(t, "\x1b]0;", strings.Repeat("x", 2*maxControlString), "rm -rf /srv/data\r\n")
	if !strings.Contains(got, "rm -rf /srv/data") {
		t.Fatalf("an unended OSC hid the output after it:\n%q", got)
	}
	got = replayText(t, "\x1bPq", "\x18", "visible") // CAN aborts the string, as in a terminal
	if !strings.Contains(got, "visible") || strings.Contains(got, "\x18") {
		t.Fatalf("CAN did not end the DCS: %q", got)
	}
}

// FuzzTermFilter: whatever a recorded person printed, the replay writes
// valid UTF-8 without a control string, a C1 control, a C0 control but
// BEL … SI and ESC, an ESC that does not start a sequence that passes, or
// a CSI that makes the terminal answer; and how the output was cut into
// events does not change what passes.
func FuzzTermFilter(f *testing.F) {
	for _, s := range []string{"\x1b]52;c;eA==\x07", "\x1b[1;31mx\x1b[0m", "\x1bPq\x1b\\", "\u009b6n", "\xc3\xbc\x9b", "\x1b[?1049h", "\x1b(B\x1b#8", "\x1b]0;\xc2\x9cz"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, p []byte, cut uint8) {
		var whole termFilter
		got := whole.flush(whole.filter(nil, p))
		k := int(cut) % (len(p) + 1)
		var parts termFilter
		split := parts.flush(parts.filter(parts.filter(nil, p[:k]), p[k:]))
		if !bytes.Equal(got, split) {
			t.Fatalf("cut at %d: %q, whole %q", k, split, got)
		}
		if !utf8.Valid(got) {
			t.Fatalf("not UTF-8: %q", got)
		}
		for i, r := range string(got) {
			switch {
			case r >= 0x80 && r <= 0x9f, r < 0x07, r >= 0x10 && r < 0x20 && r != 0x1b, r == 0x7f:
				t.Fatalf("control %U passes at %d: %q", r, i, got)
			}
		}
		// Every ESC starts a sequence that passes: re-read the output and
		// check each one.
		for i := 0; i < len(got); i++ {
			if got[i] != 0x1b {
				continue
			}
			if i+1 == len(got) {
				t.Fatalf("a lone ESC at the end: %q", got)
			}
			switch c := got[i+1]; {
			case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_' || c == 'Z':
				t.Fatalf("ESC %c passes: %q", c, got)
			case c == '[':
				j := i + 2
				for j < len(got) && got[j] >= 0x20 && got[j] <= 0x3f {
					j++
				}
				if j == len(got) || !csiAllowed(got[i+2:j], got[j]) {
					t.Fatalf("CSI %q passes: %q", got[i:min(j+1, len(got))], got)
				}
			}
		}
	})
}

// The asciicast export is read by the auditor's tools (players, jq,
// scripts): whatever the recorded person chose (terminal type, command,
// output, input, markers with reasons) stays inside JSON strings. Every
// line is one valid JSON value of the expected shape, with no raw
// control character, line separator or invalid UTF-8.
func TestExportIsJSONWhateverWasRecorded(t *testing.T) {
	e := newEnv(t)
	hostile := "\"]\n[0.0, \"o\", \"pwned\"]\u2028\u2029\x1b]52;c;eA==\x07\xff\xc3\x00</script>"
	m := e.meta("s-json", KindPTY)
	m.Term, m.Command = hostile, hostile
	w := e.create(t, m, Options{})
	must(t, w.Output([]byte(hostile)))
	must(t, w.Input("alice", []byte(hostile)))
	must(t, w.Marker(hostile))
	must(t, w.Resize(65535, 65535))
	_, err := w.Close()
	must(t, err)
	cast := exportCast(t, e, w.Path())
	lines := bytes.Split(bytes.TrimSuffix(cast, []byte("\n")), []byte("\n"))
	var hdr map[string]any
	if err := json.Unmarshal(lines[0], &hdr); err != nil {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	for i, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal(l, &ev); err != nil || len(ev) != 3 {
			t.Fatalf("line %d %q: %v", i+2, l, err)
		}
		if d, ok := ev[2].(string); !ok || d == "pwned" {
			t.Fatalf("line %d: data is not a string, or an injected event: %q", i+2, l)
		}
	}
	for _, c := range []string{"\x1b", "\x07", "\x00", "\u2028", "\u2029", "\xff"} {
		if bytes.Contains(cast, []byte(c)) {
			t.Errorf("the export holds %q raw", c)
		}
	}
	if !utf8.Valid(cast) {
		t.Error("the export is not UTF-8")
	}
}
