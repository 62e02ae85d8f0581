package policy

import (
	"fmt"
	"sort"
	"strings"

	"tandem.dev/tandem/internal/config"
)

// Authorize decides one action. It runs CheckPerson first, then the grants
// (default deny: some role of the person must have a rule whose selector
// matches the host and whose Logins contain the login; a forward also needs
// a rule for the host that lists the destination), then FIDO2, then the
// supervision of external persons (M7), then the rules for four-eyes hosts:
// interactive work needs a second person (M6) and non-interactive work an
// approved access request (M8). A frozen host (M27) is decided after the
// grants, so that only persons with access there learn of the freeze.
// Warnings from CheckPerson travel with every verdict.
func (e *Engine) Authorize(r Request) Decision {
	pd := e.CheckPerson(r.Person, r.Key, r.Now, r.Lock)
	if pd.Verdict != Allow {
		return pd
	}
	warnings := pd.Warnings
	name := personName(r.Person)

	switch r.Action {
	case ActionShell, ActionExec, ActionSFTP:
		if d, ok := e.authorizeLogin(r, name, warnings); !ok {
			return d
		}
		if r.Action != ActionSFTP && e.SFTPReadOnly(r.Person, r.Host, r.Login) {
			return e.readOnlyOnly(r, warnings)
		}
	case ActionForward:
		if d, ok := e.authorizeForward(r, name, warnings); !ok {
			return d
		}
		if e.SFTPReadOnly(r.Person, r.Host, r.Login) {
			return e.readOnlyOnly(r, warnings)
		}
	default:
		return deny(fmt.Sprintf("unknown action %q", oneLine(string(r.Action))), "", warnings)
	}
	h := r.Host // not nil: both checks above refuse a missing host

	if r.Key != nil && e.requiresFIDO2(h) && !isFIDO2(r.Key) {
		return deny(fmt.Sprintf("%s requires a FIDO2 security key (sk-ecdsa or sk-ed25519); you logged in with %s", oneLine(h.Name), keyType(r.Key)),
			"register a FIDO2 key (ssh-keygen -t ecdsa-sk) and log in with it", warnings)
	}
	if f, ok := Frozen(h, r.Freezes); ok {
		return e.frozen(r, f, warnings)
	}
	if e.isExternal(r.Person) {
		return e.supervised(r, warnings)
	}
	if !e.FourEyes(h) {
		return Decision{Verdict: Allow, Warnings: warnings}
	}
	return e.fourEyes(r, warnings)
}

// interactive reports whether r is work at a terminal that a second person
// can join: a shell or a named command with a PTY. Without a PTY there is
// no screen to share, and sftp and forwards never have one, whatever the
// client asked for before.
func interactive(r Request) bool {
	return r.PTY && (r.Action == ActionShell || r.Action == ActionExec)
}

// supervised decides for an external person, whose grants have already been
// checked. An external expert owns no work anywhere without a second person
// (M7): on a four-eyes host not even that, elsewhere only a terminal
// session, which the gateway holds in the waiting room until a qualified
// employee joins it. Work without a terminal has nobody watching it, so it
// is refused, and requests never cover an external.
func (e *Engine) supervised(r Request, warnings []string) Decision {
	h := r.Host
	hn := oneLine(h.Name)
	if e.FourEyes(h) {
		return deny(fmt.Sprintf("%s is %s: an external expert may not own a session there", hn, describeHost(h)),
			fmt.Sprintf("ask an employee with access to %s to open the session, then join it with `ssh -t gw join ID`", hn),
			warnings)
	}
	if interactive(r) {
		return Decision{Verdict: NeedsSecondPerson,
			Reason:   "external experts work only under supervision: an employee must join this session before it starts",
			Hint:     "ask an employee with access to " + hn + " to join with `ssh -t gw join ID` (the session shows its ID while it waits)",
			Warnings: warnings}
	}
	return deny("external experts work only under supervision: open a terminal session (ssh -t) and ask an employee to join it",
		fmt.Sprintf("ssh -t -J gw %s@%s, then ask an employee to join with `ssh -t gw join ID`", loginOrPlaceholder(r.Login), hn),
		warnings)
}

// fourEyes decides work on a four-eyes host for a person who is not
// external. A shell is always interactive and needs a terminal and a live
// second person; a command with a terminal is interactive too, unless a
// request that grants terminals covers it (Ansible with ssh -tt); all other
// work needs a covering request.
func (e *Engine) fourEyes(r Request, warnings []string) Decision {
	h := r.Host
	hn, what, login := oneLine(h.Name), describeHost(h), loginOrPlaceholder(r.Login)
	switch {
	case r.Action == ActionShell && r.PTY:
		return Decision{Verdict: NeedsSecondPerson,
			Reason:   fmt.Sprintf("%s is %s: interactive work needs a second person (four-eyes)", hn, what),
			Hint:     "ask a colleague to join with `ssh -t gw join ID` (the session shows its ID while it waits)",
			Warnings: warnings}
	case r.Action == ActionShell:
		// A shell without a terminal (ssh -T) is interactive work that
		// nobody could join and no request may cover.
		return deny(fmt.Sprintf("%s is %s: a shell needs a terminal and a second person joined to it (four-eyes)", hn, what),
			"open it with `ssh -t`; a colleague joins with `ssh -t gw join ID`", warnings)
	case r.Action == ActionExec && r.PTY:
		w, ok := coveringWindow(r, true)
		switch {
		case ok && w.TTY:
			return Decision{Verdict: Allow, Warnings: warnings, Request: w.ID, Terminal: true}
		case ok:
			return deny(fmt.Sprintf("%s is %s: request %s covers commands without a terminal only", hn, what, oneLine(w.ID)),
				"run Ansible with `pipelining = True` or ssh without -t, or work in a four-eyes session (`ssh -t`), or request again with --tty",
				warnings)
		}
		return Decision{Verdict: NeedsSecondPerson,
			Reason:   fmt.Sprintf("%s is %s: a command with a terminal is interactive work and needs a second person (four-eyes)", hn, what),
			Hint:     fmt.Sprintf("ask a colleague to join with `ssh -t gw join ID`, or run it without a terminal (ssh -T) under an approved request: ssh gw request --hosts %s --login %s --for 1h --reason \"…\"", hn, login),
			Warnings: warnings}
	}
	if w, ok := coveringWindow(r, false); ok {
		return Decision{Verdict: Allow, Warnings: warnings, Request: w.ID}
	}
	return Decision{Verdict: NeedsApproval,
		Reason:   fmt.Sprintf("%s is %s: non-interactive access needs an approved access request", hn, what),
		Hint:     fmt.Sprintf("ssh gw request --hosts %s --login %s --for 1h --reason \"…\"", hn, login),
		Warnings: warnings}
}

