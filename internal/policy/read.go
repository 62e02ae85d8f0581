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
