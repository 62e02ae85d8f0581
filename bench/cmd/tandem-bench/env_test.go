package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
)

// testPub returns a fresh ECDSA P-256 public key in authorized_keys form.
func testPub(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatalf("ssh public key: %v", err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// TestGatewayConfig checks that the benchmark's gateway configuration is
// valid and sets up what (b) relies on: the owner may log in as root on
// both hosts, only the production host needs a second person, and the
// second person may join there as peer.
func TestGatewayConfig(t *testing.T) {
	dir := t.TempDir()
	text, err := config.Marshal(gatewayConfig(dir, 2222, 2223, 2224, testPub(t), testPub(t), testPub(t), ca.KeyP256))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "tandem.yaml"), text)
	if err != nil {
		t.Fatalf("config does not parse: %v\n%s", err, text)
	}
	persons := map[string]*config.Person{}
	for i := range cfg.Persons {
		persons[cfg.Persons[i].ID] = &cfg.Persons[i]
	}
	hosts := map[string]*config.Host{}
	for i := range cfg.Hosts {
		hosts[cfg.Hosts[i].Name] = &cfg.Hosts[i]
	}
	eng := policy.New(cfg)
	tests := []struct {
		host     string
		fourEyes bool
	}{
		{gwHostTest, false},
		{gwHostProd, true},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			h := hosts[tc.host]
			if h == nil {
				t.Fatalf("no host %s", tc.host)
			}
			if _, port, _ := strings.Cut(h.Address, ":"); port != "2223" {
				t.Errorf("address %q, want the target's", h.Address)
			}
			if got := eng.FourEyes(h); got != tc.fourEyes {
				t.Errorf("FourEyes = %v, want %v", got, tc.fourEyes)
			}
			for _, id := range []string{personOwner, personJoiner} {
				p := persons[id]
				if p == nil {
					t.Fatalf("no person %s", id)
				}
				if modes := eng.JoinModes(p, h); !slices.Contains(modes, "peer") {
					t.Errorf("%s may join as %v, want peer", id, modes)
				}
			}
		})
	}
}

func TestParseJoinHint(t *testing.T) {
	tests := []struct {
		name, out, id string
		ok            bool
	}{
		{"notice", "tandem: production needs a second person\r\n  ask a colleague to run:  ssh -t gw join 0a1b2c3d4e\r\n", "0a1b2c3d4e", true},
		{"port", "  ask a colleague to run:  ssh -t -p 2222 gw join 0a1b2c3d4e\r\n", "0a1b2c3d4e", true},
		{"bare newline", "ask a colleague to run: ssh -t gw.example.org join ff00\n", "ff00", true},
		{"id not complete yet", "  ask a colleague to run:  ssh -t gw join 0a1b2", "", false},
		{"no notice", "ECHO-READY\r\n", "", false},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := parseJoinHint([]byte(tc.out))
			if id != tc.id || ok != tc.ok {
				t.Errorf("parseJoinHint(%q) = %q, %v; want %q, %v", tc.out, id, ok, tc.id, tc.ok)
			}
		})
	}
}

func FuzzParseJoinHint(f *testing.F) {
	f.Add([]byte("  ask a colleague to run:  ssh -t gw join 0a1b2c3d4e\r\n"))
	f.Add([]byte("ask a colleague to run:ssh -t x join \n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		id, ok := parseJoinHint(out)
		if ok != (id != "") {
			t.Fatalf("ok %v with id %q", ok, id)
		}
		if ok && strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not hex", id)
		}
	})
}
