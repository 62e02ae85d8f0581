package policy

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"tandem.dev/tandem/internal/config"
)

// Access requests (M8): non-interactive work on four-eyes hosts passes only
// under a time-boxed, purpose-bound request that other persons approved.
// The rules here are pure; the store keeps the requests and the gateway
// asks these questions before each transition and each connection.

// Limits of access requests that the configuration does not set. (The cap
// of a request's window when Policy.MaxRequestDuration is unset is
// config.DefaultMaxRequest.)
const (
	// minReasonLen makes a reason long enough to name a purpose or a
	// ticket ("fix", "x" are not reasons); maxReasonLen keeps it a line.
	minReasonLen = 10
	maxReasonLen = 500
	// maxSelectorLen bounds the selector text a person may type.
	maxSelectorLen = 1024
)

// RequestWindow is what the engine needs of a stored access request to
// decide whether it covers a connection. It carries plain values so that
// the policy package does not depend on the store.
type RequestWindow struct {
	ID          string
	Requester   string    // person id
	Hosts       []string  // host names
	Login       string    // the one login the request is for
	From, Until time.Time // the approved window [From, Until)
	Approved    bool      // stored state is approved (not open, denied or revoked)
	// TTY: the request asked for terminals (`--tty`) and the approvers
	// accepted that, so a command with a PTY runs under it. Without it a
	// request covers only work without a terminal.
	TTY bool
}

// covers reports whether w lets person work as login on host at now: w is
// approved, belongs to person, names host and login, and now lies in
// [From, Until). An approval thus ends with its window, by itself.
func covers(w RequestWindow, person, host, login string, now time.Time) bool {
	if !w.Approved || person == "" || w.Requester != person || login == "" || w.Login != login {
		return false
	}
	if now.Before(w.From) || !now.Before(w.Until) {
		return false
	}
	return contains(w.Hosts, host)
}

// MaxRequestDuration is the longest window a request may ask for:
// Policy.MaxRequestDuration, or config.DefaultMaxRequest (8 hours) when unset.
func (e *Engine) MaxRequestDuration() time.Duration {
	if d := e.cfg.Policy.MaxRequestDuration.Duration; d > 0 {
		return d
	}
	return config.DefaultMaxRequest
}

// CheckRequest decides whether p may create an access request for login on
// hosts for d, giving reason. It checks, in this order: CheckPerson, that
// p is not external (an external expert works only under supervision, in a
// session an employee joins, M7), that hosts is not empty, that p's roles
// grant login on every host (a request never widens what a person may do,
// it only lifts the four-eyes barrier for non-interactive work), that
// 0 < d <= the cap, and that the reason names a purpose (at least 10
// characters). Hosts that do not need a request are allowed with a warning.
func (e *Engine) CheckRequest(p *config.Person, k *config.Key, hosts []*config.Host, login string, d time.Duration, reason string, now time.Time, lock string) Decision {
	pd := e.CheckPerson(p, k, now, lock)
	if pd.Verdict != Allow {
		return pd
	}
	warnings := pd.Warnings
	name := personName(p)
	if e.isExternal(p) {
		return deny("external experts never request access: they work only under supervision, in a session an employee joins",
			"open a terminal session (ssh -t) and ask an employee to join it", warnings)
	}
	if len(hosts) == 0 {
		return deny("the request names no host", "name hosts, e.g. --hosts db1,db2 or --hosts tenant=acme,environment=production", warnings)
	}
	if login == "" {
		return deny("the request names no login", "name the login, e.g. --login deploy", warnings)
	}
	l := oneLine(login)
	var easy []string // hosts that need no request
	for _, h := range hosts {
		if h == nil {
			return deny("the request names an unknown host", "run `ssh gw whoami` to list the hosts you may use", warnings)
		}
		hn := oneLine(h.Name)
		granted, _ := e.loginsOn(p, h)
		if !contains(granted, login) {
			return deny(fmt.Sprintf("%s may not log in as %s on %s; a request cannot grant more than your roles do", name, l, hn),
				fmt.Sprintf("leave %s out of the request, or ask for a role that grants %s on it", hn, l), warnings)
		}
		if !e.FourEyes(h) {
			easy = append(easy, hn)
		}
	}
	limit := e.MaxRequestDuration()
	if d <= 0 {
		return deny("the request's duration must be longer than 0", fmt.Sprintf("ask for at most %s, e.g. --for 1h", limit), warnings)
	}
	if d > limit {
		return deny(fmt.Sprintf("a request lasts at most %s, not %s", limit, d),
			fmt.Sprintf("ask for --for %s or less; request again when it ends", limit), warnings)
	}
	reason = strings.TrimSpace(reason)
	if !utf8.ValidString(reason) || hasControl(reason) {
		return deny("the reason must be one line of text without control characters",
			`name the purpose and the ticket, e.g. --reason "rotate TLS certificates, TICKET-123"`, warnings)
	}
	if n := utf8.RuneCountInString(reason); n < minReasonLen || n > maxReasonLen {
		return deny(fmt.Sprintf("the reason must say what the work is for in %d to %d characters", minReasonLen, maxReasonLen),
			`name the purpose and the ticket, e.g. --reason "rotate TLS certificates, TICKET-123"`, warnings)
	}
	if len(easy) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s %s not need a request: non-interactive work there is allowed without one",
			strings.Join(easy, ", "), plural(len(easy), "does", "do")))
	}
	return Decision{Verdict: Allow, Warnings: warnings}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// CanDecide decides whether approver may approve or deny a request of
