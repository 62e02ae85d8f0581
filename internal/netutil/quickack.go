// Package netutil holds small helpers for the gateway's TCP connections.
package netutil

import (
	"net"
	"sync/atomic"
)

// quickAckBelow is the read size under which QuickAckConn acknowledges at
// once. Handshake and control messages (the largest, KEXINIT, is ~1.1 KiB)
// fall under it; the reads of a bulk transfer do not, so they keep the
// kernel's usual acknowledgements and pay no extra system call.
const quickAckBelow = 2048

// QuickAckConn acknowledges small reads at once instead of delaying the
// acknowledgement.
//
// Why: OpenSSH (client and sshd alike) leaves Nagle's algorithm on until a
// session turns interactive, and it writes several small SSH packets in a
// row (KEXINIT, then KEX_ECDH_INIT; NEWKEYS, then SERVICE_REQUEST;
// exit-status, then EOF and CLOSE). Each later packet waits in the
// sender's kernel until the first is acknowledged, and Linux delays an
// acknowledgement by up to 40 ms when it has nothing to send back. Every
// new session then pays two or three such stalls. Acknowledging at once
// removes them; the cost is one setsockopt per small read.
//
// Once the peer sends with Nagle's algorithm off, which OpenSSH does for
// the rest of a connection as soon as a session on it has a terminal, its
// packets no longer wait for ours, and the system call would only lengthen
// every keystroke's round trip (Interactive).
//
// It also reads ahead for very small reads (readAhead). Like a
// bufio.Reader, it is read by one goroutine at a time.
type QuickAckConn struct {
	net.Conn
	interactive atomic.Bool
	ahead       []byte // read ahead and not yet handed out
}

// readAhead is the size of the read a QuickAckConn makes for a read
// smaller than it.
//
// Why: x/crypto/ssh reads the peer's version line (RFC 4253 4.2) one
// byte at a time, straight from the connection: about 40 read system
// calls per connection, and as many setsockopt calls for the immediate
// acknowledgement, twice per session (the client's connection and the
// target's). One read of up to readAhead bytes serves the whole line, and
// what follows it waits here for the next read. The line is at most 255
// bytes; anything that reads in larger pieces (x/crypto's own 4 KiB
// buffered reader once the version is in, a bulk transfer) reads the
// connection directly, after what is held here.
const readAhead = 256

// QuickAck wraps c. On systems without TCP_QUICKACK, or for a connection
// that is not TCP, it only passes reads through.
func QuickAck(c net.Conn) *QuickAckConn {
	q := &QuickAckConn{Conn: c}
	q.ack()
	return q
}

// Read reads from the connection and acknowledges at once after a small
// read. A read smaller than readAhead reads up to readAhead bytes and
// keeps what p has no room for, for the reads that follow.
func (q *QuickAckConn) Read(p []byte) (int, error) {
	if len(q.ahead) > 0 {
		n := copy(p, q.ahead)
		q.ahead = q.ahead[n:]
		if len(q.ahead) == 0 {
			q.ahead = nil // the buffer goes with the handshake
		}
		return n, nil
	}
	if len(p) == 0 || len(p) >= readAhead {
		return q.read(p)
	}
	buf := make([]byte, readAhead)
	m, err := q.read(buf)
	n := copy(p, buf[:m])
	if n < m {
		q.ahead = buf[n:m]
		err = nil // reported by the next read of the connection
	}
	return n, err
}

func (q *QuickAckConn) read(p []byte) (int, error) {
	n, err := q.Conn.Read(p)
	if n > 0 && n < quickAckBelow && !q.interactive.Load() {
		q.ack()
	}
	return n, err
}

// Interactive stops the immediate acknowledgements for the rest of the
// connection: the peer has turned Nagle's algorithm off. Safe on nil.
func (q *QuickAckConn) Interactive() {
	if q != nil {
		q.interactive.Store(true)
	}
}

func (q *QuickAckConn) ack() {
	if tc, ok := q.Conn.(*net.TCPConn); ok {
		setQuickAck(tc)
	}
}
