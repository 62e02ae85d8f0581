//go:build linux

package netutil

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func quickAckState(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func setDelayedAck(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, _ := c.SyscallConn()
	_ = rc.Control(func(fd uintptr) {
		if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0); err != nil {
			t.Fatal(err)
		}
	})
	if quickAckState(t, c) != 0 {
		t.Fatal("could not put the socket into delayed-ack mode")
	}
}

func TestQuickAckAfterSmallRead(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        int
		interactive bool
		quick       int
	}{
		{"one byte", 1, false, 1},
		{"kexinit-sized", 1200, false, 1},
		{"just below the limit", quickAckBelow - 1, false, 1},
		{"bulk read", 16 << 10, false, 0},
		// The peer sends with Nagle's algorithm off: a keystroke's read
		// pays no system call.
		{"one byte, interactive", 1, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			q := QuickAck(server)
			if tc.interactive {
				q.Interactive()
			}
			setDelayedAck(t, server)
			msg := make([]byte, tc.size)
			if _, err := client.Write(msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, tc.size)
			if _, err := io.ReadFull(q, buf); err != nil {
				t.Fatal(err)
			}
			// A bulk read may arrive in pieces; only a single full read
			// proves that large reads leave the mode alone.
			if tc.quick == 0 && quickAckState(t, server) != 0 {
				t.Skip("the kernel delivered the bulk message in small reads")
			}
			if got := quickAckState(t, server); got != tc.quick {
				t.Errorf("TCP_QUICKACK after a %d-byte read (interactive %v) = %d, want %d", tc.size, tc.interactive, got, tc.quick)
			}
		})
	}
}

func TestInteractiveOnNil(t *testing.T) {
	var q *QuickAckConn
	q.Interactive() // a connection without immediate acknowledgements: nothing to do
}

func TestQuickAckPassesDataThrough(t *testing.T) {
	a, b := net.Pipe() // not TCP: QuickAck must only pass data through
	defer a.Close()
	defer b.Close()
	q := QuickAck(b)
	go func() { _, _ = a.Write([]byte("hello")) }()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(q, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
}
