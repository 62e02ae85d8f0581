package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Texts of the markers the export adds.
const (
	// MarkerInputBy prefixes the marker emitted whenever the person typing
	// changes: "input: bob". asciicast v2 has no field for the typist, and
	// markers survive every player and `asciinema cat` (which prints only
	// output), so the attribution stays inside the exported file.
	MarkerInputBy = "input: "
	// MarkerHidden replaces input typed after a password prompt in
	// recordings made before keystrokes were sealed.
	MarkerHidden = "input hidden (password prompt)"
	// MarkerIncomplete ends an export of a recording whose final chunk is
	// missing.
	MarkerIncomplete = "recording incomplete"
)

// utf8Carry turns a byte stream cut at arbitrary points into valid UTF-8
// text: an incomplete character at the end of one piece is kept back and
// joined with the next, so it is not replaced by U+FFFD twice. Bytes that
// are not UTF-8 become one U+FFFD per invalid run.
type utf8Carry struct {
	buf [utf8.UTFMax]byte
	n   int
}

// text returns the valid text of carry+p, keeping back a trailing
// incomplete character.
func (c *utf8Carry) text(p []byte) string {
	if c.n > 0 {
		p = append(c.buf[:c.n:c.n], p...)
		c.n = 0
	}
	// An incomplete character starts at most UTFMax-1 bytes from the end.
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		i := len(p) - k
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				c.n = copy(c.buf[:], p[i:])
				p = p[:i]
			}
			break
		}
	}
	return strings.ToValidUTF8(string(p), "\uFFFD")
}

// flush returns what is kept back: one U+FFFD, or nothing.
func (c *utf8Carry) flush() string {
	if c.n == 0 {
		return ""
	}
	c.n = 0
	return "\uFFFD"
}

// castWriter writes asciicast v2 event lines.
type castWriter struct {
	w   *bufio.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

func newCastWriter(w io.Writer) *castWriter {
	c := &castWriter{w: bufio.NewWriterSize(w, 64<<10)}
	c.enc = json.NewEncoder(&c.buf)
	c.enc.SetEscapeHTML(false)
	return c
}

func castTime(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}

func (c *castWriter) event(t time.Duration, code, data string) error {
	c.buf.Reset()
	if err := c.enc.Encode(data); err != nil {
		return err
	}
	s := bytes.TrimRight(c.buf.Bytes(), "\n")
	c.w.WriteString("[" + castTime(t) + ", \"" + code + "\", ")
	c.w.Write(s)
	_, err := c.w.WriteString("]\n")
	return err
}

// castHeader is the asciicast v2 header line.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title"`
	Env       map[string]string `json:"env,omitempty"`
}

// SealedMarker is the marker that stands where keystrokes typed at a
// secret prompt were sealed: "9 keystrokes sealed (secret prompt)".
func SealedMarker(keystrokes int64) string {
	if keystrokes == 1 {
		return "1 keystroke sealed (secret prompt)"
	}
	return fmt.Sprintf("%d keystrokes sealed (secret prompt)", keystrokes)
}

// SealedNote is the marker at the end of a recording whose sealed input
// is flagged: "sealed: 12 keystrokes at 5 secret prompts; more …".
func SealedNote(s SealedSummary) string {
	return fmt.Sprintf("sealed: %d keystrokes at %d secret prompts; %s", s.Keystrokes, s.Prompts, MarkerSealedManyNote)
}

