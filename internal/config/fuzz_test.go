package config

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; it returns exactly one of a Config and a
// *ValidationError; a Config it returns passes validation again unchanged
// and finds every registered key again.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	k := newKeys(f)
	f.Add(example)
	f.Add(build(k, nil, ""))
	f.Add(build(k, map[int]string{13: "      - hosts: {names: ['*'], labels: {a: b}}"}, "gateway: {listen: '0.0.0.0:22', cert_validity: 1m}\n"))
	f.Add(build(k, map[int]string{9: `      - {key: "K1", added: 2026-13-01}`}, "policy: {four_eyes: [test]}\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || c != nil {
				t.Fatalf("Parse = %v, %v (%T)", c, err, err)
			}
			for _, p := range ve.Problems {
				if p.Line < 0 || p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("bad problem %+v", p)
				}
			}
			return
		}
		r := &report{file: "fuzz.yaml"}
		validate(c, nil, r)
		if len(r.problems) > 0 {
			t.Fatalf("a parsed config fails validation again: %v", r.err())
		}
		if d := c.Gateway.CertValidity.Duration; d <= 0 || d > MaxCertValidity {
			t.Fatalf("cert_validity %v", d)
		}
		for i := range c.Persons {
			p := &c.Persons[i]
			if len(p.Keys) == 0 || len(c.RolesOf(p)) != len(p.Roles) || p.Account != AccountPersonal {
				t.Fatalf("person %+v", p)
			}
			for j := range p.Keys {
				gp, gk := c.PersonByKey(p.Keys[j].PublicKey)
				if gp != p || gk != &p.Keys[j] {
					t.Fatalf("PersonByKey(%s) = %v", p.Keys[j].Fingerprint, gp)
				}
			}
		}
		for _, h := range c.Hosts {
			if (h.HostPublicKey == nil) == (h.HostCAKey == nil) || c.Tenant(h.Tenant) == nil {
				t.Fatalf("host %+v", h)
			}
		}
	})
}

// FuzzCheckSourceAddress: what CheckSourceAddress accepts can be joined
// into OpenSSH's comma-separated source-address list unchanged — no
// comma, blank, zone or host bits — and parses as an address or network.
func FuzzCheckSourceAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "192.0.2.0/28", "2001:db8::/32", "::1", "fe80::1%eth0", "10.0.0.1,10.0.0.2", " 10.0.0.1", "gw.example.org", "192.0.2.7/28", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckSourceAddress(s) != nil {
			return
		}
		if strings.ContainsAny(s, ", \t\n%*?") || s == "" {
			t.Fatalf("accepted %q, which OpenSSH would read otherwise", s)
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Masked() != p {
				t.Fatalf("accepted %q with host bits", s)
			}
		} else if _, err := netip.ParseAddr(s); err != nil {
			t.Fatalf("accepted %q, neither address nor network", s)
		}
	})
}