// requester for hosts. The approver must pass CheckPerson, must not be the
// requester (no self-approval), must not be external (external experts
// never approve), and for every host some role of theirs must have a rule
// with approve: true whose selector matches it; an approve right for part
// of a request is no right to approve the request. An approval opens a host
// as much as typing on it, so a host that requires FIDO2 (M2) requires it
// of the approver's key (k nil counts as none: this fails closed).
func (e *Engine) CanDecide(approver *config.Person, k *config.Key, requester string, hosts []*config.Host, now time.Time, lock string) Decision {
	pd := e.CheckPerson(approver, k, now, lock)
	if pd.Verdict != Allow {
		return pd
	}
	warnings := pd.Warnings
	if approver.ID == requester {
		return deny("you cannot approve your own request", "ask a colleague with the approve right to decide it", warnings)
	}
	if e.isExternal(approver) {
		return deny("external experts never approve access requests", "ask an employee with the approve right to decide it", warnings)
	}
	if len(hosts) == 0 {
		return deny("the request names no host", "", warnings)
	}
	name := personName(approver)
	for _, h := range hosts {
		if h == nil {
			return deny("the request names a host that is no longer configured", "deny it and let the requester ask again", warnings)
		}
		if !e.mayApprove(approver, h) {
			hn := oneLine(h.Name)
			return deny(fmt.Sprintf("%s may not approve requests for %s", name, hn),
				fmt.Sprintf("ask someone whose role has approve: true for %s", hn), warnings)
		}
		if e.requiresFIDO2(h) && !isFIDO2(k) {
			return deny(fido2Reason(h, "to approve its requests", k),
				"register a FIDO2 key (ssh-keygen -t ecdsa-sk) and log in with it to decide", warnings)
		}
	}
	return Decision{Verdict: Allow, Warnings: warnings}
}

// MayRevoke decides whether p may revoke (end early) a request of
// requester for hosts. The requester may always revoke their own request:
// revoking only takes access away. Anybody else needs what deciding it
// needs (CanDecide), so hosts that are no longer configured (nil entries)
// refuse it.
func (e *Engine) MayRevoke(p *config.Person, k *config.Key, requester string, hosts []*config.Host, now time.Time, lock string) Decision {
	if p != nil && p.ID != "" && p.ID == requester {
		return Decision{Verdict: Allow}
	}
	return e.CanDecide(p, k, requester, hosts, now, lock)
}

// mayApprove reports whether some role of p has an approve rule for h.
func (e *Engine) mayApprove(p *config.Person, h *config.Host) bool {
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if rule.Approve && rule.Hosts.Matches(h) {
				return true
			}
		}
	}
	return false
}

