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

// MayLock decides whether p may lock and unlock persons (`ssh gw lock`,
// M5): p passes CheckPerson (lock is p's own lock state), is not external,
// and some role of p has the permission lock. Locking ends other persons'
// work at once, so it is a right of employees only.
func (e *Engine) MayLock(p *config.Person, k *config.Key, now time.Time, lock string) Decision {
	pd := e.CheckPerson(p, k, now, lock)
	if pd.Verdict != Allow {
		return pd
	}
	if e.isExternal(p) {
		return deny("external experts never lock or unlock persons", "ask an employee with the lock permission", pd.Warnings)
	}
	for _, role := range e.rolesOf(p) {
		if contains(role.Permissions, config.PermissionLock) {
			return Decision{Verdict: Allow, Warnings: pd.Warnings}
		}
	}
	return deny(fmt.Sprintf("%s may not lock or unlock persons: no role of theirs has the permission lock", personName(p)),
		"ask someone whose role has permissions: [lock]", pd.Warnings)
}

// MayHold decides whether p may place, renew and release legal holds
// (`tandem hold`): p is not external and some role of p has the
// permission hold. A hold keeps personal data past its period, so it is a
// right of named employees only.
func (e *Engine) MayHold(p *config.Person) Decision {
	if p == nil {
		return deny("only a configured person may place or release a legal hold", "name yourself with --by PERSON", nil)
	}
	if e.isExternal(p) {
		return deny("external experts never place or release legal holds", "ask an employee with the hold permission", nil)
	}
	for _, role := range e.rolesOf(p) {
		if contains(role.Permissions, config.PermissionHold) {
			return Decision{Verdict: Allow}
		}
	}
	return deny(fmt.Sprintf("%s may not place or release legal holds: no role of theirs has the permission hold", personName(p)),
		"ask someone whose role has permissions: [hold]", nil)
}
