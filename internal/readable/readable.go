// Package readable answers which recordings a person may read (M13): only
// those of hosts that a role rule with read: true matches, found by looking
// in one tenant at a time, never across all of them. Auditing the read is
// the caller's job, before any byte leaves.
package readable

import (
	"fmt"
	"sort"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
)

// Library is the recordings of one gateway (its data directory, or the
// storage the cluster shares) under one configuration.
type Library struct {
	Vault *record.Vault
	Dir   string // the data directory (recordings live in Dir/recordings)
	// Storage, if set, is where the recordings are instead of Dir: the
	// shared storage of a cluster (recording.storage: store).
	Storage record.Storage
	Config  *config.Config
	Engine  *policy.Engine
}

func (l Library) storage() record.Storage {
	if l.Storage != nil {
		return l.Storage
	}
	return record.Local(l.Dir)
}

// Filter narrows a listing; empty fields match everything.
type Filter struct {
	Tenant, Host, Owner string
	Since               time.Time
}

// Open opens the recording of session id if p may read it, and returns
// the host it was recorded on.
func (l Library) Open(p *config.Person, id string) (*record.Reader, *config.Host, error) {
	// Only plaintext headers are looked at while searching, so a person
	// without any grant is told "may not read", not "no such session".
	// The refusal names nothing of the recording (its host, tenant, day
	// or place, or that its day was shredded): the asker may belong to
	// another tenant. A recording of a tenant where p may read nothing is
	// not even decrypted.
	refuse := fmt.Errorf("%s may not read the recording of session %s (needs a role rule with read: true for its host)", p.ID, id)
	for _, t := range l.Config.Tenants {
		hs, _ := record.ListIn(l.storage(), t.ID)
		for _, h := range hs {
			if h.Session != id {
				continue
			}
			if !l.mayReadTenant(p, t.ID) {
				return nil, nil, refuse
			}
			r, err := record.OpenIn(l.Vault, l.storage(), h.Ref())
			if err != nil {
				return nil, nil, err
			}
			host := l.Config.Host(r.Meta().Host)
			if host == nil || host.Tenant != t.ID || !l.Engine.MayRead(p, host) {
				r.Close()
				return nil, nil, refuse
			}
			return r, host, nil
		}
	}
	return nil, nil, fmt.Errorf("no recording of session %s", id)
}

// Entry is one recording in a listing.
type Entry struct {
	record.Meta
	// Sealed is how much input was sealed at secret prompts (read from
	// the recording's last chunk, with the data key only).
	Sealed record.SealedSummary
}

// SealedColumn is the SEALED column of listings: "-" for none, the number
// of sealed keystrokes, "12 (many)" for a flagged session.
func (e Entry) SealedColumn() string {
	switch {
	case e.Sealed.Prompts == 0:
		return "-"
	case e.Sealed.Flagged:
		return fmt.Sprintf("%d (many)", e.Sealed.Keystrokes)
	default:
		return fmt.Sprint(e.Sealed.Keystrokes)
	}
}

// List returns the metadata of the recordings p may read that match f,
// newest first. Recordings that cannot be opened (shredded, damaged) are
// left out.
func (l Library) List(p *config.Person, f Filter) []Entry {
	var out []Entry
	firstDay := f.Since.UTC().Truncate(24 * time.Hour)
	for _, t := range l.Config.Tenants {
		if (f.Tenant != "" && t.ID != f.Tenant) || !l.mayReadTenant(p, t.ID) {
			continue
		}
		hs, _ := record.ListIn(l.storage(), t.ID)
		for _, h := range hs {
			if d, err := time.Parse(time.DateOnly, h.Day); err != nil || d.Before(firstDay) {
				continue
			}
			r, err := record.OpenIn(l.Vault, l.storage(), h.Ref())
			if err != nil {
				continue
			}
			m := r.Meta()
			r.Close()
			host := l.Config.Host(m.Host)
			if host == nil || host.Tenant != t.ID || !l.Engine.MayRead(p, host) || m.Started.Before(f.Since) ||
				(f.Host != "" && m.Host != f.Host) || (f.Owner != "" && m.Owner != f.Owner) {
				continue
			}
			sealed, _ := record.ReadSealedSummaryIn(l.Vault, l.storage(), h.Ref()) // a damaged tail shows what was read
			out = append(out, Entry{Meta: m, Sealed: sealed})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out
}

// mayReadTenant reports whether any host of the tenant is readable for p,
// so that tenants p has nothing to read in are not even looked into.
func (l Library) mayReadTenant(p *config.Person, tenant string) bool {
	for i := range l.Config.Hosts {
		h := &l.Config.Hosts[i]
		if h.Tenant == tenant && l.Engine.MayRead(p, h) {
			return true
		}
	}
	return false
}
