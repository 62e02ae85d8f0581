package monitoring

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// TestScrapeNeitherGrowsNorNames: whatever persons, hosts, addresses,
// sessions and reasons the events carry (a person picks their user name
// and the command they ask for; an attacker the source and the SSH
// stage), a scrape names none of them and has as many series after a
// thousand distinct ones as after one.
func TestScrapeNeitherGrowsNorNames(t *testing.T) {
	m := New("test")
	m.Watch(fakeGateway{})
	s := m.Sink(&audit.MemorySink{})
	feed := func(from, to int) {
		for i := from; i < to; i++ {
			v := fmt.Sprintf("zz%dzz", i) // in every field a person or an attacker sets
			attrs := map[string]string{"stage": v, "scope": v, "verdict": v, "reason": v, "class": v, "command": v, "limit": v, "kind": v}
			for _, typ := range []audit.Type{audit.AuthSuccess, audit.AuthFailure, audit.AuthBlocked, audit.SessionDenied, audit.ForwardDenied,
				audit.ChannelLimited, audit.KeyDestroyed, audit.SessionStart, audit.SessionWaiting, audit.SessionLive, audit.Lock,
				audit.SessionEnd, audit.ForwardStart, audit.ForwardEnd} {
				e := audit.Event{Type: typ, Time: time.Unix(int64(1000+i), 0), Person: v, Session: v, Tenant: v, Host: v, Login: v,
					Source: v, Request: v, Attrs: attrs}
				if err := s.Append(context.Background(), e); err != nil {
					t.Fatal(err)
				}
			}
			m.ConnectionRefused(v)
			m.SessionStarted(v)
			m.SessionEnded(v, 1)
		}
	}
	feed(0, 1)
	_, first := scrape(t, m)
	feed(1, 1000)
	text, after := scrape(t, m)
	if len(after) != len(first) {
		t.Errorf("%d series after one set of values, %d after a thousand", len(first), len(after))
	}
	if strings.Contains(text, "zz") {
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "zz") {
				t.Errorf("a scrape names what an event carried: %s", line)
			}
		}
	}
	tr := s.(*sink).tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n := len(tr.owner) + len(tr.live) + len(tr.since) + len(tr.lockTime); n != 0 {
		t.Errorf("the sink still holds %d entries for sessions that all ended", n)
	}
}

// serveLoopback serves the monitoring handler on a loopback port; done is
// closed when Serve returns after cancel.
func serveLoopback(t *testing.T) (string, context.CancelFunc, <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, ln, Handler(New("test"), NewHealth(), quiet, false), quiet); close(done) }()
	return ln.Addr().String(), cancel, done
}

// TestSlowHeaderIsCut: a client that sends its request header a byte at
// a time (slowloris) loses the connection at the header's deadline.
func TestSlowHeaderIsCut(t *testing.T) {
	addr, cancel, done := serveLoopback(t)
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	for time.Since(start) < 3*readHeaderTimeout {
		if _, err := c.Write([]byte("X")); err != nil {
			break // the server closed it
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := bufio.NewReader(c).ReadByte(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			break
		}
		break // an answer (408 or 400) ends it too
	}
	if d := time.Since(start); d > readHeaderTimeout+2*time.Second {
		t.Fatalf("a slow header held the connection for %v", d)
	}
	// And the server goes on answering others.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
}

// TestServeEndsWithItsContext: the listener's goroutine ends when the
// gateway stops, with a client still connected.
func TestServeEndsWithItsContext(t *testing.T) {
	addr, cancel, done := serveLoopback(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
