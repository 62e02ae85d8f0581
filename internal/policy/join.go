package policy

import (
	"fmt"
	"time"

	"tandem.dev/tandem/internal/config"
)

// JoinRequest asks whether a person may join another person's session.
type JoinRequest struct {
	Person *config.Person
	Key    *config.Key
	Owner  string       // person id of the session's owner
	Host   *config.Host // the session's host
	Mode   string       // config.JoinPeer or config.JoinObserver; "" picks the strongest granted
	Now    time.Time
	Lock   string
	// Freezes in force (M27): on a frozen host only the incident sessions
	// of owners with an incident grant there may be joined.
	Freezes []Freeze
}

// JoinDecision is the answer: the mode granted, and whether the joiner is
// an external expert (who never counts as the second person, M7).
type JoinDecision struct {
	Decision
	Mode     string
	External bool
}

// Join decides whether r.Person may join a session on r.Host. The mode
// comes from the `join` lists of the rules whose selector matches the host;
// asking for peer where only observer is granted is refused, not
// downgraded, so nobody is surprised by a read-only terminal. A peer types
// on the host, so a host that requires FIDO2 (M2) requires it of the peer
// as of the owner; an observer only watches and needs none.
func (e *Engine) Join(r JoinRequest) JoinDecision {
	if d := e.CheckPerson(r.Person, r.Key, r.Now, r.Lock); d.Verdict != Allow {
		return JoinDecision{Decision: d}
	}
	name := personName(r.Person)
	if r.Person.ID == r.Owner {
		return JoinDecision{Decision: deny("you cannot be the second person in your own session", "ask a colleague to join", nil)}
	}
	if r.Host == nil {
		return JoinDecision{Decision: deny("the session's host is no longer configured", "", nil)}
	}
	if f, ok := Frozen(r.Host, r.Freezes); ok && !e.Incident(e.cfg.Person(r.Owner), r.Host) {
		return JoinDecision{Decision: deny(FrozenReason(r.Host, f), frozenHint, nil)}
	}
	modes := e.JoinModes(r.Person, r.Host)
	if len(modes) == 0 {
		return JoinDecision{Decision: deny(fmt.Sprintf("%s may not join sessions on %s", name, r.Host.Name),
			"ask for a role whose rule for this host has join: [peer] or [observer]", nil)}
	}
	mode := r.Mode
	if mode == "" {
		mode = modes[0]
	}
	if !contains(modes, mode) {
		return JoinDecision{Decision: deny(fmt.Sprintf("%s may join sessions on %s only as %s", name, r.Host.Name, modes[0]),
			"join with --"+modes[0], nil)}
	}
	if mode == config.JoinPeer && e.requiresFIDO2(r.Host) && !isFIDO2(r.Key) {
		return JoinDecision{Decision: deny(fido2Reason(r.Host, "to type in its sessions", r.Key),
			"join with --observer to watch, or register a FIDO2 key (ssh-keygen -t ecdsa-sk) and log in with it", nil)}
	}
	return JoinDecision{Decision: Decision{Verdict: Allow}, Mode: mode, External: e.isExternal(r.Person)}
}

// MayListSession reports whether `ssh gw sessions` shows p the shared
// session that owner runs on h: p owns it, or some role of p grants a join
// mode on h. Listing is not joining: Join decides that, with the lock, the
// obligations and the key. A person without an id owns nothing.
func (e *Engine) MayListSession(p *config.Person, owner string, h *config.Host) bool {
	if p == nil {
		return false
	}
	if p.ID != "" && p.ID == owner {
		return true
	}
	return len(e.JoinModes(p, h)) > 0
}

// JoinModes lists the join modes the person's roles grant on h, strongest
// first (peer before observer). A peer may always observe.
func (e *Engine) JoinModes(p *config.Person, h *config.Host) []string {
	peer, observer := false, false
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if !rule.Hosts.Matches(h) {
				continue
			}
			for _, m := range rule.Join {
				switch m {
				case config.JoinPeer:
					peer = true
				case config.JoinObserver:
					observer = true
				}
			}
		}
	}
	var out []string
	if peer {
		out = append(out, config.JoinPeer)
	}
	if peer || observer {
		out = append(out, config.JoinObserver)
	}
	return out
}