// ApproversNeeded is how many distinct persons must approve a request for
// hosts: the largest Policy.Approvers entry among the hosts' environments,
// at least 1. A host in an environment the engine does not know needs the
// largest number configured anywhere (fail closed).
func (e *Engine) ApproversNeeded(hosts []*config.Host) int {
	need := config.DefaultApprovers
	for _, h := range hosts {
		if h == nil {
			continue
		}
		switch h.Environment {
		case config.Production, config.Staging, config.Test:
			need = max(need, e.cfg.Policy.Approvers[h.Environment]) // a missing entry reads 0: the default stands
		default:
			for _, n := range e.cfg.Policy.Approvers {
				need = max(need, n)
			}
		}
	}
	return need
}

// ResolveHosts turns the selector text of `ssh gw request --hosts` into the
// configured hosts it names, sorted by name. The text is a comma-separated
// list of terms:
//
//   - a host name or glob ("db1", "web*"): the hosts matching any of them;
//   - tenant=ID, environment=ENV, label:KEY=VALUE: all of them must hold.
//
// Both kinds combine as in a role's selector: "web*,tenant=acme" is acme's
// web hosts. A plain name (no glob) that names no host is an error, so a
// typo never quietly drops a host from a request; so are an empty result,
// an empty or repeated term and a malformed glob.
func (e *Engine) ResolveHosts(selector string) ([]*config.Host, error) {
	sel, exact, err := parseHostSelector(selector)
	if err != nil {
		return nil, err
	}
	for _, n := range exact {
		if !e.hostExists(n) {
			return nil, fmt.Errorf("no host is named %q", oneLine(n))
		}
	}
	var out []*config.Host
	for i := range e.cfg.Hosts {
		if h := &e.cfg.Hosts[i]; sel.Matches(h) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q selects no host", oneLine(selector))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (e *Engine) hostExists(name string) bool {
	for i := range e.cfg.Hosts {
		if e.cfg.Hosts[i].Name == name {
			return true
		}
	}
	return false
}

// parseHostSelector parses the selector text into a config.Selector, plus
// the plain names (without glob characters) it lists.
func parseHostSelector(text string) (sel config.Selector, exact []string, err error) {
	if len(text) > maxSelectorLen {
		return sel, nil, fmt.Errorf("host selector longer than %d characters", maxSelectorLen)
	}
	if strings.TrimSpace(text) == "" {
		return sel, nil, errors.New("empty host selector; name hosts, e.g. db1,web* or tenant=acme,environment=production")
	}
	for term := range strings.SplitSeq(text, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			return sel, nil, fmt.Errorf("empty term in host selector %q", oneLine(text))
		}
		key, value, isKV := strings.Cut(term, "=")
		if !isKV {
			if _, err := path.Match(term, ""); err != nil || strings.ContainsAny(term, " \t") || hasControl(term) {
				return sel, nil, fmt.Errorf("%q is not a host name or glob", oneLine(term))
			}
			if contains(sel.Names, term) {
				return sel, nil, fmt.Errorf("host %q is named twice", oneLine(term))
			}
			sel.Names = append(sel.Names, term)
			if !strings.ContainsAny(term, `*?[\`) {
				exact = append(exact, term)
			}
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if value == "" || hasControl(value) {
			return sel, nil, fmt.Errorf("%q has no valid value", oneLine(term))
		}
		switch {
		case key == "tenant":
			if sel.Tenant != "" {
				return sel, nil, errors.New("tenant= given twice")
			}
			sel.Tenant = value
		case key == "environment":
			switch value {
			case config.Production, config.Staging, config.Test:
			default:
				return sel, nil, fmt.Errorf("environment %q is not one of production, staging, test", oneLine(value))
			}
			if sel.Environment != "" {
				return sel, nil, errors.New("environment= given twice")
			}
			sel.Environment = value
		case strings.HasPrefix(key, "label:"):
			label := strings.TrimSpace(strings.TrimPrefix(key, "label:"))
			if label == "" || hasControl(label) {
				return sel, nil, fmt.Errorf("%q names no label", oneLine(term))
			}
			if _, dup := sel.Labels[label]; dup {
				return sel, nil, fmt.Errorf("label %q given twice", oneLine(label))
			}
			if sel.Labels == nil {
				sel.Labels = map[string]string{}
			}
			sel.Labels[label] = value
		default:
			return sel, nil, fmt.Errorf("unknown selector term %q (use tenant=, environment=, label:KEY= or host names)", oneLine(key))
		}
	}
	return sel, exact, nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
