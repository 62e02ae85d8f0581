package testenv

import (
	"net"
	"sync"
	"testing"
)

// Cutter forwards TCP connections on loopback to a target until Cut,
// which cuts the connections open then as a broken network would: from
// then on they pass nothing on, in either direction, and nothing is
// closed, so only keep-alives can notice. Connections made after Cut pass
// again (the network healed). It stops at the test's cleanup.
type Cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*cutPair
	wg     sync.WaitGroup
}

type cutPair struct {
	in, out net.Conn
	mu      sync.Mutex
	cut     bool
}

func (p *cutPair) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// NewCutter listens on 127.0.0.1 and forwards to target.
func NewCutter(t testing.TB, target string) *Cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cutter{ln: ln, target: target}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.close)
	return c
}

// Addr is where to connect instead of the target.
func (c *Cutter) Addr() string { return c.ln.Addr().String() }

// Cut cuts every connection open now.
func (c *Cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.conns {
		p.mu.Lock()
		p.cut = true
		p.mu.Unlock()
	}
}

func (c *Cutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			in.Close()
			continue
		}
		p := &cutPair{in: in, out: out}
		c.mu.Lock()
		c.conns = append(c.conns, p)
		c.mu.Unlock()
		c.wg.Add(2)
		go c.pipe(p, out, in)
		go c.pipe(p, in, out)
	}
}

// pipe copies src to dst until either fails; once cut, what arrives is
// swallowed. Reads are bounded by the buffer; a swallowed connection
// keeps being drained, so the sender is never blocked by a full window
// here but by the missing answers, as on a real broken link.
func (c *Cutter) pipe(p *cutPair, dst, src net.Conn) {
	defer c.wg.Done()
	defer dst.Close() // one side ending ends the other, as through a router
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.isCut() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (c *Cutter) close() {
	c.ln.Close()
	c.mu.Lock()
	for _, p := range c.conns {
		p.in.Close()
		p.out.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}
