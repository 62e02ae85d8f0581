package config

import (
	"errors"
	"os"
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
