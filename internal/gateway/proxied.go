package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/proxyproto"
	"tandem.dev/tandem/internal/ratelimit"
)

// Behind a load balancer in TCP mode every connection comes from the
// balancer's address. With gateway.proxy_protocol the balancer sends a
// PROXY protocol v2 header ahead of the client's bytes, naming the
// client; the connection then carries the client's address (proxiedConn)
// everywhere the peer's address is used: the rate limiter's admission and
// blocks, the connection caps, `whoami` and every audit event.
//
// Trust runs one way. A header is read only from a configured balancer,
// and a balancer's connection without one is refused (it would otherwise
// carry the balancer's address, shared by every client). A header from
// anywhere else is refused too, and counts as a failed connection of that
// source: whoever sends one is trying to choose the address they are
// recorded under (kexConn notices it among the first bytes).

// proxiedConn is a balancer's connection that carries the client's
// address the PROXY header named.
type proxiedConn struct {
	net.Conn
	remote net.Addr
}

func (p *proxiedConn) RemoteAddr() net.Addr { return p.remote }

// errProxyHeader ends the handshake of a connection that sent a PROXY
// header where none may be.
var errProxyHeader = errors.New("PROXY protocol header refused: only a configured load balancer (gateway.proxy_protocol.from) may send one, once, at the start of the connection")

// fromBalancer reports whether the TCP peer of nc is a configured load
// balancer.
func (s *Server) fromBalancer(nc net.Conn) bool {
	pp := s.state.Load().cfg.Gateway.ProxyProtocol
	if len(pp.From) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	return err == nil && pp.Trusts(ap.Addr())
}

// acceptProxied reads the PROXY header of a balancer's connection (the
// caller has set the deadline) and admits the connection by the client's
// address, with pc as its handle for eviction (and, when the cap is
// reached, admitSpoken's wait for the client's first bytes, at most until
// deadline). It returns the connection as the client's, the release of
// its unauthenticated slot, and false when the connection is to be
// closed.
//
// A LOCAL header (the balancer's own health check) is served as a
// connection of the balancer itself, as the protocol asks: the check sees
// the SSH version line, and a check that closes then counts nothing.
func (s *Server) acceptProxied(ctx context.Context, conn net.Conn, pc *preauthConn, deadline time.Time) (net.Conn, func(), bool) {
	lb := conn.RemoteAddr().String()
	h, err := proxyproto.Read(conn)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, false // connected and closed: a plain TCP health check
		}
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		if timeout {
			err = errors.New("no PROXY protocol v2 header within kex_timeout")
		}
		s.log.Warn("connection from a load balancer refused: no valid PROXY protocol header",
			"balancer", lb, "err", err.Error())
		s.metrics.ConnectionRefused("proxy_protocol")
		// Not a failure of the balancer's address: blocking it would
		// lock out every client behind it.
		s.recordPreauth(audit.AuthFailureEvent{Conn: audit.Conn{Source: lb}, Stage: "proxy",
			Reason: cut(err.Error(), maxReasonBytes), Timeout: timeout}.Event())
		return nil, nil, false
	}
	if !h.Local {
		conn = &proxiedConn{Conn: conn, remote: net.TCPAddrFromAddrPort(h.Source)}
	}
	source := conn.RemoteAddr().String()
	release, ok, reason := s.limit.Admit(source, pc)
	if !ok && reason == ratelimit.ReasonTooManyUnauth {
		return s.admitSpoken(ctx, conn, pc, source, deadline)
	}
	if !ok {
		s.log.Debug("connection refused", "source", source, "balancer", lb, "reason", reason)
		s.metrics.ConnectionRefused(reason)
		return nil, nil, false
	}
	s.metrics.ConnectionAccepted()
	return conn, release, true
}
