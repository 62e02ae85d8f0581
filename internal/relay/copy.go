package relay

import (
	"io"
	"sync"
	"sync/atomic"
)

// Copy buffers: a read of up to copyBufSize bytes, and at most copyDepth
// of them between two stages. Larger reads take more of what the channel
// has buffered at once, so the gateway sends one window adjustment per
// read instead of one per SSH packet; the depth lets the stages overlap.
const (
	copyBufSize = 128 << 10
	copyDepth   = 3
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyTap copies src to dst and shows every byte to tap first: a byte
// reaches dst only after tap has accepted it, so nothing passes
// unrecorded. With a tap it runs in three stages, so that on a machine
// with a core to spare the read from src (decryption, in x/crypto's
// reader), the recording's SHA-256 and the encryption towards dst run at
// the same time:
//
//	reader: read src → raw    tapper: raw → tap → queue    writer: queue → dst → count
//
// Without a tap the reader feeds the writer directly.
//
// copyTap returns when the writer is done: src ended (all read bytes
// written), tap failed (what it accepted is written), or dst failed. In
// the last case the reader may still be blocked in src.Read; it ends when
// src is closed, which the relay does once the session is over, and no
// stage taps or writes after the writer has stopped.
func copyTap(dst io.Writer, src io.Reader, tap io.Writer, n *atomic.Int64) {
	queue := make(chan *[]byte, copyDepth)
	stopped := make(chan struct{}) // closed when the writer ends
	if tap != nil {
		raw := make(chan *[]byte, copyDepth)
		go readStage(src, raw, stopped)
		go tapStage(raw, tap, queue, stopped)
	} else {
		go readStage(src, queue, stopped)
	}
	defer close(stopped)
	for bp := range queue {
		k, err := dst.Write(*bp)
		n.Add(int64(k))
		putBuf(bp)
		if err != nil {
			return
		}
	}
}

// readStage reads src into pooled buffers. It owns out and closes it when
// it ends.
func readStage(src io.Reader, out chan<- *[]byte, stopped <-chan struct{}) {
	defer close(out)
	for {
		bp := copyBufs.Get().(*[]byte)
		k, err := src.Read((*bp)[:copyBufSize])
		if k > 0 && !pass(bp, k, nil, out, stopped) {
			return
		}
		if k == 0 {
			putBuf(bp)
		}
		if err != nil {
			return
		}
	}
}

// tapStage shows each buffer to tap and passes it on. It owns out; when
// it stops early it gives back what the reader still sends.
func tapStage(in <-chan *[]byte, tap io.Writer, out chan<- *[]byte, stopped <-chan struct{}) {
	defer close(out)
	for bp := range in {
		if !pass(bp, len(*bp), tap, out, stopped) {
			for bp := range in {
				putBuf(bp)
			}
			return
		}
	}
}

// pass shows the k bytes in bp to tap, if any, and sends them on. It
// reports false, having given bp back, when the copy must end.
func pass(bp *[]byte, k int, tap io.Writer, out chan<- *[]byte, stopped <-chan struct{}) bool {
	select {
	case <-stopped:
		putBuf(bp)
		return false
	default:
	}
	*bp = (*bp)[:k]
	if tap != nil {
		if _, err := tap.Write(*bp); err != nil {
			putBuf(bp)
			return false
		}
	}
	select {
	case out <- bp:
		return true
	case <-stopped:
		putBuf(bp)
		return false
	}
}

func putBuf(bp *[]byte) {
	*bp = (*bp)[:copyBufSize]
	copyBufs.Put(bp)
}
