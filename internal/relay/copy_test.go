package relay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chunkyReader returns its data in reads of varying size, like a channel.
type chunkyReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *chunkyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(3*copyBufSize/2))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// orderedTap records what it saw, and can fail after a number of bytes.
type orderedTap struct {
	mu     sync.Mutex
	seen   bytes.Buffer
	failAt int // fail the write that would pass this many bytes; 0: never
}

func (t *orderedTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failAt > 0 && t.seen.Len()+len(p) > t.failAt {
		return 0, errors.New("recording failed")
	}
	return t.seen.Write(p)
}

func (t *orderedTap) len() int { t.mu.Lock(); defer t.mu.Unlock(); return t.seen.Len() }

// checkedDst fails the test if a byte arrives before the tap saw it.
type checkedDst struct {
	t   *testing.T
	tap *orderedTap
	got bytes.Buffer
	err error // returned by every write once set
}

func (d *checkedDst) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if tapped := d.tap.len(); d.got.Len()+len(p) > tapped {
		d.t.Errorf("dst got byte %d before the tap (tap has %d)", d.got.Len()+len(p), tapped)
	}
	return d.got.Write(p)
}

func TestCopyTapDeliversEverythingInOrder(t *testing.T) {
	for _, size := range []int{0, 1, copyBufSize - 1, copyBufSize, 5*copyBufSize + 17, 3 << 20} {
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		tap := &orderedTap{}
		dst := &checkedDst{t: t, tap: tap}
		var n atomic.Int64
		copyTap(dst, &chunkyReader{data: data, rng: rng}, tap, &n)
		if !bytes.Equal(dst.got.Bytes(), data) {
			t.Errorf("size %d: dst got %d bytes, not the source's %d in order", size, dst.got.Len(), size)
		}
		if !bytes.Equal(tap.seen.Bytes(), data) {
			t.Errorf("size %d: tap saw %d bytes, not the source's in order", size, tap.seen.Len())
		}
		if n.Load() != int64(size) {
			t.Errorf("size %d: counted %d", size, n.Load())
		}
	}
}

func TestCopyTapStopsWhenTheTapFails(t *testing.T) {
	for _, failAt := range []int{1, copyBufSize, 2*copyBufSize + 5} {
		data := bytes.Repeat([]byte("x"), 8*copyBufSize)
		tap := &orderedTap{failAt: failAt}
		dst := &checkedDst{t: t, tap: tap}
		var n atomic.Int64
		copyTap(dst, &chunkyReader{data: data, rng: rand.New(rand.NewPCG(2, uint64(failAt)))}, tap, &n)
		if dst.got.Len() > failAt || dst.got.Len() != tap.len() {
			t.Errorf("tap failing at %d: dst got %d bytes, tap accepted %d", failAt, dst.got.Len(), tap.len())
		}
		if n.Load() != int64(dst.got.Len()) {
			t.Errorf("counted %d, delivered %d", n.Load(), dst.got.Len())
		}
	}
}

// blockingSource hands out one read, then blocks until closed.
type blockingSource struct {
	once   atomic.Bool
	closed chan struct{}
	ended  chan struct{} // closed when a Read returns after close
}

func (s *blockingSource) Read(p []byte) (int, error) {
	if s.once.CompareAndSwap(false, true) {
		return copy(p, "first"), nil
	}
	<-s.closed
	close(s.ended)
	return 0, io.ErrClosedPipe
}

func TestCopyTapReturnsWhenDstFailsWhileSourceBlocks(t *testing.T) {
	src := &blockingSource{closed: make(chan struct{}), ended: make(chan struct{})}
	tap := &orderedTap{}
	dst := &checkedDst{t: t, tap: tap, err: errors.New("client gone")}
	var n atomic.Int64
	done := make(chan struct{})
	go func() { copyTap(dst, src, tap, &n); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("copyTap still running after its destination failed")
	}
	// Closing the source, as the relay does at the end, ends the reader.
	close(src.closed)
	select {
	case <-src.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader stage did not end after its source closed")
	}
	if n.Load() != 0 {
		t.Errorf("counted %d bytes that never arrived", n.Load())
	}
}

func TestCopyWithoutTap(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100000)
	var dst bytes.Buffer
	var n atomic.Int64
	copyTap(&dst, &chunkyReader{data: data, rng: rand.New(rand.NewPCG(3, 4))}, nil, &n)
	if !bytes.Equal(dst.Bytes(), data) || n.Load() != int64(len(data)) {
		t.Fatalf("copied %d bytes (counted %d), want the %d in order", dst.Len(), n.Load(), len(data))
	}
}
