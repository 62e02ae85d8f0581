package config

import (
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Retention periods and their legal bounds (docs/RETENTION.md). The lower
// bounds are what the measures promise to keep; the upper bounds keep a
// typo ("900d" for "90d") from keeping personal data for years.
const (
	DefaultAdminRetention       = 90 * Day
	DefaultOperationalRetention = 3 * Day
	DefaultContentRetention     = 90 * Day
	DefaultHoldMax              = 180 * Day
	DefaultDPOTimeout           = 30 * time.Second
	// MinAdminRetention: the admin record is kept revision-proof for 90
	// days; MinContentRetention: recordings are kept 90 days (M9).
	MinAdminRetention   = 90 * Day
	MinContentRetention = 90 * Day
	// Operational data (source addresses, client versions) is kept 1 to 3
	// days; only an audited extension keeps it longer.
	MinOperationalRetention = 1 * Day
	MaxOperationalRetention = 3 * Day
	// MaxRetention bounds admin, content and hold_max.
	MaxRetention = 3 * 365 * Day
	// StartTLSRequired is the only value smtp.starttls takes.
	StartTLSRequired = "required"
)

// fillDefaults fills the global periods the file leaves out, and resolves
// the DPO's files against the configuration's directory. Sealed follows
// content (a tenant's sealed follows the tenant's content: see Period).
func (r *Retention) fillDefaults(cfgPath string, pos *positions) {
	setDuration(&r.Admin, DefaultAdminRetention, pos, "retention", "admin")
	setDuration(&r.Operational, DefaultOperationalRetention, pos, "retention", "operational")
	setDuration(&r.Content, DefaultContentRetention, pos, "retention", "content")
	setDuration(&r.HoldMax, DefaultHoldMax, pos, "retention", "hold_max")
	setDuration(&r.DPO.Timeout, DefaultDPOTimeout, pos, "retention", "dpo", "timeout")
	if s := r.DPO.SMTP; s != nil {
		if s.StartTLS == "" {
			s.StartTLS = StartTLSRequired
		}
		for _, f := range []*string{&s.CAFile, &s.PasswordFile} {
			if *f != "" && cfgPath != "" && !filepath.IsAbs(*f) {
				if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), *f)); err == nil {
					*f = abs
				}
			}
		}
	}
}

// Period returns how long tenant keeps data of class (admin, operational,
// content, sealed): the tenant's override, else the global period; sealed
// follows content unless set. Unknown tenants (such as the gateway's own
// "_gateway") get the global periods. 0 for an unknown class.
func (c *Config) Period(tenant, class string) time.Duration {
	global := c.Retention.Periods
	var own Periods
	if t := c.Tenant(tenant); t != nil && t.Retention != nil {
		own = *t.Retention
	}
	pick := func(own, global Duration) time.Duration {
		if own.Duration > 0 {
			return own.Duration
		}
		return global.Duration
	}
	switch class {
	case "admin":
		return pick(own.Admin, global.Admin)
	case "operational":
		return pick(own.Operational, global.Operational)
	case "content":
		return pick(own.Content, global.Content)
	case "sealed":
		if own.Sealed.Duration > 0 {
			return own.Sealed.Duration
		}
		if own.Content.Duration > 0 {
			return own.Content.Duration
		}
		return pick(global.Sealed, global.Content)
	}
	return 0
}

// validateRetention checks the global periods, every tenant's overrides
// and the DPO's delivery.
func validateRetention(c *Config, pos *positions, r *report) {
	checkPeriods(c.Retention.Periods, c.Retention.Periods, pos, r, "retention")
	for i, t := range c.Tenants {
		if t.Retention != nil {
			checkPeriods(*t.Retention, c.Retention.Periods, pos, r, "tenants", i, "retention")
		}
	}
	hm := c.Retention.HoldMax
	if checkPositive(r, pos, hm, "retention", "hold_max") && (hm.Duration%Day != 0 || hm.Duration > MaxRetention) {
		r.add(pos.line("retention", "hold_max"), "retention.hold_max %s must be whole days, at most %s", hm, Duration{MaxRetention})
	}
	validateDPO(c, pos, r)
}

