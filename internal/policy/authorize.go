package policy

import (
	"fmt"
	"net"
	"sort"
	"strings"

	"tandem.dev/tandem/internal/config"
)

// Authorize decides one action. It runs CheckPerson first, then the grants
// (default deny: some role of the person must have a rule whose selector
// matches the host and whose Logins contain the login), then the rules for
// four-eyes hosts: external persons never own a session there, interactive
// work needs a second person (M6) and non-interactive work an approved
// access request (M8). Warnings from CheckPerson travel with every verdict.
func (e *Engine) Authorize(r Request) Decision {
	pd := e.CheckPerson(r.Person, r.Key, r.Now, r.Lock)
	if pd.Verdict != Allow {
		return pd
	}
	warnings := pd.Warnings
	name := personName(r.Person)

	var target *config.Host // the host whose four-eyes status applies
	switch r.Action {
	case ActionShell, ActionExec, ActionSFTP:
		d, ok := e.authorizeLogin(r, name, warnings)
		if !ok {
			return d
		}
		target = r.Host
	case ActionForward:
		d, ok := e.authorizeForward(r, name, warnings)
		if !ok {
			return d
		}
		target = r.Host
		if target == nil {
			target = e.hostByDest(r.ForwardTo)
		}
	default:
		return deny(fmt.Sprintf("unknown action %q", oneLine(string(r.Action))), "", warnings)
	}

	if target != nil && r.Key != nil && e.requiresFIDO2(target) && !isFIDO2(r.Key) {
		return deny(fmt.Sprintf("%s requires a FIDO2 security key (sk-ecdsa or sk-ed25519); you logged in with %s", oneLine(target.Name), keyType(r.Key)),
			"register a FIDO2 key (ssh-keygen -t ecdsa-sk) and log in with it", warnings)
	}
	if target == nil || !e.FourEyes(target) {
		return Decision{Verdict: Allow, Warnings: warnings}
	}
	what := describeHost(target)
	tn := oneLine(target.Name)
	if e.isExternal(r.Person) {
		return deny(fmt.Sprintf("%s is %s: an external expert may not own a session there", tn, what),
			fmt.Sprintf("ask an employee with access to %s to open the session, then join it with `ssh -t gw join ID`", tn),
			warnings)
	}
	if r.Action == ActionShell {
		return Decision{Verdict: NeedsSecondPerson,
			Reason:   fmt.Sprintf("%s is %s: interactive work needs a second person (four-eyes)", tn, what),
			Hint:     "ask a colleague to join with `ssh -t gw join ID` (the session shows its ID while it waits)",
			Warnings: warnings}
	}
	login := oneLine(r.Login)
	if login == "" {
		login = "LOGIN"
	}
	return Decision{Verdict: NeedsApproval,
		Reason:   fmt.Sprintf("%s is %s: non-interactive access needs an approved access request", tn, what),
		Hint:     fmt.Sprintf("ssh gw request --hosts %s --login %s --for 1h --reason \"…\"", tn, login),
		Warnings: warnings}
}

// requiresFIDO2 reports whether policy.require_fido2 lists the host's
// environment (M2: FIDO2 keys can be required for production).
func (e *Engine) requiresFIDO2(h *config.Host) bool {
	if e.cfg == nil {
		return false
	}
	for _, env := range e.cfg.Policy.RequireFIDO2 {
		if env == h.Environment {
			return true
		}
	}
	return false
}

func isFIDO2(k *config.Key) bool {
	t := keyType(k)
	return strings.HasPrefix(t, "sk-")
}

