package relay

import (
	"io"
	"sync"
	"sync/atomic"
)

// Copy buffers: a read of up to copyBufSize bytes, and at most copyDepth
// of them between the reading and the writing stage. Larger reads take
// more of what the channel has buffered at once, so the gateway sends one
// window adjustment per read instead of one per SSH packet; the depth lets
// the recording's hash of one buffer overlap the encryption and sending of
// the one before.
const (
	copyBufSize = 128 << 10
	copyDepth   = 3
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyTap copies src to dst and shows every byte to tap first: a byte
// reaches dst only after tap has accepted it, so nothing passes
// unrecorded. It runs in two stages, so that on a machine with a core to
// spare the recording's SHA-256 and the encryption towards dst run at the
// same time:
//
//	reader: read src → tap → queue      writer: queue → dst → count
//
// copyTap returns when the writer is done: src ended (all read bytes
// written), tap failed (what it accepted is written), or dst failed. In
// the last case the reader may still be blocked in src.Read; it ends when
// src is closed, which the relay does once the session is over, and it
// neither taps nor writes after the writer has stopped.
func copyTap(dst io.Writer, src io.Reader, tap io.Writer, n *atomic.Int64) {
	queue := make(chan *[]byte, copyDepth)
	stopped := make(chan struct{}) // closed when the writer ends
	go readStage(src, tap, queue, stopped)
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

// readStage is copyTap's reader. It owns queue and closes it when it ends.
func readStage(src io.Reader, tap io.Writer, queue chan<- *[]byte, stopped <-chan struct{}) {
	defer close(queue)
	for {
		bp := copyBufs.Get().(*[]byte)
		k, err := src.Read((*bp)[:copyBufSize])
		if k > 0 && !forward(bp, k, tap, queue, stopped) {
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

// forward taps the k bytes in bp and queues them for the writer. It
// reports false, having given bp back, when the copy must end.
func forward(bp *[]byte, k int, tap io.Writer, queue chan<- *[]byte, stopped <-chan struct{}) bool {
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
	case queue <- bp:
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