// coveringWindow returns the first of r.Requests that covers the person as
// r.Login on r.Host at r.Now. With preferTTY a window that grants terminals
// wins over an earlier one that does not, so that holding both never
// refuses a command with a terminal.
func coveringWindow(r Request, preferTTY bool) (RequestWindow, bool) {
	var found RequestWindow
	ok := false
	for _, w := range r.Requests {
		if !covers(w, r.Person.ID, r.Host.Name, r.Login, r.Now) {
			continue
		}
		if !preferTTY || w.TTY {
			return w, true
		}
		if !ok {
			found, ok = w, true
		}
	}
	return found, ok
}

// loginOrPlaceholder is the login as hints show it.
func loginOrPlaceholder(login string) string {
	if login = oneLine(login); login != "" {
		return login
	}
	return "LOGIN"
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

// isFIDO2 reports whether k is a FIDO2 (sk-) key. No key is no FIDO2 key:
// a check that needs one fails closed.
func isFIDO2(k *config.Key) bool {
	return k != nil && strings.HasPrefix(keyType(k), "sk-")
}

// fido2Reason says that h requires a FIDO2 key for what, naming the key
// type the person used.
func fido2Reason(h *config.Host, what string, k *config.Key) string {
	return fmt.Sprintf("%s requires a FIDO2 security key (sk-ecdsa or sk-ed25519) %s; you logged in with %s", oneLine(h.Name), what, keyType(k))
}

func keyType(k *config.Key) string {
	if k == nil {
		return "no key"
	}
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

// authorizeForward checks a port forward. It leaves from the target, so it
// needs a host route: the destination is resolved on r.Host, and what the
// gateway can know about it is only that some rule for r.Host lists it.
// The login must be granted there as for a session; the target's own
// AllowTcpForwarding decides last.
func (e *Engine) authorizeForward(r Request, name string, warnings []string) (Decision, bool) {
	if r.Host == nil {
		return deny("port forwarding needs a host route: the forward leaves from the target",
			"forward through a host, e.g. `ssh -J gw -L 5432:localhost:5432 root@db1`", warnings), false
	}
	dest := oneLine(r.ForwardTo)
	host, port, err := splitDest(r.ForwardTo)
	if err != nil {
		return deny("port forwarding refused: "+oneLine(err.Error()), "forward to host:port, e.g. localhost:5432", warnings), false
	}
	if d, ok := e.authorizeLogin(r, name, warnings); !ok {
		return d, false
	}
	for _, role := range e.rolesOf(r.Person) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if rule.Hosts.Matches(r.Host) && forwardAllowed(rule.Forward, host, port) {
				return Decision{}, true
			}
		}
	}
	hn := oneLine(r.Host.Name)
	return deny(fmt.Sprintf("%s may not forward to %s from %s", name, dest, hn),
		fmt.Sprintf("ask for a role whose rule for %s lists %s in forward", hn, dest), warnings), false
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
			if !rule.Hosts.Matches(h) {
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

// FourEyes reports whether interactive work on h needs a second person: its
// environment is listed in Policy.FourEyes, where "staging:real_data" means
// staging hosts with RealData and "staging" all staging hosts. An empty list
// means [production, staging:real_data]. A host in an environment the engine
// does not know, and a missing (nil) host, are treated as four-eyes (fail
// closed). This is the only four-eyes rule; configuration validation checks
// the list's entries, not hosts against it.
func (e *Engine) FourEyes(h *config.Host) bool {
	if h == nil {
		return true
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
		if !hasQual || qual != config.RealDataQualifier || h.RealData {
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

// readOnlyOnly refuses a shell, command or forward for a login that only
// sftp_read_only rules grant: such a rule grants the sftp subsystem and
// nothing else. A command could write anyway (`scp -O` is an exec of
// `scp -t`, `ssh host 'cat > f'` writes without SFTP), so read-only would
// be a promise the gateway cannot keep.
func (e *Engine) readOnlyOnly(r Request, warnings []string) Decision {
	login, hn := oneLine(r.Login), oneLine(r.Host.Name)
	what := map[Action]string{ActionShell: "a shell", ActionExec: "a command", ActionForward: "port forwarding"}[r.Action]
	return deny(fmt.Sprintf("%s on %s is granted by sftp_read_only rules only, which grant read-only SFTP only: %s is refused", login, hn, what),
		fmt.Sprintf("use sftp or scp (without -O) to read files; ask for a role that grants %s on %s for commands", login, hn), warnings)
}
