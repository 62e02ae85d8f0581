package policy

import "tandem.dev/tandem/internal/config"

// MayRead reports whether the person may read and export recordings of
// sessions on h (M13): some rule of their roles with read: true matches
// the host. Reading is bound to hosts, and through them to tenants; there
// is no "read everything" short of a rule that matches every host.
func (e *Engine) MayRead(p *config.Person, h *config.Host) bool {
	for _, role := range e.rolesOf(p) {
		for i := range role.Allow {
			if role.Allow[i].Read && matches(role.Allow[i].Hosts, h) {
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
			if !matches(rule.Hosts, h) || !contains(rule.Logins, login) {
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
