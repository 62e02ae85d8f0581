package session

// readBuf is a read buffer that is small while a stream is quiet and grows
// while it is busy. An idle session spends its life blocked in Read with
// this buffer held, so its size is paid once per reader per session (at a
// thousand sessions, a 32 KiB buffer per reader is 32 MiB); but a full-sized
// buffer is what keeps bulk output (cat of a large file) at a few reads per
// SSH packet. A read that fills the buffer doubles it, up to max; a read
// that would have fitted the smallest size drops back to it, so that a
// burst (a login banner, a long listing) does not pin the large buffer
// while the session then sits idle at a prompt. Regrowing costs a few
// allocations per burst, which is small next to the burst itself.
type readBuf struct {
	buf      []byte
	min, max int
}

func newReadBuf(min, max int) *readBuf {
	return &readBuf{min: min, max: max}
}

// next returns the buffer to read into.
func (b *readBuf) next() []byte {
	if b.buf == nil {
		b.buf = make([]byte, b.min)
	}
	return b.buf
}

// used tells the buffer how many bytes the last read returned. The bytes
// read must have been consumed (copied) before: the buffer may be replaced.
func (b *readBuf) used(n int) {
	switch {
	case n == len(b.buf) && len(b.buf) < b.max:
		b.buf = make([]byte, min(2*len(b.buf), b.max))
	case n <= b.min && len(b.buf) > b.min:
		b.buf = make([]byte, b.min)
	}
}
