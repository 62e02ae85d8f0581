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
type QuickAckConn struct {
	net.Conn
	interactive atomic.Bool
}

// QuickAck wraps c. On systems without TCP_QUICKACK, or for a connection
// that is not TCP, it only passes reads through.
func QuickAck(c net.Conn) *QuickAckConn {
	q := &QuickAckConn{Conn: c}
	q.ack()
	return q
}

// Read reads from the connection and acknowledges at once after a small
// read.
func (q *QuickAckConn) Read(p []byte) (int, error) {
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
