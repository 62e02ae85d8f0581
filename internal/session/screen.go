package session

import "bytes"

// screenTail keeps the most recent target output so that a late joiner sees
// the current screen instead of a blank one. It is a byte tail, not a
// terminal emulator: it keeps at most limit bytes and forgets everything
// before the last clear-screen sequence (ESC [ 2 J or ESC c), which is where
// most redraws start. On replay the joiner's screen is cleared first and, if
// the tail was cut, it starts at the first line break inside it so that the
// replay does not begin in the middle of a line or an escape sequence.
// Full-screen programs (editors, top) look right again at their next redraw
// (Ctrl-L by the owner forces one).
type screenTail struct {
	limit int
	buf   []byte
	cut   bool // bytes before buf[0] were dropped for the limit
}

var clearSeqs = [][]byte{[]byte("\x1b[2J"), []byte("\x1bc")}

const clearScreen = "\x1b[H\x1b[2J"

func (s *screenTail) add(p []byte) {
	if s.limit <= 0 {
		return
	}
	old := len(s.buf)
	s.buf = append(s.buf, p...)
	// A clear sequence may straddle the previous chunk's end.
	from := max(old-3, 0)
	last := -1
	for _, seq := range clearSeqs {
		if i := bytes.LastIndex(s.buf[from:], seq); i >= 0 && from+i > last {
			last = from + i
		}
	}
	if last >= 0 {
		s.buf = s.buf[last:]
		s.cut = false
	}
	if len(s.buf) > s.limit {
		s.buf = s.buf[len(s.buf)-s.limit:]
		s.cut = true
	}
	// Re-base now and then so the backing array does not grow without
	// bound: at most twice the limit stays allocated per session, and each
	// copy (at most limit bytes) is paid for by at least limit bytes added.
	if cap(s.buf) > 2*s.limit+len(p) {
		s.buf = append([]byte(nil), s.buf...)
	}
}

// replay is what a late joiner is sent: clear screen, then the tail.
func (s *screenTail) replay() []byte {
	tail := s.buf
	if s.cut {
		if i := bytes.IndexByte(tail, '\n'); i >= 0 {
			tail = tail[i+1:]
		}
	}
	out := make([]byte, 0, len(clearScreen)+len(tail))
	out = append(out, clearScreen...)
	return append(out, tail...)
}
