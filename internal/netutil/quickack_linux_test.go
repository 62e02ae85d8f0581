//go:build linux

package netutil

import (
	"bytes"
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

// countingConn counts the reads of the connection under a QuickAckConn.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// x/crypto/ssh reads the version line a byte at a time: one read of the
// connection serves it, and the bytes after it come next, in order.
func TestReadAheadServesTheVersionLine(t *testing.T) {
	client, server := tcpPair(t)
	cc := &countingConn{Conn: server}
	q := QuickAck(cc)
	line := "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
	after := bytes.Repeat([]byte{0x14}, 300) // the start of a KEXINIT, and more
	if _, err := client.Write(append([]byte(line), after...)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var b [1]byte
	for !bytes.HasSuffix(got, []byte("\n")) {
		if _, err := io.ReadFull(q, b[:]); err != nil {
			t.Fatal(err)
		}
		got = append(got, b[0])
	}
	if string(got) != line {
		t.Fatalf("line %q, want %q", got, line)
	}
	if cc.reads != 1 {
		t.Errorf("%d reads of the connection for the version line, want 1", cc.reads)
	}
	rest := make([]byte, len(after))
	if _, err := io.ReadFull(q, rest); err != nil || !bytes.Equal(rest, after) {
		t.Fatalf("the bytes after the line: %v, equal %v", err, bytes.Equal(rest, after))
	}
	if q.ahead != nil {
		t.Errorf("%d bytes still held after everything was read", len(q.ahead))
	}
}

// Whatever the sizes of the reads, the bytes come out as they went in,
// and the end of the stream after them.
func TestReadAheadKeepsTheStream(t *testing.T) {
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, sizes := range [][]int{
		{1}, {1, 4096}, {16, 3}, {255, 256, 1}, {0, 1, 300, 2}, {readAhead - 1, 7, 5000},
	} {
		a, b := net.Pipe()
		go func() { _, _ = a.Write(data); a.Close() }()
		q := QuickAck(b)
		var got []byte
		var err error
		for i := 0; err == nil; i++ {
			buf := make([]byte, sizes[i%len(sizes)])
			var n int
			n, err = q.Read(buf)
			got = append(got, buf[:n]...)
			if i > 20000 {
				t.Fatalf("sizes %v: no end", sizes)
			}
		}
		b.Close()
		if err != io.EOF || !bytes.Equal(got, data) {
			t.Errorf("sizes %v: %d of %d bytes, equal %v, then %v (want io.EOF)", sizes, len(got), len(data), bytes.Equal(got, data), err)
		}
	}
}

// FuzzReadAhead: reads of any sizes give the bytes as they were sent, in
// order, then the end of the stream.
func FuzzReadAhead(f *testing.F) {
	f.Add([]byte("SSH-2.0-x\r\n\x00\x00\x04\x14"), []byte{1, 1, 255})
	f.Add(bytes.Repeat([]byte{9}, 3000), []byte{0, 200, 17})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		if len(sizes) == 0 {
			sizes = []byte{1}
		}
		a, b := net.Pipe()
		defer b.Close()
		go func() { _, _ = a.Write(data); a.Close() }()
		q := QuickAck(b)
		var got []byte
		var err error
		for i := 0; err == nil; i++ {
			// Sizes are taken times 3 so that some reach past readAhead.
			buf := make([]byte, max(1, 3*int(sizes[i%len(sizes)])))
			var n int
			n, err = q.Read(buf)
			got = append(got, buf[:n]...)
			if i > 10*len(data)+100 {
				t.Fatalf("no end after %d reads", i)
			}
		}
		if err != io.EOF || !bytes.Equal(got, data) {
			t.Fatalf("%d of %d bytes, equal %v, then %v (want io.EOF)", len(got), len(data), bytes.Equal(got, data), err)
		}
	})
}
