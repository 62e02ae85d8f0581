package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
)

// TestClientConfigBehindLoadBalancer: two gateways behind one balancer,
// each listening on its own address, print the same client configuration
// when they share names, public address and host CA: the balancer's name
// and port, trusted through the host CA.
func TestClientConfigBehindLoadBalancer(t *testing.T) {
	keys, err := ca.LoadOrCreate(filepath.Join(t.TempDir(), "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, listen := range []string{"10.0.0.1:2222", "10.0.0.2:2200"} {
		cfg := &config.Config{Gateway: config.Gateway{Listen: listen, Names: []string{"gw.example.org"}, PublicAddress: "gw.example.org:22"}}
		var b bytes.Buffer
		if err := writeClientConfig(&b, cfg, keys, "alice"); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.String())
	}
	if outs[0] != outs[1] {
		t.Fatalf("the nodes print different client configurations:\n%s\n---\n%s", outs[0], outs[1])
	}
	for _, want := range []string{"@cert-authority gw.example.org ecdsa-sha2-nistp384 ", "HostName gw.example.org\n", "Port 22\n"} {
		if !strings.Contains(outs[0], want) {
			t.Errorf("client-config lacks %q:\n%s", want, outs[0])
		}
	}
	if strings.Contains(outs[0], "2222") || strings.Contains(outs[0], "10.0.0.1") {
		t.Errorf("client-config names a node instead of the balancer:\n%s", outs[0])
	}
}
