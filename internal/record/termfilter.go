package record

import (
	"bytes"
	"unicode/utf8"
)

// termFilter passes a recording's terminal output to an auditor's terminal
// (Replay) without what the recorded person could use against that
// terminal. Output is what the target printed, and a person on the target
// chooses it: replayed as it came, it could write the auditor's clipboard
// (OSC 52), set the window title, make the terminal answer into the
// auditor's own input (device, cursor and title reports, ENQ, DECRQM,
// XTGETTCAP), switch on the printer, lock the keyboard, or reach the
// terminal's extensions (DCS, APC, PM, SOS).
//
// What passes is what full-screen programs and prompts use to draw:
// printable text and valid UTF-8, the C0 controls BEL, BS, HT, LF, VT, FF,
// CR, SO, SI, two-byte escapes and charset designations (ESC 7, ESC M,
// ESC ( B …) but DECID, and CSI sequences that move the cursor, erase,
// insert, delete, scroll, set colours (SGR) and set private modes (the
// alternate screen, cursor visibility, bracketed paste). Everything else
// is dropped whole: every control string (OSC, DCS, APC, PM, SOS), other
// CSI sequences, other C0 controls, DEL, and the C1 controls, both as
// characters (U+0080–U+009F) and as bytes that are not UTF-8, which
// become U+FFFD. A sequence cut across events is judged whole: nothing of
// it is written before its end is seen.
//
// A control string is swallowed up to BEL, ST, CAN or SUB, as a terminal
// does, but at most maxControlString bytes: an unended one cannot hide
// the rest of the session from the auditor.
type termFilter struct {
	state   termState
	seq     []byte // the escape or CSI sequence being read
	u       []byte // an incomplete UTF-8 character
	swallow int    // bytes of the control string dropped so far
	c2      bool   // in a control string, the last byte was 0xC2 (U+009C is ST)
}

type termState uint8

const (
	tsGround    termState = iota
	tsEsc                 // after ESC
	tsEscInter            // ESC and intermediates (charset designation …)
	tsCSI                 // ESC [
	tsString              // inside OSC, DCS, APC, PM or SOS
	tsStringEsc           // ESC inside a control string
)

const (
	// maxControlString bounds how much of an unended control string is
	// swallowed.
	maxControlString = 4 << 10
	// maxSeq bounds an escape or CSI sequence; a longer one is dropped
	// and its bytes shown as text.
	maxSeq = 64
)

// csiFinals are the CSI sequences that pass (no intermediates, no
// private prefix but those in csiPrivate): cursor movement, erase,
// insert and delete, scrolling, tabs, repeat, SGR, the scroll region,
// cursor save and restore.
const csiFinals = "@ABCDEFGHIJKLMPSTXZ`abdefgmrsu"

// filter appends what of p may reach the terminal to dst.
func (f *termFilter) filter(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		b := p[i]
		switch f.state {
		case tsGround:
			dst = f.ground(dst, b)
		case tsEsc:
			dst = f.esc(dst, b)
		case tsEscInter:
			switch {
			case b >= 0x20 && b <= 0x2f && len(f.seq) < maxSeq:
				f.seq = append(f.seq, b)
			case b >= 0x30 && b <= 0x7e:
				dst = append(dst, f.seq...)
				dst = append(dst, b)
				f.state = tsGround
			default:
				f.state = tsGround
				continue // dropped; the byte is read again as text
			}
		case tsCSI:
			switch {
			case b >= 0x20 && b <= 0x3f && len(f.seq) < maxSeq:
				f.seq = append(f.seq, b)
			case b >= 0x40 && b <= 0x7e:
				if csiAllowed(f.seq[2:], b) {
					dst = append(dst, f.seq...)
					dst = append(dst, b)
				}
				f.state = tsGround
			default:
				f.state = tsGround
				continue
			}
		case tsString:
			f.swallow++
			switch {
			case b == 0x07 || b == 0x18 || b == 0x1a || (f.c2 && b == 0x9c):
				f.state = tsGround
			case b == 0x1b:
				f.state = tsStringEsc
			case f.swallow > maxControlString:
				f.state = tsGround
			}
			f.c2 = b == 0xc2
		case tsStringEsc:
			if b == '\\' {
				f.state = tsGround
			} else {
				// ESC ends the string and starts a new sequence.
				f.seq = append(f.seq[:0], 0x1b)
				f.state = tsEsc
				continue
			}
		}
		i++
	}
	return dst
}

func (f *termFilter) ground(dst []byte, b byte) []byte {
	if len(f.u) > 0 {
		if b >= 0x80 && b <= 0xbf {
			f.u = append(f.u, b)
			if !utf8.FullRune(f.u) {
				return dst
			}
			r, n := utf8.DecodeRune(f.u)
			switch {
			case r == utf8.RuneError && n <= 1:
				dst = append(dst, "\uFFFD"...)
			case r >= 0x80 && r <= 0x9f: // C1 control
			default:
				dst = append(dst, f.u...)
			}
			f.u = f.u[:0]
			return dst
		}
		dst = append(dst, "\uFFFD"...) // cut short by b
		f.u = f.u[:0]
	}
	switch {
	case b == 0x1b:
		f.seq = append(f.seq[:0], b)
		f.state = tsEsc
	case b >= 0x07 && b <= 0x0f || b >= 0x20 && b < 0x7f: // BEL … SI, printable ASCII
		dst = append(dst, b)
	case b >= 0xc2 && b <= 0xf4:
		f.u = append(f.u, b)
	case b >= 0x80:
		dst = append(dst, "\uFFFD"...)
	}
	return dst
}

func (f *termFilter) esc(dst []byte, b byte) []byte {
	switch {
	case b == '[':
		f.seq = append(f.seq, b)
		f.state = tsCSI
	case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
		f.state, f.swallow, f.c2 = tsString, 0, false
	case b >= 0x20 && b <= 0x2f:
		f.seq = append(f.seq, b)
		f.state = tsEscInter
	case b == 'Z': // DECID: the terminal answers
		f.state = tsGround
	case b >= 0x30 && b <= 0x7e:
		dst = append(dst, 0x1b, b)
		f.state = tsGround
	default:
		// A control or a byte above ASCII ends the sequence, dropped;
		// the byte is text again.
		f.state = tsGround
		dst = f.ground(dst, b)
	}
	return dst
}

// csiAllowed says whether CSI params final passes.
func csiAllowed(params []byte, final byte) bool {
	if bytes.ContainsFunc(params, func(r rune) bool { return r >= 0x20 && r <= 0x2f }) {
		return false // intermediates: DECRQM, DECSCUSR, DECSTR …
	}
	if len(params) > 0 && params[0] >= '<' && params[0] <= '?' {
		// Private parameters: only DEC private modes (alternate screen,
		// cursor, bracketed paste …) and selective erase.
		return params[0] == '?' && bytes.IndexByte([]byte("hlJK"), final) >= 0
	}
	switch final {
	case 'h', 'l':
		// ANSI modes: insert mode only (KAM locks the keyboard, SRM
		// turns on local echo).
		return string(params) == "4"
	}
	return bytes.IndexByte([]byte(csiFinals), final) >= 0
}

// flush ends the output: an incomplete character becomes U+FFFD, an
// unfinished sequence is dropped.
func (f *termFilter) flush(dst []byte) []byte {
	if len(f.u) > 0 {
		dst = append(dst, "\uFFFD"...)
		f.u = f.u[:0]
	}
	f.state = tsGround
	return dst
}
