package policy

import (
	"fmt"
	"time"

	"tandem.dev/tandem/internal/config"
)

// MayRead reports whether the person may read and export recordings of
// sessions on h (M13): some rule of their roles with read: true matches
// the host. Reading is bound to hosts, and through them to tenants; there
// is no "read everything" short of a rule that matches every host.
// External experts never read, whatever their roles say (M7; the config
// refuses such roles, and this holds for a Config built in code as well).
func (e *Engine) MayRead(p *config.Person, h *config.Host) bool {
	if e.isExternal(p) {
		return false
	}
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			if role.Allow[i].Read && role.Allow[i].Hosts.Matches(h) {
				return true
			}
		}
	}
	return false
}

// SFTPReadOnly reports whether the person's SFTP access to login on h is
// read-only: every rule that grants that login there says sftp_read_only.
// One grant without it is enough for read-write, as with any other grant.
func (e *Engine) SFTPReadOnly(p *config.Person, h *config.Host, login string) bool {
	granted := false
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			rule := &role.Allow[i]
			if !rule.Hosts.Matches(h) || !contains(rule.Logins, login) {
				continue
			}
			if !rule.SFTPReadOnly {
				return false
			}
			granted = true
		}
	}
	return granted
}

// MayReadAudit reports whether the person may read the audit events of
// tenant with `ssh gw audit show` (M9): some rule of their roles with
// audit: true matches a host of that tenant. The grant is per tenant, not
// per host: a tenant's events name its hosts, its persons' requests and
// their sessions together. Events of no tenant (logins, gateway start,
// configuration changes, reads of the log itself) are the operator's
// (`tandem audit show`) and nobody may read them here. External experts
// never read (M7).
func (e *Engine) MayReadAudit(p *config.Person, tenant string) bool {
	if tenant == "" || e.isExternal(p) {
		return false
	}
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			if role.Allow[i].Audit && e.matchesTenant(&role.Allow[i].Hosts, tenant) {
				return true
			}
		}
	}
	return false
}

// matchesTenant reports whether s matches some configured host of tenant.
func (e *Engine) matchesTenant(s *config.Selector, tenant string) bool {
	for i := range e.cfg.Hosts {
		if h := &e.cfg.Hosts[i]; h.Tenant == tenant && s.Matches(h) {
			return true
		}
	}
	return false
}

// MayLock decides whether p may lock and unlock persons (`ssh gw lock`,
// M5): p passes CheckPerson (lock is p's own lock state), is not external,
// and some role of p has the permission lock. Locking ends other persons'
// work at once, so it is a right of employees only.
func (e *Engine) MayLock(p *config.Person, k *config.Key, now time.Time, lock string) Decision {
	return e.mayPermission(p, k, now, lock, config.PermissionLock, "lock or unlock persons")
}

// MayConfigure decides whether p may reload the gateway's configuration
// file with `ssh gw reload` (M12): as MayLock, with the permission
// configure. The reload is recorded as p's; the file itself is edited by
// whoever may write it on the gateway host.
func (e *Engine) MayConfigure(p *config.Person, k *config.Key, now time.Time, lock string) Decision {
	return e.mayPermission(p, k, now, lock, config.PermissionConfigure, "reload the configuration")
}

// mayPermission decides a gateway-wide permission perm, which lets p do
// what: p passes CheckPerson, is not external, and a role of p has perm.
func (e *Engine) mayPermission(p *config.Person, k *config.Key, now time.Time, lock, perm, what string) Decision {
	pd := e.CheckPerson(p, k, now, lock)
	if pd.Verdict != Allow {
		return pd
	}
	if e.isExternal(p) {
		return deny("external experts never "+what, "ask an employee with the "+perm+" permission", pd.Warnings)
	}
	for _, role := range e.rolesOf(p) {
		if contains(role.Permissions, perm) {
			return Decision{Verdict: Allow, Warnings: pd.Warnings}
		}
	}
	return deny(fmt.Sprintf("%s may not %s: no role of theirs has the permission %s", personName(p), what, perm),
		"ask someone whose role has permissions: ["+perm+"]", pd.Warnings)
}

// MayHold decides whether p may place, renew and release legal holds
// (`tandem hold`): p is not external and some role of p has the
// permission hold. A hold keeps personal data past its period, so it is a
// right of named employees only.
func (e *Engine) MayHold(p *config.Person) Decision {
	return e.mayLocally(p, config.PermissionHold, "place or release legal holds")
}

// mayLocally decides a permission perm that a command on the gateway host
// exercises in p's name (--by PERSON), which lets p do what: p is a
// configured person, is not external, and a role of p has perm. The
// operator there proves no key, so there is no key, lock or obligation
// of p's to check.
func (e *Engine) mayLocally(p *config.Person, perm, what string) Decision {
	if p == nil {
		return deny("only a configured person may "+what, "name yourself with --by PERSON", nil)
	}
	if e.isExternal(p) {
		return deny("external experts never "+what, "ask an employee with the "+perm+" permission", nil)
	}
	for _, role := range e.rolesOf(p) {
		if contains(role.Permissions, perm) {
			return Decision{Verdict: Allow}
		}
	}
	return deny(fmt.Sprintf("%s may not %s: no role of theirs has the permission %s", personName(p), what, perm),
		"ask someone whose role has permissions: ["+perm+"]", nil)
}

// MayDisclose decides whether p may open or approve a lawful disclosure
// case (M15): as MayLock, with the permission disclose or dpo.
func (e *Engine) MayDisclose(p *config.Person, k *config.Key, now time.Time, lock string) Decision {
	if d := e.mayPermission(p, k, now, lock, config.PermissionDPO, "handle disclosure cases"); d.Verdict == Allow {
		return d
	}
	return e.mayPermission(p, k, now, lock, config.PermissionDisclose, "handle disclosure cases")
}

// IsDPO reports whether p, not external, holds the permission dpo: each
// disclosure case needs one such approver.
func (e *Engine) IsDPO(p *config.Person) bool {
	if p == nil || e.isExternal(p) {
		return false
	}
	for _, role := range e.rolesOf(p) {
		if contains(role.Permissions, config.PermissionDPO) {
			return true
		}
	}
	return false
}

// MayEndContract decides whether p may hand over and destroy a tenant's
// data at the end of its contract (M23, `tandem tenant`, --by PERSON): an
// employee whose role has the permission configure.
func (e *Engine) MayEndContract(p *config.Person) Decision {
	return e.mayLocally(p, config.PermissionConfigure, "hand over or destroy a tenant's data")
}
