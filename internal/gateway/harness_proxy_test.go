package gateway_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/proxyproto"
)

// The harness listens on 127.0.0.1; the load balancer is 127.0.0.1, and a
// client elsewhere dials from 127.0.0.9 (all of 127/8 is loopback).
const balancerEntry = "proxy_protocol: {from: [127.0.0.1/32]}"

// dialFrom opens a TCP connection to the gateway from the local address
// src.
func (h *harness) dialFrom(t *testing.T, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", h.addr, src, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// proxied logs person in to the gateway through a "load balancer" on
// 127.0.0.1 that announces the client address client.
func (h *harness) proxied(t *testing.T, person string, client netip.AddrPort) error {
	t.Helper()
	nc := h.dialFrom(t, "127.0.0.1")
	hdr := proxyproto.Encode(proxyproto.Header{Source: client, Destination: netip.MustParseAddrPort(h.addr)})
	if _, err := nc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	var banner strings.Builder
	c, err := handshake(nc, h.addr, h.clientConfig(person, person, &banner), &banner)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// TestProxyProtocolClientAddress: behind a configured load balancer the
// client's address from the PROXY header is the connection's source in
// the audit log, for IPv4 and IPv6 clients alike.
func TestProxyProtocolClientAddress(t *testing.T) {
	h := newHarness(t, withGateway(balancerEntry))
	for _, client := range []string{"192.0.2.7:40001", "[2001:db8::7]:40002"} {
		from := len(h.events(t))
		if err := h.proxied(t, "alice", netip.MustParseAddrPort(client)); err != nil {
			t.Fatalf("login through the balancer as %s: %v", client, err)
		}
		h.waitEvent(t, from, "auth.success from "+client, func(e audit.Event) bool {
			return e.Type == audit.AuthSuccess && e.Person == "alice" && e.Source == client
		})
	}
}

// TestProxyProtocolRefusals: a PROXY header only from a balancer, and a
// balancer's connection only with one. A header from elsewhere counts as
// a failure of that source, never of the address it claims; a balancer's
// connection without a header is refused without blocking the balancer.
func TestProxyProtocolRefusals(t *testing.T) {
	h := newHarness(t, withGateway(balancerEntry))

	t.Run("forged header from a client", func(t *testing.T) {
		from := len(h.events(t))
		nc := h.dialFrom(t, "127.0.0.9")
		hdr := proxyproto.Encode(proxyproto.Header{Source: netip.MustParseAddrPort("198.51.100.66:1"), Destination: netip.MustParseAddrPort(h.addr)})
		if _, err := nc.Write(hdr); err != nil {
			t.Fatal(err)
		}
		h.refusedProxy(t, nc, from, "127.0.0.9", "only a configured load balancer")
		for _, e := range h.events(t)[from:] {
			if strings.Contains(e.Source, "198.51.100.66") {
				t.Errorf("the forged address reached the audit log: %+v", e)
			}
		}
	})

	t.Run("version 1 header from a client", func(t *testing.T) {
		from := len(h.events(t))
		nc := h.dialFrom(t, "127.0.0.9")
		if _, err := nc.Write([]byte("PROXY TCP4 198.51.100.66 127.0.0.1 1 22\r\nSSH-2.0-OpenSSH_9.2\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		if _, err := bufio.NewReader(nc).ReadString(0); err == nil || isTimeout(err) {
			t.Fatalf("the connection stayed open after a version 1 header: %v", err)
		}
		h.waitEvent(t, from, "auth.failure stage=proxy from 127.0.0.9", func(e audit.Event) bool {
			return e.Type == audit.AuthFailure && e.Attrs["stage"] == "proxy" && strings.HasPrefix(e.Source, "127.0.0.9:")
		})
	})

	t.Run("client without header is served", func(t *testing.T) {
		nc := h.dialFrom(t, "127.0.0.9")
		var banner strings.Builder
		c, err := handshake(nc, h.addr, h.clientConfig("alice", "alice", &banner), &banner)
		if err != nil {
			t.Fatalf("a direct client (no balancer, no header) was refused: %v", err)
		}
		c.Close()
	})

	t.Run("balancer without header", func(t *testing.T) {
		from := len(h.events(t))
		nc := h.dialFrom(t, "127.0.0.1")
		h.refusedProxy(t, nc, from, "127.0.0.1", "no PROXY protocol v2 header")
	})

	t.Run("health check with LOCAL", func(t *testing.T) {
		from := len(h.events(t))
		nc := h.dialFrom(t, "127.0.0.1")
		if _, err := nc.Write(proxyproto.Encode(proxyproto.Header{Local: true})); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Fatalf("after LOCAL the gateway sent %q, %v; want its SSH version line", line, err)
		}
		nc.Close()
		// A check that closes after the version line is no failed login.
		if err := h.proxied(t, "alice", netip.MustParseAddrPort("192.0.2.8:1")); err != nil {
			t.Fatal(err)
		}
		h.waitEvent(t, from, "the next login", func(e audit.Event) bool { return e.Type == audit.AuthSuccess })
		for _, e := range h.events(t)[from:] {
			if e.Type == audit.AuthFailure {
				t.Errorf("a health check was audited as a failure: %+v", e)
			}
		}
	})
}

// TestProxyProtocolHeaderDeadline: a balancer's connection that sends no
// header is closed after kex_timeout, not held.
func TestProxyProtocolHeaderDeadline(t *testing.T) {
	h := newHarness(t, withGateway(balancerEntry+", handshake_timeout: 2s"))
	nc := h.dialFrom(t, "127.0.0.1")
	if _, err := nc.Write([]byte("\r\n\r\n")); err != nil { // a start, then nothing
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	start := time.Now()
	if _, err := bufio.NewReader(nc).ReadString(0); err == nil || isTimeout(err) {
		t.Fatalf("a header that never completes held the connection for %v: %v", time.Since(start), err)
	}
}

// refusedProxy logs alice in on nc, expects the gateway to refuse the
// handshake, and waits for the auth.failure of stage proxy from source
// (an address without port) whose reason says why.
func (h *harness) refusedProxy(t *testing.T, nc net.Conn, from int, source, why string) {
	t.Helper()
	var banner strings.Builder
	if c, err := handshake(nc, h.addr, h.clientConfig("alice", "alice", &banner), &banner); err == nil {
		c.Close()
		t.Fatalf("a connection from %s was accepted; want it refused (%s)", source, why)
	}
	e := h.waitEvent(t, from, "auth.failure stage=proxy from "+source, func(e audit.Event) bool {
		return e.Type == audit.AuthFailure && e.Attrs["stage"] == "proxy" && strings.HasPrefix(e.Source, source+":")
	})
	if !strings.Contains(e.Attrs["reason"], why) {
		t.Errorf("reason %q does not say %q", e.Attrs["reason"], why)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
