package retention

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// State is what the job keeps in the state store (*store.Store).
type State interface {
	Holds(ctx context.Context) ([]store.Hold, error)
	Extensions(ctx context.Context) ([]store.Extension, error)
	DestroyedKeys(ctx context.Context) (map[string]store.Destroyed, error)
	RecordDestroyed(ctx context.Context, d store.Destroyed) error
	Notices(ctx context.Context) ([]store.Notice, error)
	NoticeAttempt(ctx context.Context, id int64, at time.Time, failure string, next time.Time) error
}

// Job is one retention run's wiring: the vault whose keys it destroys,
// the state store, the audit sink (the log inside `tandem serve`, the
// store's outbox for `tandem retention run`), the periods, where person
// and session holds find their days, and how notices reach the DPO.
type Job struct {
	Vault    *vault.Vault
	State    State
	Audit    audit.Sink
	Period   PeriodFunc
	Days     DaysSource
	Notifier Notifier // nil: notices wait
	Now      func() time.Time
	Log      *slog.Logger
}

// Report is what a run did.
type Report struct {
	Destroyed []Action // destroyed now, with the reason
	Repaired  int      // destructions audited late (repaired=true)
	Kept      int      // due keys kept by a hold
	Notices   int      // notices delivered
	Failed    int      // notice attempts that failed
}

// Run repairs the audit of destructions a crash interrupted, destroys
// every key the plan says is due, and delivers notices that are due. It
// is idempotent: a second run at the same time does nothing. It fails
// closed: without a readable hold and extension table it destroys
// nothing, and it stops at the first destruction the audit sink refuses
// (the key is gone; the next run audits it as repaired).
func (j *Job) Run(ctx context.Context) (Report, error) {
	var rep Report
	keys, err := j.Vault.List()
	if err != nil {
		return rep, err
	}
	done, err := j.State.DestroyedKeys(ctx)
	if err != nil {
		return rep, err
	}
	if rep.Repaired, err = j.repair(ctx, keys, done); err != nil {
		return rep, err
	}
	exts, holds, err := j.inputs(ctx)
	if err == nil {
		err = j.destroy(ctx, Plan(j.Now(), keys, j.Period, exts, holds), &rep)
	}
	// Notices go out even when destruction could not run: they are
	// about extensions already in force.
	nerr := j.deliver(ctx, &rep)
	return rep, errors.Join(err, nerr)
}

