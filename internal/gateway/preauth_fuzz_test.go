package gateway

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// deadlineConn is a connection of which kexConn.scan only sets the
// deadline.
type deadlineConn struct {
	net.Conn
	set int
}

func (d *deadlineConn) SetDeadline(time.Time) error { d.set++; return nil }

// scanned feeds stream to a fresh kexConn's scan in pieces of the given
// sizes (cycled; 0 counts as 1; none: one piece) and returns the
// connection.
func scanned(stream []byte, sizes []byte) (*kexConn, *deadlineConn) {
	dc := &deadlineConn{}
	k := newKexConn(dc, time.Now().Add(time.Hour), nil)
	for i, j := 0, 0; i < len(stream); j++ {
		n := len(stream)
		if len(sizes) > 0 {
			n = max(1, int(sizes[j%len(sizes)]))
		}
		n = min(n, len(stream)-i)
		k.scan(stream[i : i+n])
		i += n
	}
	return k, dc
}

// FuzzKexScan: the scan of a stranger's first bytes never panics, ends in
// the same stage however the bytes are split across reads, extends the
// deadline exactly once and only when it saw a version line and a whole
// KEXINIT packet, and keeps at most one line of 255 bytes.
func FuzzKexScan(f *testing.F) {
	body := append([]byte{20}, bytes.Repeat([]byte{7}, 40)...)
	pkt := append([]byte{0, 0, 0, byte(1 + len(body)), 4}, body...)
	f.Add(append([]byte("SSH-2.0-Test\r\n"), pkt...), []byte{1})
	f.Add(append([]byte("junk\r\nSSH-2.0-Test\n"), pkt...), []byte{3, 7})
	f.Add([]byte("SSH-2.0-x\n\x00\x00\x00\x05\x04\x15abcd"), []byte{2})
	f.Add([]byte(strings.Repeat("x\n", 40)), []byte{5})
	f.Add(append([]byte("SSH-2.0-x\n"), 0xff, 0xff, 0xff, 0xff, 4, 20), []byte{1})
	f.Add(append([]byte(strings.Repeat("y", 300)+"\n"), pkt...), []byte{255})
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		whole, wdc := scanned(stream, nil)
		split, sdc := scanned(stream, sizes)
		if whole.stage != split.stage || whole.kexDone.Load() != split.kexDone.Load() {
			t.Fatalf("stage %d (kex done %v) in one piece, %d (%v) split by %v",
				whole.stage, whole.kexDone.Load(), split.stage, split.kexDone.Load(), sizes)
		}
		for _, c := range []struct {
			k  *kexConn
			dc *deadlineConn
		}{{whole, wdc}, {split, sdc}} {
			done := c.k.kexDone.Load()
			if done != (c.k.stage == 3) || (done && c.dc.set != 1) || (!done && c.dc.set != 0) {
				t.Fatalf("stage %d, kex done %v, deadline set %d times", c.k.stage, done, c.dc.set)
			}
			if done && !bytes.Contains(stream, []byte("SSH-")) {
				t.Fatalf("kex done without a version line in %q", stream)
			}
			if len(c.k.line) > 255 {
				t.Fatalf("holds a line of %d bytes", len(c.k.line))
			}
		}
	})
}

// FuzzParseUser: the user-name route splits at its last '%' only, the
// parts put back together give the name, and the host never holds a '%';
// routeTooLong refuses exactly the routes with a login or host longer
// than a system has.
func FuzzParseUser(f *testing.F) {
	for _, s := range []string{"root%db1", "alice", "a%b%c", "%", "root%", "%host", "",
		strings.Repeat("l", 256) + "%db1", "root%" + strings.Repeat("h", 254), strings.Repeat("l", 255) + "%" + strings.Repeat("h", 253)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		login, host, routed := parseUser(user)
		// A route that passes the length check names no login or host
		// longer than a system has; a plain name is never refused.
		if msg := routeTooLong(user, false); (msg == "") != (len(login) <= maxRouteLogin && len(host) <= maxRouteHost) {
			t.Fatalf("%q (login %d, host %d bytes): routeTooLong %q", user, len(login), len(host), msg)
		}
		if routeTooLong(user, true) != "" && len(user) <= maxRouteLogin {
			t.Fatalf("%q refused as a jump's login", user)
		}
		if routed != strings.Contains(user, "%") {
			t.Fatalf("%q: routed %v", user, routed)
		}
		if !routed {
			if login != "" || host != "" {
				t.Fatalf("%q: not routed but login %q, host %q", user, login, host)
			}
			return
		}
		if login+"%"+host != user || strings.Contains(host, "%") {
			t.Fatalf("%q split into %q and %q", user, login, host)
		}
	})
}