// ExportAsciicast writes the recording as asciicast v2: output as "o",
// input as "i" (preceded by a marker "input: <person>" whenever the typist
// changes), window sizes as "r", markers as "m", keystrokes sealed at a
// secret prompt as the marker "N keystrokes sealed (secret prompt)" where
// they were typed (the keystrokes themselves are not in the recording),
// and a flagged session's sealed totals as a last marker. Exec recordings export stdin
// as "i", stdout and stderr as "o", and the exit status and stream totals
// as markers; sftp operations become markers. Output is re-assembled
// across reads so split UTF-8 characters survive.
//
// A recording without its final chunk is exported up to the cut, ends with
// the marker "recording incomplete", and the error wraps ErrIncomplete.
func ExportAsciicast(r *Reader, w io.Writer) error {
	m := r.Meta()
	cols, rows := m.Cols, m.Rows
	if cols <= 0 {
		cols = 80
	}
	if rows <= 0 {
		rows = 24
	}
	h := castHeader{Version: 2, Width: cols, Height: rows, Timestamp: m.Started.Unix(), Command: m.Command,
		Title: strings.TrimSpace(m.SessionID + " " + userAtHost(m))}
	if m.Term != "" {
		h.Env = map[string]string{"TERM": m.Term}
	}
	cw := newCastWriter(w)
	hb, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("record: export: %w", err)
	}
	cw.w.Write(hb)
	cw.w.WriteByte('\n')

	var out utf8Carry
	in := map[string]*utf8Carry{}
	typist := ""
	var last time.Duration
	emit := func(t time.Duration, code, s string) error {
		if s == "" {
			return nil
		}
		return cw.event(t, code, s)
	}
	setTypist := func(t time.Duration, p string) error {
		if p == typist {
			return nil
		}
		if c := in[typist]; c != nil {
			// The previous typist's half character will not be finished.
			if err := emit(t, "i", c.flush()); err != nil {
				return err
			}
		}
		typist = p
		return cw.event(t, "m", MarkerInputBy+p)
	}
	var rerr error
	for {
		ev, err := r.Next()
		if err != nil {
			rerr = err
			break
		}
		last = ev.T
		switch ev.Type {
		case EvOutput:
			err = emit(ev.T, "o", out.text(ev.Data))
		case EvInput:
			if err = setTypist(ev.T, ev.Person); err == nil {
				c := in[ev.Person]
				if c == nil {
					c = &utf8Carry{}
					in[ev.Person] = c
				}
				err = emit(ev.T, "i", c.text(ev.Data))
			}
		case EvHidden:
			if err = setTypist(ev.T, ev.Person); err == nil {
				err = cw.event(ev.T, "m", MarkerHidden)
			}
		case EvSealed:
			if err = setTypist(ev.T, ev.Person); err == nil {
				err = cw.event(ev.T, "m", SealedMarker(ev.Sealed.Keystrokes))
			}
		case EvSealedEnd:
			if ev.Sealed.Flagged {
				err = cw.event(ev.T, "m", SealedNote(ev.Sealed))
			}
		case EvResize:
			err = cw.event(ev.T, "r", fmt.Sprintf("%dx%d", ev.Cols, ev.Rows))
		case EvMarker:
			err = cw.event(ev.T, "m", strings.ToValidUTF8(ev.Text, "\uFFFD"))
		case EvStream:
			// Exec streams: each has its own carry so stdout and stderr
			// interleaving cannot split a character.
			key := "\x00" + ev.Name
			c := in[key]
			if c == nil {
				c = &utf8Carry{}
				in[key] = c
			}
			code := "o"
			if ev.Name == "stdin" {
				code = "i"
			}
			err = emit(ev.T, code, c.text(ev.Data))
		case EvStreamEnd:
			s := ev.Stream
			txt := fmt.Sprintf("%s: %d bytes, sha256 %s", ev.Name, s.Bytes, s.SHA256)
			if s.Truncated {
				txt += fmt.Sprintf(", first %d bytes stored", s.StoredBytes)
			}
			err = cw.event(ev.T, "m", txt)
		case EvExit:
			txt := fmt.Sprintf("exit status %d", ev.Status)
			if ev.Signal != "" {
				txt = "killed by signal " + ev.Signal
			}
			err = cw.event(ev.T, "m", txt)
		case EvOp:
			err = cw.event(ev.T, "m", "sftp "+formatOp(ev.Op))
		}
		if err != nil {
			return fmt.Errorf("record: export: %w", err)
		}
	}
	// Whatever is still kept back will never be completed.
	if err := emit(last, "o", out.flush()); err != nil {
		return fmt.Errorf("record: export: %w", err)
	}
	if errors.Is(rerr, ErrIncomplete) {
		cw.event(last, "m", MarkerIncomplete)
	}
	if err := cw.w.Flush(); err != nil {
		return fmt.Errorf("record: export: %w", err)
	}
	if rerr == io.EOF {
		return nil
	}
	return rerr
}

func userAtHost(m Meta) string {
	switch {
	case m.Login != "" && m.Host != "":
		return m.Login + "@" + m.Host
	default:
		return m.Host
	}
}

func formatOp(op map[string]string) string {
	keys := make([]string, 0, len(op))
	for k := range op {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + strconv.Quote(op[k]))
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// attribution is one line of ExportAttribution.
type attribution struct {
	T      json.Number `json:"t"`
	Person string      `json:"person"`
	Bytes  int         `json:"bytes"`
	Hidden bool        `json:"hidden,omitempty"`
	// Sealed is the number of keystrokes sealed (Bytes is then their
	// length in bytes).
	Sealed int64 `json:"sealed,omitempty"`
}

// ExportAttribution writes who typed what, as JSON lines
// {"t":1.5,"person":"bob","bytes":3} (one per input event, t in seconds as
// in the asciicast export; "hidden":true for input sealed at a secret
// prompt, with "sealed" keystrokes, or hidden in older recordings). It is the machine-readable companion of the "input: <person>"
// markers.
func ExportAttribution(r *Reader, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	var rerr error
	for {
		ev, err := r.Next()
		if err != nil {
			rerr = err
			break
		}
		var a attribution
		switch ev.Type {
		case EvInput:
			a = attribution{T: json.Number(castTime(ev.T)), Person: ev.Person, Bytes: len(ev.Data)}
		case EvHidden:
			a = attribution{T: json.Number(castTime(ev.T)), Person: ev.Person, Hidden: true}
		case EvSealed:
			a = attribution{T: json.Number(castTime(ev.T)), Person: ev.Person, Bytes: int(ev.Sealed.Bytes), Hidden: true, Sealed: ev.Sealed.Keystrokes}
		default:
			continue
		}
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("record: export attribution: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("record: export attribution: %w", err)
	}
	if rerr == io.EOF {
		return nil
	}
	return rerr
}
