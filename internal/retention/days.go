package retention

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// TenantDay is one tenant's UTC day (as vault.Day writes it).
type TenantDay struct {
	Tenant string
	Day    string
}

// DaysSource finds the (tenant, day) pairs in which a person or a session
// (scope store.HoldPerson or store.HoldSession) has events, for the holds
// on them.
type DaysSource interface {
	DaysOf(scope, id string) ([]TenantDay, error)
}

// LogDays is DaysSource over the audit log in a directory: it decrypts
// the admin part of every record (person and session are admin fields)
// with Keys. Events without a tenant belong to the reserved tenant
// GatewayTenant. A day whose admin key is already destroyed cannot be
// found, and needs no hold: nothing of it is readable any more.
type LogDays struct {
	Dir  string
	Keys audit.KeyReader
}

// DaysOf lists the days, sorted, in which the person (named in any role)
// or the session has events.
func (l LogDays) DaysOf(scope, id string) ([]TenantDay, error) {
	var f audit.Filter
	switch scope {
	case store.HoldPerson:
		f.Person = id
	case store.HoldSession:
		f.Session = id
	default:
		return nil, fmt.Errorf("days of %s: unknown scope", scope)
	}
	seen := map[TenantDay]bool{}
	err := audit.ReadKeys(l.Dir, l.Keys, f, func(r audit.Record) error {
		t := r.Event.Tenant
		if t == "" {
			t = GatewayTenant
		}
		seen[TenantDay{Tenant: t, Day: vault.Day(r.Event.Time)}] = true
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // no log yet: no events
	}
	if err != nil {
		return nil, err
	}
	out := make([]TenantDay, 0, len(seen))
	for td := range seen {
		out = append(out, td)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Day < out[j].Day
	})
	return out, nil
}
