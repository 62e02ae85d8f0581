package policy

import (
	"fmt"
	"time"

	"tandem.dev/tandem/internal/config"
)

// MayJump decides whether p may open a jump channel (`ssh -J gw HOST`) to
// h: p must pass CheckPerson (lock, obligations, key age and strength) and
// some role of p must grant a login on h. Which login, and whether the work
// then needs a second person or a request, the inner connection's
// Authorize decides; this only keeps the gateway from presenting a host
// the person has no access to. A nil host is denied, and so is a frozen
// one (M27) unless p may open an incident session there.
func (e *Engine) MayJump(p *config.Person, k *config.Key, h *config.Host, now time.Time, lock string, freezes []Freeze) Decision {
	pd := e.CheckPerson(p, k, now, lock)
	if pd.Verdict != Allow {
		return pd
	}
	if h == nil {
		return deny("no such host", "run `ssh gw whoami` to list the hosts you may use", pd.Warnings)
	}
	if logins, _ := e.loginsOn(p, h); len(logins) == 0 {
		hn := oneLine(h.Name)
		return deny(fmt.Sprintf("%s has no access to host %s", personName(p), hn),
			fmt.Sprintf("ask for a role that grants %s", hn), pd.Warnings)
	}
	if f, ok := Frozen(h, freezes); ok && !e.Incident(p, h) {
		return deny(FrozenReason(h, f), frozenHint, pd.Warnings)
	}
	return Decision{Verdict: Allow, Warnings: pd.Warnings}
}
