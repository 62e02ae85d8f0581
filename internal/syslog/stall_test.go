package syslog

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// stallServer completes the TLS handshake and then never reads: a
// collector whose process hangs, or whose queue is full.
func stallServer(t *testing.T, conf *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// TestShipStalledCollector: a collector that accepts and never reads
// holds back neither the audit log nor the shipper. Appends keep their
// speed, the write's deadline ends the connection, and what the socket
// buffers could not take is not counted as delivered.
func TestShipStalledCollector(t *testing.T) {
	f := newFixture(t)
	f.opts.Config.Collectors[0].Addr = stallServer(t, f.srv.conf)
	f.opts.Config.Timeout.Duration = 500 * time.Millisecond
	s := run(t, f.opts)
	timedOut := func() bool { return strings.Contains(s.Status()[0].LastErr, "timeout") }
	// Until the socket buffers are full and a write waits past its
	// deadline; how much they take depends on the kernel.
	for i := 0; !timedOut(); i++ {
		if i == 50000 {
			t.Fatalf("the write to a stalled collector never timed out: %+v", s.Status())
		}
		t0 := time.Now()
		f.append(t, 1)
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("an append took %v with a stalled collector", d)
		}
	}
	if st := s.Status()[0]; st.Depth == 0 {
		t.Fatalf("every record counted as delivered to a collector that read nothing: %+v", st)
	}
}

// TestSettleNothingOnceClosed: a batch counts as delivered only when the
// connection stayed up for settle after it. When the collector closed
// the connection and the shipper has not yet looked (it was busy sending
// a backlog, or the ticker fired with the close), nothing settles.
func TestSettleNothingOnceClosed(t *testing.T) {
	f := newFixture(t)
	f.append(t, 5)
	s, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cols[0]
	broken := make(chan error, 1)
	broken <- io.EOF
	pending := []inflight{{cur: cursor{Segment: 1, Next: audit.Position{Index: 5}}, at: time.Now().Add(-time.Hour)}}
	if _, err := c.settle(pending, broken); err == nil {
		t.Fatal("settled on a connection the collector had closed")
	}
	if cur := c.delivered(); cur.Next.Index != 0 {
		t.Fatalf("delivered %+v", cur)
	}
	if _, err := os.Stat(c.path); !os.IsNotExist(err) {
		t.Fatalf("cursor written: %v", err)
	}
}

// TestShipSilentHandshake: a collector that accepts the TCP connection
// and never answers the TLS handshake costs the shipper one timeout per
// attempt, not a goroutine stuck for ever.
func TestShipSilentHandshake(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	f.opts.Config.Collectors[0].Addr = ln.Addr().String()
	f.opts.Config.Timeout.Duration = 300 * time.Millisecond
	f.append(t, 3)
	s := run(t, f.opts)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.Status()[0].LastErr, "deadline") && !strings.Contains(s.Status()[0].LastErr, "timeout") {
		if time.Now().After(deadline) {
			t.Fatalf("a silent handshake did not time out: %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
