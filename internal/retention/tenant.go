package retention

import (
	"context"
	"fmt"
	"slices"

	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// DestroyTenant destroys every data key of tenant at once (contract end,
// M23): its audit fields of every class and day, its recordings and
// sealed keystrokes, in the vault and, through the vault's shred hook, in
// the backups' key escrow. Each destruction goes into the retention
// state, so a later run finds nothing to repair; it is not audited as one
// key.destroyed each: those would be records of the tenant, encrypted
// under the tenant's key of today, which is among those destroyed. The
// caller audits the whole destruction as a gateway record (tenant.destroy).
// A legal hold on any of the tenant's days refuses all of it: the law that
// asked for the hold comes first.
func (j *Job) DestroyTenant(ctx context.Context, tenant string) ([]vault.KeyInfo, error) {
	keys, err := j.Vault.List()
	if err != nil {
		return nil, err
	}
	_, holds, err := j.inputs(ctx)
	if err != nil {
		return nil, err
	}
	now := j.Now()
	var held []string
	for _, k := range keys {
		if k.Tenant != tenant || k.Shredded {
			continue
		}
		for _, h := range holds {
			if h.covers(tenant, k.Day, now) && !slices.Contains(held, h.ID) {
				held = append(held, h.ID)
			}
		}
	}
	if len(held) > 0 {
		return nil, fmt.Errorf("legal hold(s) %v keep data of %s: release them first (tandem hold release), or keep the data", held, tenant)
	}
	var out []vault.KeyInfo
	for _, k := range keys {
		if k.Tenant != tenant || k.Shredded {
			continue
		}
		got, err := j.shred(k)
		if err != nil {
			return out, err
		}
		if got.ID == "" {
			continue // destroyed meanwhile by another process
		}
		err = j.State.RecordDestroyed(ctx, store.Destroyed{Class: string(got.Class), Tenant: got.Tenant, Day: got.Day, KeyID: got.ID, At: now.UTC()})
		if err != nil {
			return out, err
		}
		out = append(out, got)
	}
	return out, nil
}
