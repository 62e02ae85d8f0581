// Package retention destroys data keys when their retention period is
// over (crypto-shredding, docs/RETENTION.md): a pure planner decides, key
// by key and with a reason, what is destroyed now and what is kept; the
// job carries it out on the vault, audits every destruction, repairs the
// audit of destructions a crash interrupted, and delivers the DPO notices
// that extensions create.
package retention

import (
	"fmt"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// GatewayTenant is the reserved tenant of events that belong to no tenant
// (a login, the gateway's start); configured tenant ids never start with
// "_".
const GatewayTenant = "_gateway"

// MaxExtensionDays caps an extension: a key of day D is never kept beyond
// D + 14 days by an extension, whatever its end says.
const MaxExtensionDays = 14

const day = 24 * time.Hour

// PeriodFunc returns how long tenant keeps data of class, in whole days
// (config.Config.Period, divided).
type PeriodFunc func(tenant string, class vault.Class) int

// Extension keeps a tenant's operational keys longer: through Until (a
// UTC day), at most through each key's day + 14.
type Extension struct {
	ID     string
	Tenant string
	Class  vault.Class
	Until  time.Time // a day, midnight UTC; kept through that day
}

// Hold is a legal hold as the planner sees it: a tenant's keys, all of
// them (All) or of the listed days, kept until Expires. A released hold
// is not given to the planner.
type Hold struct {
	ID      string
	Tenant  string
	All     bool            // a tenant hold: every day of Tenant
	Days    map[string]bool // vault.Day strings, when not All
	Expires time.Time
}

func (h Hold) covers(tenant, d string, now time.Time) bool {
	return h.Tenant == tenant && now.Before(h.Expires) && (h.All || h.Days[d])
}

// Verdict is what happens to a key.
type Verdict string

const (
	// Destroy: the key is due and nothing keeps it.
	Destroy Verdict = "destroy"
	// Finish: a destruction was interrupted (tombstone and key file both
	// there); the key is unusable already and its file goes now.
	Finish Verdict = "finish"
	// Keep: the key stays; Due says until when at the earliest.
	Keep Verdict = "keep"
)

// Action is the planner's decision about one key.
type Action struct {
	Key     vault.KeyInfo
	Verdict Verdict
	// Due is the first day the key may be destroyed by its period (and
	// its extension): it is destroyed on the first run on or after Due,
	// unless a hold keeps it.
	Due    time.Time
	Reason string
	// HeldBy names the holds that keep the key, if any.
	HeldBy []string
}

// Plan decides for every key that is not destroyed yet: destroyed on the
// first run at or after D + period + 1 day (UTC days), never earlier; an
// operational key under an extension ending U is kept through
// min(U, D + 14); a hold that covers the key's tenant and day, and has not
// expired, keeps it. Destroyed keys (tombstones) need no decision; an
// interrupted destruction is finished.
func Plan(now time.Time, keys []vault.KeyInfo, period PeriodFunc, exts []Extension, holds []Hold) []Action {
	today := midnight(now)
	out := make([]Action, 0, len(keys))
	for _, k := range keys {
		switch {
		case k.Pending:
			out = append(out, Action{Key: k, Verdict: Finish, Reason: "a destruction was interrupted: the key is marked destroyed, its file goes now"})
		case !k.Shredded:
			out = append(out, decide(today, now, k, period, exts, holds))
		}
	}
	return out
}

func decide(today, now time.Time, k vault.KeyInfo, period PeriodFunc, exts []Extension, holds []Hold) Action {
	d, err := vault.ParseDay(k.Day)
	if err != nil {
		return Action{Key: k, Verdict: Keep, Reason: fmt.Sprintf("day %q does not parse: kept, never destroyed early", k.Day)}
	}
	days := period(k.Tenant, k.Class)
	if days <= 0 {
		return Action{Key: k, Verdict: Keep, Reason: fmt.Sprintf("no retention period for %s: kept", k.Class)}
	}
	due := d.Add(time.Duration(days+1) * day)
	reason := fmt.Sprintf("%s period %dd", k.Class, days)
	if e, until, ok := extended(k, d, exts); ok && !until.Before(due) {
		due = until
		reason = fmt.Sprintf("%s period %dd, extended by %s through %s", k.Class, days, e, vault.Day(until.Add(-day)))
	}
	a := Action{Key: k, Due: due}
	if today.Before(due) {
		a.Verdict, a.Reason = Keep, fmt.Sprintf("%s: kept through %s", reason, vault.Day(due.Add(-day)))
		return a
	}
	for _, h := range holds {
		if h.covers(k.Tenant, k.Day, now) {
			a.HeldBy = append(a.HeldBy, h.ID)
		}
	}
	if len(a.HeldBy) > 0 {
		a.Verdict, a.Reason = Keep, fmt.Sprintf("%s is over, but legal hold %v keeps it", reason, a.HeldBy)
		return a
	}
	a.Verdict, a.Reason = Destroy, fmt.Sprintf("%s: over since %s", reason, vault.Day(due))
	return a
}

// extended returns the latest destruction day any extension gives k:
// the day after min(U, D + 14). Only operational keys are extended.
func extended(k vault.KeyInfo, d time.Time, exts []Extension) (id string, due time.Time, ok bool) {
	if k.Class != vault.Operational {
		return "", time.Time{}, false
	}
	limit := d.Add((MaxExtensionDays + 1) * day)
	for _, e := range exts {
		if e.Tenant != k.Tenant || e.Class != vault.Operational {
			continue
		}
		end := midnight(e.Until).Add(day)
		if end.After(limit) {
			end = limit
		}
		if !ok || end.After(due) {
			id, due, ok = e.ID, end, true
		}
	}
	return id, due, ok
}

func midnight(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