func keyType(k *config.Key) string {
	if k.PublicKey != nil {
		return k.PublicKey.Type()
	}
	if f := strings.Fields(k.Key); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// authorizeLogin checks the grant for a login on r.Host. It returns ok=false
// with a Deny decision when there is none.
func (e *Engine) authorizeLogin(r Request, name string, warnings []string) (Decision, bool) {
	h := r.Host
	if h == nil {
		return deny("no such host", "run `ssh gw whoami` to list the hosts you may use", warnings), false
	}
	hn := oneLine(h.Name)
	if r.Login == "" {
		return deny(fmt.Sprintf("no login given for %s", hn),
			fmt.Sprintf("name the login, e.g. `ssh -J %s@gw root@%s`", name, hn), warnings), false
	}
	granted, matched := e.loginsOn(r.Person, h)
	if !matched {
		return deny(fmt.Sprintf("%s has no access to host %s", name, hn),
			fmt.Sprintf("ask for a role that grants %s", hn), warnings), false
	}
	for _, l := range granted {
		if l == r.Login {
			return Decision{}, true
		}
	}
	reason := fmt.Sprintf("%s may not log in as %s on %s", name, oneLine(r.Login), hn)
	if len(granted) > 0 {
		reason += " (granted: " + strings.Join(granted, ", ") + ")"
	}
	return deny(reason, fmt.Sprintf("ask for a role that grants %s on %s", oneLine(r.Login), hn), warnings), false
}

// authorizeForward checks a port-forwarding destination. When r.Host is
// given, the rule's selector must also match it.
func (e *Engine) authorizeForward(r Request, name string, warnings []string) (Decision, bool) {
	dest := oneLine(r.ForwardTo)
	host, port, err := splitDest(r.ForwardTo)
	if err != nil {
		return deny("port forwarding refused: "+oneLine(err.Error()), "forward to host:port, e.g. db1:5432", warnings), false
	}
	for _, role := range e.rolesOf(r.Person) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if r.Host != nil && !matches(rule.Hosts, r.Host) {
				continue
			}
			if forwardAllowed(rule.Forward, host, port) {
				return Decision{}, true
			}
		}
	}
	return deny(fmt.Sprintf("%s may not forward to %s", name, dest),
		fmt.Sprintf("ask for a role that allows forwarding to %s", dest), warnings), false
}

// loginsOn returns the sorted logins the person's roles grant on h, and
// whether any rule matched h at all (so a refusal can say "no access" or
// "not as this login"). When the host lists its logins, only those count.
func (e *Engine) loginsOn(p *config.Person, h *config.Host) ([]string, bool) {
	set := map[string]bool{}
	matched := false
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if !matches(rule.Hosts, h) {
				continue
			}
			matched = true
			for _, l := range rule.Logins {
				if l != "" && (len(h.Logins) == 0 || contains(h.Logins, l)) {
					set[l] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out, matched
}

// isExternal reports whether the person holds any external role. Holding
// one is enough: M7 puts every external expert under an employee's session.
func (e *Engine) isExternal(p *config.Person) bool {
	for _, r := range e.rolesOf(p) {
		if r.External {
			return true
		}
	}
	return false
}

// hostByDest finds the configured host a forwarding destination names, by
// host name or by the host part of its address, so that forwarding to a
// four-eyes host is not a way around four-eyes.
func (e *Engine) hostByDest(dest string) *config.Host {
	host, _, err := splitDest(dest)
	if err != nil {
		return nil
	}
	for i := range e.cfg.Hosts {
		h := &e.cfg.Hosts[i]
		if strings.EqualFold(h.Name, host) {
			return h
		}
		addr := h.Address
		if a, _, err := net.SplitHostPort(addr); err == nil {
			addr = a
		}
		if addr != "" && strings.EqualFold(addr, host) {
			return h
		}
	}
	return nil
}

// FourEyes reports whether interactive work on h needs a second person: its
// environment is listed in Policy.FourEyes, where "staging:real_data" means
// staging hosts with RealData and "staging" all staging hosts. An empty list
// means [production, staging:real_data]. A host in an environment the engine
// does not know is treated as four-eyes (fail closed).
func (e *Engine) FourEyes(h *config.Host) bool {
	if h == nil {
		return false
	}
	switch h.Environment {
	case config.Production, config.Staging, config.Test:
	default:
		return true
	}
	list := e.cfg.Policy.FourEyes
	if len(list) == 0 {
		list = defaultFourEyes
	}
	for _, entry := range list {
		env, qual, hasQual := strings.Cut(strings.TrimSpace(entry), ":")
		if env != h.Environment {
			continue
		}
		// An unknown qualifier is read as no qualifier: the stricter reading.
		if !hasQual || qual != realDataQualifier || h.RealData {
			return true
		}
	}
	return false
}

// describeHost names why a host is four-eyes, for reasons.
func describeHost(h *config.Host) string {
	switch {
	case h.Environment == config.Staging && h.RealData:
		return "a staging host with real data"
	case h.Environment == config.Production || h.Environment == config.Staging || h.Environment == config.Test:
		return "a " + h.Environment + " host"
	default:
		return "a four-eyes host"
	}
}

// Grants lists, per host, the logins the person may use, sorted by host name
// then login. Hosts without any login are left out. Obligations and locks are
// not considered here; CheckPerson reports those.
func (e *Engine) Grants(p *config.Person) []Grant {
	var out []Grant
	for i := range e.cfg.Hosts {
		h := &e.cfg.Hosts[i]
		logins, _ := e.loginsOn(p, h)
		if len(logins) == 0 {
			continue
		}
		out = append(out, Grant{
			Host:        h.Name,
			Tenant:      h.Tenant,
			Environment: h.Environment,
			Logins:      logins,
			FourEyes:    e.FourEyes(h),
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
