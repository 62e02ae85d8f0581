package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ProxyProtocol makes the SSH listener read the PROXY protocol (version 2)
// header that a load balancer in TCP mode sends ahead of each client
// connection, so that rate limits, blocks and the audit log see the
// client's address rather than the balancer's (docs/HA.md).
type ProxyProtocol struct {
	// From lists the load balancers' addresses, as CIDR prefixes or
	// single addresses. A connection from one of them must start with a
	// header; a connection from anywhere else must not send one. Empty:
	// the protocol is off and every header is refused.
	From []string `yaml:"from"`
}

// Prefixes returns From as prefixes (a single address as a /32 or /128).
// Entries that do not parse are left out; validation refuses them.
func (p ProxyProtocol) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.From {
		if pf, err := parsePrefix(s); err == nil {
			out = append(out, pf)
		}
	}
	return out
}

// Trusts reports whether addr (the TCP peer) is a configured load
// balancer.
func (p ProxyProtocol) Trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pf := range p.Prefixes() {
		if pf.Contains(addr) {
			return true
		}
	}
	return false
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if pf.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("write an IPv4 prefix as IPv4")
		}
		return pf.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validateProxyProtocol refuses entries that are not addresses and
// prefixes so wide that they would let any client name its own source.
func validateProxyProtocol(c *Config, pos *positions, r *report) {
	p := c.Gateway.ProxyProtocol
	if len(p.From) == 0 && pos.has("gateway", "proxy_protocol") {
		r.add(pos.line("gateway", "proxy_protocol"), "proxy_protocol.from is empty: list the load balancers' addresses (or leave proxy_protocol out)")
	}
	for i, s := range p.From {
		pf, err := parsePrefix(s)
		switch {
		case err != nil:
			r.add(pos.line("gateway", "proxy_protocol", "from", i), "proxy_protocol.from: %q is not an IP address or CIDR prefix: %v", s, err)
		case pf.Bits() < 8 && pf.Addr().Is4() || pf.Bits() < 16 && !pf.Addr().Is4():
			r.add(pos.line("gateway", "proxy_protocol", "from", i), "proxy_protocol.from: %q is too wide: every address in it may claim any client address; name the load balancers (at least /8 for IPv4, /16 for IPv6)", s)
		}
	}
	if a := c.Gateway.PublicAddress; a != "" {
		if err := checkHostPort(a, false); err != nil {
			r.add(pos.line("gateway", "public_address"), "public_address: %v", err)
		} else if host, _, _ := net.SplitHostPort(a); host == "" {
			r.add(pos.line("gateway", "public_address"), "public_address must name the host clients connect to (the load balancer's name)")
		} else if !slices.Contains(c.Gateway.Names, host) {
			r.add(pos.line("gateway", "public_address"), "public_address: %s is not among gateway.names %v, so the gateway's host certificate would not name it; add it to names", host, c.Gateway.Names)
		}
	}
}

// PublicAddr is the host and port clients use to reach the gateway:
// gateway.public_address (a load balancer in front), or else the first
// name and the port of listen.
func (g Gateway) PublicAddr() (host, port string) {
	if g.PublicAddress != "" {
		if h, p, err := net.SplitHostPort(g.PublicAddress); err == nil {
			return h, p
		}
	}
	host, port, _ = net.SplitHostPort(g.Listen)
	if len(g.Names) > 0 {
		host = g.Names[0]
	}
	return host, port
}
