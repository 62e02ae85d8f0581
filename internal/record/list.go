package record

import (
	"errors"
	"fmt"
	"sort"
)

// List returns the headers of tenant's recordings under the data directory
// dir, oldest day first, without decrypting anything (ListIn for a data
// directory).
func List(dir, tenant string) ([]Header, error) { return ListIn(Local(dir), tenant) }

// ListIn returns the headers of tenant's recordings in s, oldest day
// first, without decrypting anything. It takes one tenant on purpose: no
// listing crosses tenants (M16). Recordings that cannot be read, or whose
// header names another tenant, session or day than their place (a file
// moved by hand, a row changed), are left out and reported in the joined
// error; the other headers are still returned.
func ListIn(s Storage, tenant string) ([]Header, error) {
	if err := checkName("tenant", tenant); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	refs, err := s.List(tenant)
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("record: %w", err))
	}
	var out []Header
	for _, ref := range refs {
		name := s.Name(ref)
		obj, err := s.Open(ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("record: %w", err))
			continue
		}
		h, err := readHeader(obj, name)
		obj.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if h.Tenant != tenant || h.Day != ref.Day || h.Session != ref.Session {
			errs = append(errs, fmt.Errorf("record: %s: header names %s/%s/%s, not its place: %w", h.Path, h.Tenant, h.Day, h.Session, ErrCorrupt))
			continue
		}
		out = append(out, h)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Day < out[j].Day })
	return out, errors.Join(errs...)
}
