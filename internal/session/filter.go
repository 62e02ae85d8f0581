package session

// The escape sequence. OpenSSH's client already owns "~." (and "~" after a
// newline generally), so Tandem uses Ctrl-] (0x1d, telnet's escape key),
// which OpenSSH passes through untouched:
//
//	Ctrl-] q        end the session for every participant (an observer: leave it)
//	Ctrl-] ?        show a one-line help to the participant who typed it
//	Ctrl-] Ctrl-]   send one literal Ctrl-] to the target
//	Ctrl-] other    send both bytes unchanged (so programs that use Ctrl-] still get it)
//
// A Ctrl-] typed while input is discarded (the session not live) is
// discarded too when the byte after it makes it input, even if that byte
// comes once the session is live.
const (
	EscapeByte = 0x1d
	EscapeHelp = "Ctrl-] q ends the session for everyone; Ctrl-] Ctrl-] sends a literal Ctrl-]"
	// ObserverEscapeHelp is the help observers see: for them Ctrl-] q
	// leaves, and they type nothing else.
	ObserverEscapeHelp = "Ctrl-] q leaves the session; observers cannot end it for the others"
)

// escapeHelp is the help line for p.
func escapeHelp(p Participant) string {
	if p.Mode == Observer {
		return ObserverEscapeHelp
	}
	return EscapeHelp
}

// Action is what an escape sequence asks for.
type Action int

// The actions of the escape scanner.
const (
	ActNone Action = iota
	ActEnd         // Ctrl-] q
	ActHelp        // Ctrl-] ?
)

// InputFilter scans one participant's keystrokes for the escape sequence.
// It keeps state across reads, so a sequence split over two reads (one byte
// each, as a slow typist produces) is still recognised. The zero value is
// ready to use; it is not safe for concurrent use.
type InputFilter struct {
	pending bool // the previous chunk ended with an unanswered Ctrl-]
	stale   bool // that Ctrl-] was typed while input was discarded (dropHeld)
	ended   bool // Ctrl-] q was seen; everything after it is discarded
}

// dropHeld says that input was being discarded when the held Ctrl-] (the
// chunk ended in one) was typed: should the next byte make it plain input
// (Ctrl-] Ctrl-], Ctrl-] other), it is left out, as every other keystroke
// typed then was. Otherwise a Ctrl-] typed in the waiting room would reach
// the target with the first keystroke after the second person joined.
// Ctrl-] q and Ctrl-] ? still work.
func (f *InputFilter) dropHeld() {
	if f.pending {
		f.stale = true
	}
}

// Filter returns the bytes of p that go on to the target and the first
// action found in p. The returned slice is freshly allocated when it differs
// from p. After ActEnd all further input is discarded. ActHelp is reported
// only once per call even if typed twice; the help text is the same.
func (f *InputFilter) Filter(p []byte) ([]byte, Action) {
	if f.ended {
		return nil, ActNone
	}
	if !f.pending && !containsByte(p, EscapeByte) {
		return p, ActNone
	}
	out := make([]byte, 0, len(p)+1)
	act := ActNone
	for _, b := range p {
		if !f.pending {
			if b == EscapeByte {
				f.pending = true
				continue
			}
			out = append(out, b)
			continue
		}
		stale := f.stale
		f.pending, f.stale = false, false
		switch b {
		case 'q':
			f.ended = true
			return out, ActEnd
		case '?':
			act = ActHelp
		case EscapeByte:
			if !stale {
				out = append(out, EscapeByte)
			}
		default:
			if !stale {
				out = append(out, EscapeByte)
			}
			out = append(out, b)
		}
	}
	return out, act
}

func containsByte(p []byte, c byte) bool {
	for _, b := range p {
		if b == c {
			return true
		}
	}
	return false
}