// checkPeriods checks the periods p set at path (an unset one inherits
// from global and was checked there).
func checkPeriods(p, global Periods, pos *positions, r *report, path ...any) {
	at := func(key string) []any { return append(append([]any{}, path...), key) }
	bound := func(key string, d Duration, lo, hi time.Duration, why string) {
		line := pos.line(at(key)...)
		if d.Duration == 0 {
			if pos.has(at(key)...) && pos.decodes(new(Duration), at(key)...) {
				r.add(line, "retention %s must be longer than 0", key)
			}
			return
		}
		switch {
		case d.Duration%Day != 0:
			r.add(line, "retention %s %s must be whole days, like 90d (keys are kept per day)", key, d)
		case d.Duration < lo || d.Duration > hi:
			r.add(line, "retention %s %s is outside %s..%s: %s", key, d, Duration{lo}, Duration{hi}, why)
		}
	}
	bound("admin", p.Admin, MinAdminRetention, MaxRetention, "the admin record is kept revision-proof for at least 90 days, and not for ever")
	bound("operational", p.Operational, MinOperationalRetention, MaxOperationalRetention,
		"operational data is kept 1 to 3 days; keep it longer only with `tandem retention extend`")
	bound("content", p.Content, MinContentRetention, MaxRetention, "recordings are kept at least 90 days (M9), and not for ever")
	content := p.Content
	if content.Duration == 0 {
		content = global.Content
	}
	if p.Sealed.Duration > 0 && content.Duration > 0 && p.Sealed.Duration > content.Duration {
		r.add(pos.line(at("sealed")...), "retention sealed %s must not be longer than content %s: hidden keystrokes are never kept longer than the recording", p.Sealed, content)
	} else {
		bound("sealed", p.Sealed, Day, MaxRetention, "sealed keystrokes are kept at most as long as content")
	}
}

// validateDPO checks where DPO notices go: e-mail over SMTP with STARTTLS
// or a command, not both; an extension is refused while neither is set.
func validateDPO(c *Config, pos *positions, r *report) {
	d := c.Retention.DPO
	if d.SMTP == nil && d.Command == nil {
		if d.To != "" || d.From != "" {
			r.add(pos.line("retention", "dpo"), "retention.dpo: set smtp or command, the way notices reach the DPO")
		}
		return
	}
	if d.SMTP != nil && d.Command != nil {
		r.add(pos.line("retention", "dpo"), "retention.dpo: set smtp or command, not both")
	}
	if err := checkEmail(d.To); err != nil {
		r.add(pos.line("retention", "dpo", "to"), "retention.dpo.to: %v", err)
	}
	checkPositive(r, pos, d.Timeout, "retention", "dpo", "timeout")
	if d.Command != nil {
		if len(d.Command) == 0 || d.Command[0] == "" || !filepath.IsAbs(d.Command[0]) {
			r.add(pos.line("retention", "dpo", "command"), "retention.dpo.command must start with an absolute program path, like [/usr/sbin/sendmail, -t]; it runs without a shell")
		}
		return
	}
	s := d.SMTP
	if err := checkEmail(d.From); err != nil {
		r.add(pos.line("retention", "dpo", "from"), "retention.dpo.from: %v", err)
	}
	if err := checkHostPort(s.Addr, false); err != nil {
		r.add(pos.line("retention", "dpo", "smtp", "addr"), "retention.dpo.smtp.addr: %v", err)
	} else if host, _, _ := net.SplitHostPort(s.Addr); host == "" {
		r.add(pos.line("retention", "dpo", "smtp", "addr"), "retention.dpo.smtp.addr must name the mail server")
	}
	if s.StartTLS != StartTLSRequired {
		r.add(pos.line("retention", "dpo", "smtp", "starttls"), "retention.dpo.smtp.starttls %q: only %q exists; a notice never travels in clear", s.StartTLS, StartTLSRequired)
	}
	if (s.Username == "") != (s.PasswordFile == "") {
		r.add(pos.line("retention", "dpo", "smtp"), "retention.dpo.smtp: set username and password_file together")
	}
	for _, f := range []struct{ key, path string }{{"ca_file", s.CAFile}, {"password_file", s.PasswordFile}} {
		if f.path != "" && insideDir(c.Gateway.DataDir, f.path) {
			r.add(pos.line("retention", "dpo", "smtp", f.key), "retention.dpo.smtp.%s %s lies inside data_dir %s; keep it with the configuration", f.key, f.path, c.Gateway.DataDir)
		}
	}
}

// ValidateExtension is the rule for `tandem retention extend`: only
// operational data, until at most 14 days after today. The planner also
// never keeps a key beyond its day + 14, whatever is stored.
func ValidateExtension(class string, until, today time.Time) error {
	if class != "operational" {
		return fmt.Errorf("only operational data can be extended (not %q): admin and content are kept 90 days already", class)
	}
	if until.Before(today) {
		return fmt.Errorf("--until %s lies in the past", until.Format(dateLayout))
	}
	if until.After(today.Add(MaxExtension)) {
		return fmt.Errorf("--until %s is more than %d days after today (%s): an extension keeps operational data at most 14 days",
			until.Format(dateLayout), int(MaxExtension/Day), today.Format(dateLayout))
	}
	return nil
}

// MaxExtension is how far an extension may reach: 14 days beyond today,
// and never beyond a key's own day + 14.
const MaxExtension = 14 * Day
