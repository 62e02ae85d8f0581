package record

import (
	"tandem.dev/tandem/internal/vault"

	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// List returns the headers of tenant's recordings under the data directory
// dir, oldest day first, without decrypting anything. It takes one tenant
// on purpose: no listing crosses tenants (M16). Files that cannot be read,
// or whose header names another tenant, session or day than their place
// (a file moved by hand), are left out and reported in the joined error;
// the other headers are still returned.
func List(dir, tenant string) ([]Header, error) {
	if err := checkName("tenant", tenant); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	root := filepath.Join(dir, recordingsDir, tenant)
	days, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record: list: %w", err)
	}
	var out []Header
	var errs []error
	for _, d := range days { // ReadDir sorts by name: YYYY-MM-DD sorts by time
		if !d.IsDir() {
			continue
		}
		if _, err := vault.ParseDay(d.Name()); err != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("record: list: %w", err))
			continue
		}
		for _, f := range files {
			name := f.Name()
			if !f.Type().IsRegular() || !strings.HasSuffix(name, fileExt) {
				continue
			}
			h, err := ReadHeader(filepath.Join(root, d.Name(), name))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if h.Tenant != tenant || h.Day != d.Name() || h.Session+fileExt != name {
				errs = append(errs, fmt.Errorf("record: %s: header names %s/%s/%s, not its place: %w", h.Path, h.Tenant, h.Day, h.Session, ErrCorrupt))
				continue
			}
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Day < out[j].Day })
	return out, errors.Join(errs...)
}
