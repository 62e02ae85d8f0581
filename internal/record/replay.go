package record

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem.dev/tandem/internal/safetext"
)

// ReplayOptions control Replay.
type ReplayOptions struct {
	Speed   float64       // playback speed factor; default 1
	IdleCap time.Duration // longest pause shown; default 2s
	// SkipTo, if set, plays everything before the first marker containing
	// it without delay, then continues in real time.
	SkipTo string
	// Sleep waits; default time.Sleep (tests pass a fake).
	Sleep func(time.Duration)
}

// Replay writes a recording's terminal output (and exec output) to out
// with its original timing; markers (joins, pauses, ends) and sealed
// keystrokes ("alice: 9 keystrokes sealed (secret prompt)") appear as
// notice lines. A damaged or incomplete recording is played up to the
// damage, then the reason is shown. out is an auditor's terminal: the
// output passes through termFilter, which drops what the recorded person
// could aim at that terminal (clipboard writes, titles, reports into the
// auditor's input, control strings); ExportAsciicast keeps every byte.
func Replay(r *Reader, out io.Writer, o ReplayOptions) error {
	if o.Speed <= 0 {
		o.Speed = 1
	}
	if o.IdleCap <= 0 {
		o.IdleCap = 2 * time.Second
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	skipping := o.SkipTo != ""
	var last time.Duration
	var term termFilter
	var buf []byte
	for {
		ev, err := r.Next()
		if err != nil {
			if _, werr := out.Write(term.flush(buf[:0])); werr != nil {
				return werr
			}
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(out, "\r\n[tandem] %s\r\n", safetext.Line(err.Error()))
			}
			return nil
		}
		if skipping && ev.Type == EvMarker && strings.Contains(ev.Text, o.SkipTo) {
			skipping = false
		}
		if wait := min(time.Duration(float64(ev.T-last)/o.Speed), o.IdleCap); wait > 0 && !skipping {
			o.Sleep(wait)
		}
		last = ev.T
		switch ev.Type {
		case EvOutput, EvStream:
			buf = term.filter(buf[:0], ev.Data)
			if _, err := out.Write(buf); err != nil {
				return err
			}
		case EvMarker:
			// Markers carry person ids and reasons people typed.
			if _, err := fmt.Fprintf(out, "\r\n[tandem] %s\r\n", safetext.Line(ev.Text)); err != nil {
				return err
			}
		case EvSealed:
			if _, err := fmt.Fprintf(out, "\r\n[tandem] %s: %s\r\n", safetext.Line(ev.Person), SealedMarker(ev.Sealed.Keystrokes)); err != nil {
				return err
			}
		case EvSealedEnd:
			if ev.Sealed.Flagged {
				if _, err := fmt.Fprintf(out, "\r\n[tandem] %s\r\n", SealedNote(ev.Sealed)); err != nil {
					return err
				}
			}
		}
	}
}