// repair audits, as repaired, every tombstone the store has no record of:
// a crash between destroying a key and auditing it.
func (j *Job) repair(ctx context.Context, keys []vault.KeyInfo, done map[string]store.Destroyed) (int, error) {
	n := 0
	for _, k := range keys {
		if !k.Shredded {
			continue
		}
		if _, ok := done[string(k.Class)+"/"+k.Tenant+"/"+k.Day]; ok {
			continue
		}
		if err := j.audited(ctx, k, "destroyed earlier; its event was lost (crash) and is written now", true); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// inputs reads extensions and active holds, resolving person and session
// holds to their tenant days. Any error stops destruction (fail closed).
func (j *Job) inputs(ctx context.Context) ([]Extension, []Hold, error) {
	xs, err := j.State.Extensions(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("retention: extensions unreadable, nothing destroyed: %w", err)
	}
	hs, err := j.State.Holds(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("retention: legal holds unreadable, nothing destroyed: %w", err)
	}
	var exts []Extension
	for _, x := range xs {
		exts = append(exts, Extension{ID: x.ID, Tenant: x.Tenant, Class: vault.Class(x.Class), Until: x.Until})
	}
	holds, err := ResolveHolds(hs, j.Now(), j.Days)
	if err != nil {
		return nil, nil, fmt.Errorf("retention: %w; nothing destroyed", err)
	}
	return exts, holds, nil
}

// ResolveHolds turns the active stored holds into the planner's: a
// tenant hold covers every day; a person or session hold the (tenant,
// day) pairs in which they have events.
func ResolveHolds(hs []store.Hold, now time.Time, days DaysSource) ([]Hold, error) {
	var out []Hold
	for _, h := range hs {
		if !h.Active(now) {
			continue
		}
		if h.Scope == store.HoldTenant {
			out = append(out, Hold{ID: h.ID, Tenant: h.Subject, All: true, Expires: h.Expires})
			continue
		}
		if days == nil {
			return nil, fmt.Errorf("hold %s needs the audit log to find its days", h.ID)
		}
		tds, err := days.DaysOf(h.Scope, h.Subject)
		if err != nil {
			return nil, fmt.Errorf("hold %s: %w", h.ID, err)
		}
		byTenant := map[string]map[string]bool{}
		for _, td := range tds {
			if byTenant[td.Tenant] == nil {
				byTenant[td.Tenant] = map[string]bool{}
			}
			byTenant[td.Tenant][td.Day] = true
		}
		for t, ds := range byTenant {
			out = append(out, Hold{ID: h.ID, Tenant: t, Days: ds, Expires: h.Expires})
		}
	}
	return out, nil
}

func (j *Job) destroy(ctx context.Context, plan []Action, rep *Report) error {
	for _, a := range plan {
		switch a.Verdict {
		case Keep:
			if len(a.HeldBy) > 0 {
				rep.Kept++
			}
			continue
		case Finish:
			// Marked destroyed already; repair (or the run that crashed)
			// audits it. Only the file goes.
			if _, err := j.shred(a.Key); err != nil {
				return err
			}
			continue
		}
		k, err := j.shred(a.Key)
		if err != nil {
			return err
		}
		if k.ID == "" {
			continue // another process destroyed it meanwhile, and audits it
		}
		if err := j.audited(ctx, k, a.Reason, false); err != nil {
			return err
		}
		rep.Destroyed = append(rep.Destroyed, a)
		j.Log.Info("retention: key destroyed", "class", string(k.Class), "tenant", k.Tenant, "day", k.Day, "reason", a.Reason)
	}
	return nil
}

// shred destroys k's key. A key that another process destroyed between
// List and now is no error: the KeyInfo comes back without an id.
func (j *Job) shred(k vault.KeyInfo) (vault.KeyInfo, error) {
	d, err := vault.ParseDay(k.Day)
	if err != nil {
		return k, err
	}
	s, err := j.Vault.Shred(k.Class, k.Tenant, d)
	if errors.Is(err, vault.ErrShredded) || errors.Is(err, vault.ErrNoKey) || errors.Is(err, fs.ErrNotExist) {
		return vault.KeyInfo{Class: k.Class, Tenant: k.Tenant, Day: k.Day}, nil
	}
	if err != nil {
		return k, fmt.Errorf("retention: destroy %s %s/%s: %w", k.Class, k.Tenant, k.Day, err)
	}
	k.ID = s.KeyID
	return k, nil
}

// audited appends key.destroyed (OrRefuse: the record of a destruction
// is the point of it) and notes in the store that it is in the log. A
// crash between the two writes the event twice, never not at all.
func (j *Job) audited(ctx context.Context, k vault.KeyInfo, reason string, repaired bool) error {
	now := j.Now().UTC()
	ev := audit.KeyDestroyedEvent{Tenant: k.Tenant, Class: string(k.Class), Day: k.Day, KeyID: k.ID, Reason: reason, Repaired: repaired}.Event()
	ev.Time = now
	if err := audit.OrRefuse(ctx, j.Audit, ev); err != nil {
		return fmt.Errorf("retention: %s %s/%s destroyed, but: %w", k.Class, k.Tenant, k.Day, err)
	}
	return j.State.RecordDestroyed(ctx, store.Destroyed{Class: string(k.Class), Tenant: k.Tenant, Day: k.Day, KeyID: k.ID, At: now, Repaired: repaired})
}
