package config

import (
	"net/netip"
	"strings"
	"testing"
)

// TestProxyProtocolAndStore checks the settings of gateways behind a load
// balancer: which balancer addresses are accepted, the public address and
// the shared state database's path.
func TestProxyProtocolAndStore(t *testing.T) {
	k := newKeys(t)
	for _, tc := range []struct {
		name, add string
		msg       string // "" = valid
	}{
		{name: "off", add: ""},
		{name: "prefixes and addresses", add: "gateway:\n  proxy_protocol:\n    from: [10.0.0.0/24, 192.0.2.10, \"2001:db8::/64\", \"::1\"]\n"},
		{name: "empty", add: "gateway:\n  proxy_protocol: {from: []}\n", msg: "proxy_protocol.from is empty"},
		{name: "not an address", add: "gateway:\n  proxy_protocol: {from: [lb.example.org]}\n", msg: `"lb.example.org" is not an IP address or CIDR prefix`},
		{name: "every address", add: "gateway:\n  proxy_protocol: {from: [0.0.0.0/0]}\n", msg: "too wide"},
		{name: "wide v6", add: "gateway:\n  proxy_protocol: {from: [\"::/8\"]}\n", msg: "too wide"},
		{name: "public address", add: "gateway:\n  names: [gw.example.org]\n  public_address: gw.example.org:22\n"},
		{name: "public address not a name", add: "gateway:\n  public_address: gw.example.org:22\n", msg: "is not among gateway.names"},
		{name: "public address without port", add: "gateway:\n  public_address: gw.example.org\n", msg: "public_address"},
		{name: "public address without host", add: "gateway:\n  public_address: \":22\"\n", msg: "must name the host"},
		{name: "store path", add: "store:\n  path: shared/state.db\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/tandem/base.yaml", build(k, nil, tc.add))
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := "/etc/tandem/tandem-data/state.db"; c.Store.Path == "" && c.StatePath() != want {
					t.Errorf("state path %q, want %q", c.StatePath(), want)
				}
				if c.Store.Path != "" && c.StatePath() != "/etc/tandem/shared/state.db" {
					t.Errorf("store.path %q: want it resolved against the file's directory", c.StatePath())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want a problem containing %q", err, tc.msg)
			}
		})
	}
}

func TestProxyProtocolTrusts(t *testing.T) {
	p := ProxyProtocol{From: []string{"10.0.0.0/24", "192.0.2.10", "2001:db8::/64"}}
	for addr, want := range map[string]bool{
		"10.0.0.7": true, "10.0.1.7": false, "192.0.2.10": true, "192.0.2.11": false,
		"::ffff:10.0.0.7": true, "2001:db8::99": true, "2001:db9::1": false,
	} {
		if got := p.Trusts(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Trusts(%s) = %v, want %v", addr, got, want)
		}
	}
	if (ProxyProtocol{}).Trusts(netip.MustParseAddr("127.0.0.1")) {
		t.Error("no balancers configured, yet 127.0.0.1 is trusted")
	}
}

func TestPublicAddr(t *testing.T) {
	g := Gateway{Listen: "10.0.0.1:2222", Names: []string{"gw.example.org", "localhost"}}
	if h, p := g.PublicAddr(); h != "gw.example.org" || p != "2222" {
		t.Errorf("without public_address: %s %s", h, p)
	}
	g.PublicAddress = "ssh.example.org:22"
	if h, p := g.PublicAddr(); h != "ssh.example.org" || p != "22" {
		t.Errorf("with public_address: %s %s", h, p)
	}
}
