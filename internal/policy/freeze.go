package policy

import (
	"fmt"
	"strings"

	"tandem.dev/tandem/internal/config"
)

// Freeze kinds: what a freeze selects (M27).
const (
	FreezeHost   = "host"   // Value is a host name
	FreezeTenant = "tenant" // Value is a tenant id
	FreezeLabel  = "label"  // Value is KEY=VALUE, a host label
	// FreezeAll selects every host. Nobody stores it: the gateway puts it
	// in force when the freeze table fails its integrity check, since the
	// freeze that went missing could be any host's (fail closed).
	FreezeAll = "all"
)

// Freeze is a freeze in force, as the gateway read it from the store.
type Freeze struct {
	ID     string
	Kind   string // FreezeHost, FreezeTenant, FreezeLabel or FreezeAll
	Value  string
	Reason string
}

// Frozen returns the first of freezes that selects h. A nil host is
// frozen by any freeze at all (fail closed); an unknown kind selects
// every host, for the same reason.
func Frozen(h *config.Host, freezes []Freeze) (Freeze, bool) {
	for _, f := range freezes {
		if selects(f, h) {
			return f, true
		}
	}
	return Freeze{}, false
}

func selects(f Freeze, h *config.Host) bool {
	if h == nil {
		return true
	}
	switch f.Kind {
	case FreezeHost:
		return f.Value == h.Name
	case FreezeTenant:
		return f.Value == h.Tenant
	case FreezeLabel:
		k, v, ok := strings.Cut(f.Value, "=")
		hv, has := h.Labels[k]
		return ok && has && hv == v
	default:
		return true
	}
}

// FrozenReason is the line a person reads when a freeze refuses or ends
// their work on h.
func FrozenReason(h *config.Host, f Freeze) string {
	hn := "the host"
	if h != nil {
		hn = oneLine(h.Name)
	}
	what := ""
	switch f.Kind {
	case FreezeHost:
	case FreezeTenant:
		what = " (tenant " + oneLine(f.Value) + ")"
	case FreezeLabel:
		what = " (label " + oneLine(f.Value) + ")"
	}
	reason := oneLine(f.Reason)
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("%s is frozen%s: %s", hn, what, reason)
}

// frozenHint is the advice under a freeze refusal.
const frozenHint = "only an incident session with a second person may work there until it is unfrozen; ask the gateway's operators"

// Incident reports whether some role of p has a rule with incident: true
// whose selector matches h: p may open a four-eyes session on h while it
// is frozen. Externals never may (validation refuses the flag on their
// roles; this holds for a configuration built in code too).
func (e *Engine) Incident(p *config.Person, h *config.Host) bool {
	if p == nil || h == nil || e.isExternal(p) {
		return false
	}
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			if role.Allow[i].Incident && role.Allow[i].Hosts.Matches(h) {
				return true
			}
		}
	}
	return false
}

// frozen decides work on a frozen host for a person whose grants,
// FIDO2 and lock have been checked: only an interactive session of a
// person with an incident grant on h, and that one with a second person
// joined whatever the host's environment (M27 with M6).
func (e *Engine) frozen(r Request, f Freeze, warnings []string) Decision {
	reason := FrozenReason(r.Host, f)
	if !interactive(r) || !e.Incident(r.Person, r.Host) {
		return deny(reason, frozenHint, warnings)
	}
	return Decision{Verdict: NeedsSecondPerson,
		Reason:   reason + "; incident session: a second person must join before it starts (four-eyes)",
		Hint:     "ask a colleague to join with `ssh -t gw join ID` (the session shows its ID while it waits)",
		Warnings: warnings}
}

// SurvivesFreeze reports why a live session of owner on h must end under
// freezes, or "" when it may go on: h is not frozen, or the session is an
// incident session (fourEyes: it runs with a second person, and owner
// holds an incident grant on h).
func (e *Engine) SurvivesFreeze(owner *config.Person, h *config.Host, fourEyes bool, freezes []Freeze) string {
	f, ok := Frozen(h, freezes)
	if !ok || (fourEyes && e.Incident(owner, h)) {
		return ""
	}
	return FrozenReason(h, f)
}

// MayFreeze decides whether p may freeze and unfreeze (`tandem freeze`):
// as MayHold, with the permission freeze. A freeze ends other persons'
// work at once, so it is a right of named employees only.
func (e *Engine) MayFreeze(p *config.Person) Decision {
	return e.mayLocally(p, config.PermissionFreeze, "freeze or unfreeze")
}
