package config

import (
	"crypto/sha256"
	"encoding/hex"
	"path"

	"golang.org/x/crypto/ssh"
)

// keyRef locates a registered key: Persons[person].Keys[key].
type keyRef struct{ person, key int }

// indexKeys maps each parsed key's fingerprint to where it is registered.
// Validation has made fingerprints unique.
func indexKeys(c *Config) map[string]keyRef {
	m := map[string]keyRef{}
	for i := range c.Persons {
		for j, k := range c.Persons[i].Keys {
			if k.Fingerprint != "" {
				m[k.Fingerprint] = keyRef{i, j}
			}
		}
	}
	return m
}

// Tenant returns the tenant with the id, or nil.
func (c *Config) Tenant(id string) *Tenant {
	for i := range c.Tenants {
		if c.Tenants[i].ID == id {
			return &c.Tenants[i]
		}
	}
	return nil
}

// Person returns the person with the id, or nil.
func (c *Config) Person(id string) *Person {
	for i := range c.Persons {
		if c.Persons[i].ID == id {
			return &c.Persons[i]
		}
	}
	return nil
}

// Role returns the role with the id, or nil.
func (c *Config) Role(id string) *Role {
	for i := range c.Roles {
		if c.Roles[i].ID == id {
			return &c.Roles[i]
		}
	}
	return nil
}

// Host returns the host with the name, or nil.
func (c *Config) Host(name string) *Host {
	for i := range c.Hosts {
		if c.Hosts[i].Name == name {
			return &c.Hosts[i]
		}
	}
	return nil
}

// PersonByKey returns the person who registered pub and the registered
// key, matched by SHA256 fingerprint, or nil, nil. A certificate never
// matches: only plain keys are registered.
func (c *Config) PersonByKey(pub ssh.PublicKey) (*Person, *Key) {
	if pub == nil || c.byKey == nil {
		return nil, nil
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, nil
	}
	ref, ok := c.byKey[ssh.FingerprintSHA256(pub)]
	if !ok || ref.person >= len(c.Persons) || ref.key >= len(c.Persons[ref.person].Keys) {
		return nil, nil
	}
	p := &c.Persons[ref.person]
	return p, &p.Keys[ref.key]
}

// RolesOf returns the roles the person holds, in the person's order.
// Unknown role ids (impossible in a validated Config) are skipped.
func (c *Config) RolesOf(p *Person) []*Role {
	if p == nil {
		return nil
	}
	out := make([]*Role, 0, len(p.Roles))
	for _, id := range p.Roles {
		if r := c.Role(id); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// Digest is the hex SHA-256 of the file as read. It identifies the
// configuration version in audit records of reloads (M12).
func (c *Config) Digest() string {
	sum := sha256.Sum256(c.raw)
	return hex.EncodeToString(sum[:])
}

// empty reports whether the selector has no criterion at all.
func (s Selector) empty() bool {
	return s.Tenant == "" && s.Environment == "" && len(s.Labels) == 0 && len(s.Names) == 0
}

// Matches reports whether h meets every criterion the selector gives:
// same tenant, same environment, all labels equal, and the name matching
// one of the Names globs (path.Match; a malformed glob matches nothing). A
// selector without any criterion matches nothing, so that a rule can never
// grant everything by omission; neither does a nil host.
//
// It is the only host-selector match: the policy engine's decisions and
// this package's validation both call it.
func (s Selector) Matches(h *Host) bool {
	if h == nil || s.empty() {
		return false
	}
	if s.Tenant != "" && s.Tenant != h.Tenant {
		return false
	}
	if s.Environment != "" && s.Environment != h.Environment {
		return false
	}
	for k, v := range s.Labels {
		if hv, ok := h.Labels[k]; !ok || hv != v {
			return false
		}
	}
	if len(s.Names) > 0 {
		matched := false
		for _, pat := range s.Names {
			if ok, err := path.Match(pat, h.Name); err == nil && ok {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}
