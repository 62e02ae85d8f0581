package config

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/cryptoprofile"
)

var (
	// idRE is the form of tenant, person, role and host ids: safe in file
	// names, certificate key ids, log fields and the "login%host" routing
	// syntax.
	idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// loginRE is a portable POSIX user name; "*" is deliberately not one.
	loginRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)
)

var (
	environments = []string{Production, Staging, Test}
	obligations  = []string{RequireConfidentiality, RequireTraining, RequireContract, RequireNDA}
	fourEyesKeys = []string{Production, Staging, FourEyesStagingRealData, Test}
)

// validate checks a Config with defaults applied and parses its keys
// (filling PublicKey, Fingerprint, Comment, HostPublicKey, HostCAKey). It
// adds every problem to r; pos may be nil, then problems carry no line.
func validate(c *Config, pos *positions, r *report) {
	profile, profileErr := cryptoprofile.Get(c.Gateway.CryptoProfile)
	validateGateway(c, pos, r, profileErr)
	validatePolicy(c, pos, r)
	validateLimits(c, pos, r)
	validateAudit(c, pos, r)
	validateRecording(c, pos, r)
	validateRetention(c, pos, r)
	validateBackup(c, pos, r)
	validateCluster(c, pos, r)
	validateMonitoring(c, pos, r)
	validateSyslog(c, pos, r)
	validateProxyProtocol(c, pos, r)
	validateStore(c, pos, r)

	tenants := map[string]int{}
	for i, t := range c.Tenants {
		checkID(r, pos, "tenant", t.ID, tenants, "tenants", i)
	}
	roles := map[string]int{}
	for i := range c.Roles {
		validateRole(c, i, pos, r, roles, tenants)
	}
	var prof *cryptoprofile.Profile
	if profileErr == nil {
		prof = &profile
	}
	persons := map[string]int{}
	keys := map[string]keyOwner{}
	emails := map[string]keyOwner{}
	for i := range c.Persons {
		validatePerson(c, i, pos, r, persons, roles, keys, prof)
		checkExternalPerson(c, i, pos, r)
		checkOneAccount(c, i, pos, r, emails)
	}
	hosts := map[string]int{}
	addrs := map[string]int{}
	for i := range c.Hosts {
		validateHost(c, i, pos, r, hosts, tenants)
		checkSharedAddress(c, i, pos, r, addrs)
	}
	for i := range c.Roles {
		for j := range c.Roles[i].Allow {
			checkDeclaredLogins(c, i, j, pos, r)
		}
	}
}

func validateGateway(c *Config, pos *positions, r *report, profileErr error) {
	g := &c.Gateway
	if profileErr != nil {
		r.add(pos.line("gateway", "crypto_profile"), "crypto_profile: %v", profileErr)
	}
	if err := g.KeyType.Valid(); err != nil {
		r.add(pos.line("gateway", "key_type"), "key_type: %v", err)
	}
	if err := checkHostPort(g.Listen, false); err != nil {
		r.add(pos.line("gateway", "listen"), "listen: %v", err)
	} else if host, _, _ := net.SplitHostPort(g.Listen); host == "" {
		r.add(pos.line("gateway", "listen"), "listen must name an address; write 0.0.0.0:PORT to listen on all interfaces")
	}
	for i, n := range g.Names {
		if strings.TrimSpace(n) == "" || strings.ContainsAny(n, " \t") {
			r.add(pos.line("gateway", "names", i), "names: entry %d is empty or contains blanks", i+1)
		}
	}
	if d := g.CertValidity.Duration; d > MaxCertValidity {
		r.add(pos.line("gateway", "cert_validity"), "cert_validity %s is longer than the maximum %s (M2: certificates for targets are short-lived)", g.CertValidity, Duration{MaxCertValidity})
	}
	checkPositive(r, pos, g.CertValidity, "gateway", "cert_validity")
	checkPositive(r, pos, g.HandshakeTimeout, "gateway", "handshake_timeout")
	checkPositive(r, pos, g.DialTimeout, "gateway", "dial_timeout")
	checkPositive(r, pos, g.KeepAlive, "gateway", "keepalive")
	checkPositive(r, pos, g.CAOverlap, "gateway", "ca_overlap")
	for i, a := range g.EgressAddresses {
		if err := CheckSourceAddress(a); err != nil {
			r.add(pos.line("gateway", "egress_addresses", i), "egress_addresses: %v", err)
		}
	}
	for i, e := range g.EnvAllow {
		if _, err := path.Match(e, ""); e == "" || err != nil {
			r.add(pos.line("gateway", "env_allow", i), "env_allow: %q is not a valid name or glob", e)
		} else if n, bad := DangerousEnv(e); bad {
			r.add(pos.line("gateway", "env_allow", i), "env_allow: %q would let clients set %s, which can make the target run code the gateway does not record; allow only harmless names such as LANG, \"LC_*\", TZ", e, n)
		}
	}
	if g.MaxConnections <= 0 && pos.decodes(new(int), "gateway", "max_connections") {
		r.add(pos.line("gateway", "max_connections"), "max_connections must be at least 1")
	}
}

// validateAudit keeps the witness file and the signing key out of the
// data directory: a copy that can be rewritten together with the log
// witnesses nothing, and a key beside the log lets its rewriter re-sign it.
func validateAudit(c *Config, pos *positions, r *report) {
	a := c.Audit
	checkPositive(r, pos, a.CheckpointEvery, "audit", "checkpoint_every")
	if a.CheckpointEvents < 1 && pos.decodes(new(int), "audit", "checkpoint_events") {
		r.add(pos.line("audit", "checkpoint_events"), "checkpoint_events must be at least 1")
	}
	if a.WitnessFile != "" && insideDir(c.Gateway.DataDir, a.WitnessFile) {
		r.add(pos.line("audit", "witness_file"), "witness_file %s lies inside data_dir %s; put it where a rewrite of the data directory cannot reach", a.WitnessFile, c.Gateway.DataDir)
	}
	if a.SigningKey != "" && InsideDataDir(c.Gateway.DataDir, a.SigningKey) {
		r.add(pos.line("audit", "signing_key"), "audit.signing_key %s lies inside data_dir %s; keep the key where whoever can rewrite the data directory cannot read it", a.SigningKey, c.Gateway.DataDir)
	}
}

// InsideDataDir reports whether path lies in dir, also after resolving
// symbolic links of the parts that exist: a link must not smuggle a key
// into the data directory.
func InsideDataDir(dir, path string) bool {
	return insideDir(dir, path) || insideDir(resolveExisting(dir), resolveExisting(path))
}

// resolveExisting resolves the symbolic links of the longest existing
// prefix of path and keeps the rest as it is.
func resolveExisting(path string) string {
	rest := ""
	for p := path; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		if filepath.Dir(p) == p {
			return path
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// validateRecording keeps the key-encryption key out of the data
// directory, which must be unreadable without it (M16).
func validateRecording(c *Config, pos *positions, r *report) {
	rec := c.Recording
	if rec.KEKFile != "" && rec.AgeIdentity != "" {
		r.add(pos.line("recording"), "recording: set kek_file or age_identity, not both")
	}
	if rec.StreamCap < 0 {
		r.add(pos.line("recording", "stream_cap"), "recording.stream_cap must not be negative")
	}
	validateRecordingStorage(c, pos, r)
	for _, f := range []struct{ key, path string }{{"kek_file", rec.KEKFile}, {"age_identity", rec.AgeIdentity}} {
		if f.path != "" && insideDir(c.Gateway.DataDir, f.path) {
			r.add(pos.line("recording", f.key), "recording.%s %s lies inside data_dir %s; keep the key where a copy of the data directory does not reach", f.key, f.path, c.Gateway.DataDir)
		}
	}
}

// insideDir reports whether path lies in dir (both absolute).
func insideDir(dir, path string) bool {
	if !filepath.IsAbs(dir) || !filepath.IsAbs(path) {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// validateLimits refuses negative limits; zero means the default.
func validateLimits(c *Config, pos *positions, r *report) {
	l := c.Gateway.Limits
	for _, f := range []struct {
		key string
		v   int
	}{{"failures_per_source", l.FailuresPerSource}, {"failures_per_person", l.FailuresPerPerson},
		{"unauthenticated", l.Unauthenticated}, {"unauthenticated_per_source", l.UnauthenticatedPerSource},
		{"unauthenticated_per_prefix", l.UnauthenticatedPerPrefix}, {"prefix_v4", l.PrefixV4}, {"prefix_v6", l.PrefixV6},
		{"connections_per_person", l.ConnectionsPerPerson}, {"connections_per_source", l.ConnectionsPerSource},
		{"channels_per_connection", l.ChannelsPerConnection}, {"waiting_per_person", l.WaitingPerPerson},
		{"preauth_audit_per_minute", l.PreauthAuditPerMinute},
		{"disk_warn_percent", l.DiskWarnPercent}, {"disk_warn_mib", l.DiskWarnMiB},
		{"disk_refuse_percent", l.DiskRefusePercent}, {"disk_refuse_mib", l.DiskRefuseMiB}} {
		if f.v < 0 {
			r.add(pos.line("gateway", "limits", f.key), "limits.%s must not be negative", f.key)
		}
	}
	for _, f := range []struct {
		key    string
		v, max int
	}{{"prefix_v4", l.PrefixV4, 32}, {"prefix_v6", l.PrefixV6, 128},
		{"disk_warn_percent", l.DiskWarnPercent, 100}, {"disk_refuse_percent", l.DiskRefusePercent, 100}} {
		if f.v > f.max {
			r.add(pos.line("gateway", "limits", f.key), "limits.%s must be at most %d", f.key, f.max)
		}
	}
	for _, f := range []struct {
		key string
		d   Duration
	}{{"window", l.Window}, {"block", l.Block}, {"kex_timeout", l.KexTimeout}, {"evict_after_silence", l.EvictAfterSilence}, {"disk_check_every", l.DiskCheckEvery}} {
		if f.d.Duration < 0 {
			r.add(pos.line("gateway", "limits", f.key), "limits.%s must not be negative", f.key)
		}
	}
	// A silence as long as the whole handshake never happens: eviction
	// would be off without anybody noticing.
	if hs := c.Gateway.HandshakeTimeout.Duration; hs > 0 && l.EvictAfterSilence.Duration >= hs {
		r.add(pos.line("gateway", "limits", "evict_after_silence"), "limits.evict_after_silence (%v) must be shorter than gateway.handshake_timeout (%v)", l.EvictAfterSilence.Duration, hs)
	}
}

func validatePolicy(c *Config, pos *positions, r *report) {
	p := &c.Policy
	for i, e := range p.FourEyes {
		if !slices.Contains(fourEyesKeys, e) {
			r.add(pos.line("policy", "four_eyes", i), "four_eyes: unknown entry %q (allowed: %s)", e, strings.Join(fourEyesKeys, ", "))
		}
	}
	if !slices.Contains(p.FourEyes, Production) {
		r.add(pos.line("policy", "four_eyes"), "four_eyes must include production (M6)")
	}
	if !slices.Contains(p.FourEyes, Staging) && !slices.Contains(p.FourEyes, FourEyesStagingRealData) {
		r.add(pos.line("policy", "four_eyes"), "four_eyes must include staging:real_data or staging (M6: staging with real personal data counts as production)")
	}
	for i, env := range p.RequireFIDO2 {
		if !slices.Contains(environments, env) {
			r.add(pos.line("policy", "require_fido2", i), "require_fido2: environment %q is not one of %s", env, strings.Join(environments, ", "))
		}
	}
	checkPositive(r, pos, p.WaitTimeout, "policy", "wait_timeout")
	checkPositive(r, pos, p.Grace, "policy", "grace")
	checkPositive(r, pos, p.MaxRequestDuration, "policy", "max_request_duration")
	envs := make([]string, 0, len(p.Approvers))
	for env := range p.Approvers {
		envs = append(envs, env)
	}
	slices.Sort(envs) // a stable order of problems for the same file
	for _, env := range envs {
		line := pos.line("policy", "approvers", env)
		if !slices.Contains(environments, env) {
			r.add(line, "approvers: unknown environment %q (allowed: %s)", env, strings.Join(environments, ", "))
			continue
		}
		if n := p.Approvers[env]; n < 1 || n > MaxApprovers {
			r.add(line, "approvers: %s needs 1 to %d approvers, not %d", env, MaxApprovers, n)
		}
	}
	okAge := checkPositive(r, pos, p.KeyMaxAge, "policy", "key_max_age")
	okWarn := checkPositive(r, pos, p.KeyWarn, "policy", "key_warn")
	if okAge && okWarn && p.KeyWarn.Duration >= p.KeyMaxAge.Duration {
		r.add(pos.line("policy", "key_warn"), "key_warn %s must be shorter than key_max_age %s", p.KeyWarn, p.KeyMaxAge)
	}
}

// checkPositive refuses a duration that is zero or negative, unless it is
// zero only because its text did not parse (already reported).
func checkPositive(r *report, pos *positions, d Duration, path ...any) bool {
	if d.Duration > 0 {
		return true
	}
	if pos.decodes(new(Duration), path...) {
		r.add(pos.line(path...), "%s must be longer than 0", path[len(path)-1])
	}
	return false
}

// keyOwner remembers where a key fingerprint (or an email) was first seen.
type keyOwner struct {
	person string
	line   int
}

func validatePerson(c *Config, i int, pos *positions, r *report, persons, roles map[string]int, keys map[string]keyOwner, prof *cryptoprofile.Profile) {
	p := &c.Persons[i]
	checkID(r, pos, "person", p.ID, persons, "persons", i)
	if strings.TrimSpace(p.Name) == "" {
		r.add(pos.line("persons", i, "name"), "person %s has no name", p.ID)
	}
	if err := checkEmail(p.Email); err != nil {
		r.add(pos.line("persons", i, "email"), "person %s: %v", p.ID, err)
	}
	if p.Account != AccountPersonal {
		r.add(pos.line("persons", i, "account"), "person %s: account %q is not allowed: shared, team, guest and anonymous accounts do not exist; every account belongs to one natural person", p.ID, p.Account)
	}
	if p.AgeRecipient != "" {
		if _, err := age.ParseRecipients(strings.NewReader(p.AgeRecipient)); err != nil {
			r.add(pos.line("persons", i, "age_recipient"), "person %s: age_recipient is not an age recipient (age1…): %v", p.ID, err)
		}
	}
	if len(p.Roles) == 0 {
		r.add(pos.line("persons", i, "roles"), "person %s has no roles", p.ID)
	}
	for j, ro := range p.Roles {
		if _, ok := roles[ro]; !ok {
			r.add(pos.line("persons", i, "roles", j), "person %s: unknown role %q", p.ID, ro)
		}
	}
	if len(p.Keys) == 0 {
		r.add(pos.line("persons", i, "keys"), "person %s has no key", p.ID)
	}
	for j := range p.Keys {
		k := &p.Keys[j]
		line := pos.line("persons", i, "keys", j, "key")
		if k.Added.IsZero() && !pos.has("persons", i, "keys", j, "added") {
			r.add(pos.line("persons", i, "keys", j), "person %s: key %d has no added date (expiry counts from it)", p.ID, j+1)
		}
		pub, comment, err := parseKey(k.Key)
		if err != nil {
			r.add(line, "person %s: %v", p.ID, err)
			continue
		}
		k.PublicKey, k.Comment, k.Fingerprint = pub, comment, ssh.FingerprintSHA256(pub)
		if prof != nil {
			if err := prof.AcceptsUserKey(pub); err != nil {
				r.add(line, "person %s: %v", p.ID, err)
			}
		}
		if prev, dup := keys[k.Fingerprint]; dup {
			if prev.person == p.ID {
				r.add(line, "person %s: key %s is registered twice (first at line %d)", p.ID, k.Fingerprint, prev.line)
			} else {
				r.add(line, "key %s is registered for both persons %s (line %d) and %s; every key belongs to one person", k.Fingerprint, prev.person, prev.line, p.ID)
			}
			continue
		}
		keys[k.Fingerprint] = keyOwner{person: p.ID, line: line}
	}
}

// parseKey reads one public key in authorized_keys form, without options.
func parseKey(s string) (ssh.PublicKey, string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, "", fmt.Errorf("key is empty")
	}
	if strings.Fields(s)[0] == "ssh-dss" {
		// x/crypto/ssh no longer parses DSA keys and would only say "no key found".
		return nil, "", fmt.Errorf("key is DSA (ssh-dss), which is no longer accepted; give an ECDSA key")
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, "", fmt.Errorf("cannot parse key: %v", err)
	}
	if len(options) > 0 {
		return nil, "", fmt.Errorf("key options (%s) are not supported; give the plain key", strings.Join(options, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, "", fmt.Errorf("give one key per entry")
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, "", fmt.Errorf("a certificate is not accepted here; give the plain public key")
	}
	return pub, comment, nil
}

// checkOneAccount refuses a second person with the email of another:
// every account belongs to one natural person, and a second account would
// let them approve their own access requests and join their own sessions
// as the second person. Addresses compare without regard to case.
func checkOneAccount(c *Config, i int, pos *positions, r *report, emails map[string]keyOwner) {
	p := &c.Persons[i]
	if p.Email == "" {
		return // reported as missing
	}
	line := pos.line("persons", i, "email")
	e := strings.ToLower(p.Email)
	if prev, dup := emails[e]; dup {
		r.add(line, "person %s: email %s is also the email of person %s (line %d); every account belongs to one natural person", p.ID, p.Email, prev.person, prev.line)
		return
	}
	emails[e] = keyOwner{person: p.ID, line: line}
}

func checkEmail(e string) error {
	local, domain, ok := strings.Cut(e, "@")
	if e == "" {
		return fmt.Errorf("email is missing")
	}
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.ContainsAny(e, " \t\r\n<>") {
		return fmt.Errorf("email %q is not an address like name@example.org", e)
	}
	return nil
}

func validateRole(c *Config, i int, pos *positions, r *report, roles, tenants map[string]int) {
	ro := &c.Roles[i]
	checkID(r, pos, "role", ro.ID, roles, "roles", i)
	for j, req := range ro.Requires {
		if !slices.Contains(obligations, req) {
			r.add(pos.line("roles", i, "requires", j), "role %s: unknown obligation %q in requires (allowed: %s)", ro.ID, req, strings.Join(obligations, ", "))
		}
	}
	for j, perm := range ro.Permissions {
		if !slices.Contains(permissions, perm) {
			r.add(pos.line("roles", i, "permissions", j), "role %s: unknown permission %q (allowed: %s)", ro.ID, perm, strings.Join(permissions, ", "))
		}
	}
	if ro.External {
		for j, perm := range ro.Permissions {
			if perm == PermissionLock || perm == PermissionConfigure || perm == PermissionHold || perm == PermissionFreeze {
				r.add(pos.line("roles", i, "permissions", j), "role %s: an external role may not have the permission %s (%s)", ro.ID, perm, externalsNever)
			}
		}
	}
	for j := range ro.Allow {
		rule := &ro.Allow[j]
		at := func(p ...any) int { return pos.line(append([]any{"roles", i, "allow", j}, p...)...) }
		if ro.External && rule.Read {
			r.add(at("read"), "role %s: an external role may not have read: true (%s)", ro.ID, externalsNever)
		}
		if ro.External && rule.Audit {
			r.add(at("audit"), "role %s: an external role may not have audit: true (%s)", ro.ID, externalsNever)
		}
		if ro.External && rule.Incident {
			r.add(at("incident"), "role %s: an external role may not have incident: true (%s)", ro.ID, externalsNever)
		}
		if ro.External && rule.Approve {
			r.add(at("approve"), "role %s: an external role may not have approve: true (%s)", ro.ID, externalsNever)
		}
		s := rule.Hosts
		if s.empty() {
			r.add(at("hosts"), "role %s: selector matches nothing explicitly; use names: [\"*\"] for all hosts", ro.ID)
		}
		if s.Tenant != "" {
			if _, ok := tenants[s.Tenant]; !ok {
				r.add(at("hosts", "tenant"), "role %s: unknown tenant %q", ro.ID, s.Tenant)
			}
		}
		if s.Environment != "" && !slices.Contains(environments, s.Environment) {
			r.add(at("hosts", "environment"), "role %s: environment %q is not one of %s", ro.ID, s.Environment, strings.Join(environments, ", "))
		}
		for k, n := range s.Names {
			if _, err := path.Match(n, ""); n == "" || err != nil {
				r.add(at("hosts", "names", k), "role %s: host name pattern %q is empty or not a valid glob", ro.ID, n)
			}
		}
		if len(rule.Logins) == 0 && len(rule.Join) == 0 && !rule.Approve && !rule.Read && !rule.Audit && len(rule.Forward) == 0 {
			r.add(at("logins"), "role %s: rule grants no logins", ro.ID)
		}
		for k, m := range rule.Join {
			if m != JoinPeer && m != JoinObserver {
				r.add(at("join", k), "role %s: join mode %q is not peer or observer", ro.ID, m)
			}
		}
		for k, l := range rule.Logins {
			if !loginRE.MatchString(l) {
				r.add(at("logins", k), "role %s: login %q is not a valid user name (lower case, digits, _ . -, at most 32 characters; no wildcards)", ro.ID, l)
			}
		}
		for k, f := range rule.Forward {
			if err := checkHostPort(f, true); err != nil {
				r.add(at("forward", k), "role %s: forward %q: %v", ro.ID, f, err)
			}
		}
	}
}

// externalsNever is why externals hold none of the rights that act on
// other persons' work (M7, M13): they work only under supervision.
const externalsNever = "externals never read recordings or the audit log, approve, lock, freeze or configure"

// rights lists the rights of ro that externals may never hold: read,
// audit, approve (in any rule) and the permissions lock and configure.
func rights(ro *Role) []string {
	var read, audit, approve, incident bool
	for _, rule := range ro.Allow {
		read = read || rule.Read
		audit = audit || rule.Audit
		approve = approve || rule.Approve
		incident = incident || rule.Incident
	}
	var out []string
	for _, r := range []struct {
		has  bool
		name string
	}{{read, "read"}, {audit, "audit"}, {approve, "approve"}, {incident, "incident"}} {
		if r.has {
			out = append(out, r.name)
		}
	}
	for _, perm := range []string{PermissionLock, PermissionConfigure, PermissionFreeze} {
		if slices.Contains(ro.Permissions, perm) {
			out = append(out, perm)
		}
	}
	return out
}

// checkExternalPerson refuses a person who holds an external role together
// with an employee role that reads, approves, locks or configures: holding one external
// role makes the person external everywhere, so the other role's rights
// would be dead letters at best and a way around M7 at worst. An external
// role with such rights is reported at the role itself.
func checkExternalPerson(c *Config, i int, pos *positions, r *report) {
	p := &c.Persons[i]
	var external, powered []string
	seen := map[string]bool{}
	for _, id := range p.Roles {
		ro := c.Role(id)
		if ro == nil || seen[id] {
			continue
		}
		seen[id] = true
		switch rs := rights(ro); {
		case ro.External:
			external = append(external, ro.ID)
		case len(rs) > 0:
			powered = append(powered, fmt.Sprintf("%s (%s)", ro.ID, strings.Join(rs, ", ")))
		}
	}
	if len(external) > 0 && len(powered) > 0 {
		r.add(pos.line("persons", i, "roles"), "person %s holds the external role %s together with %s: %s",
			p.ID, strings.Join(external, ", "), strings.Join(powered, ", "), externalsNever)
	}
}

// checkDeclaredLogins refuses a rule that grants a login that none of its
// hosts has, when those hosts list their logins: such a grant is a typo or
// a stale rule, and would fail only at connection time.
func checkDeclaredLogins(c *Config, i, j int, pos *positions, r *report) {
	rule := &c.Roles[i].Allow[j]
	declared := map[string]bool{}
	found := false
	for h := range c.Hosts {
		host := &c.Hosts[h]
		if host.Logins == nil || !rule.Hosts.Matches(host) {
			continue
		}
		found = true
		for _, l := range host.Logins {
			declared[l] = true
		}
	}
	if !found {
		return
	}
	for k, l := range rule.Logins {
		if !declared[l] {
			r.add(pos.line("roles", i, "allow", j, "logins", k), "role %s: login %s is not declared by any host this rule matches", c.Roles[i].ID, l)
		}
	}
}

func validateHost(c *Config, i int, pos *positions, r *report, hosts, tenants map[string]int) {
	h := &c.Hosts[i]
	if strings.ContainsAny(h.Name, "%@") {
		r.add(pos.line("hosts", i, "name"), "host name %q must not contain %% or @ (they separate login, host and gateway in user names)", h.Name)
	} else {
		checkID(r, pos, "host", h.Name, hosts, "hosts", i)
	}
	if err := checkHostPort(h.Address, false); err != nil {
		r.add(pos.line("hosts", i, "address"), "host %s: address: %v", h.Name, err)
	} else if host, _, _ := net.SplitHostPort(h.Address); host == "" {
		r.add(pos.line("hosts", i, "address"), "host %s: address must name a host", h.Name)
	}
	if h.Tenant == "" {
		r.add(pos.line("hosts", i, "tenant"), "host %s has no tenant (every host belongs to exactly one tenant)", h.Name)
	} else if _, ok := tenants[h.Tenant]; !ok {
		r.add(pos.line("hosts", i, "tenant"), "host %s: unknown tenant %q", h.Name, h.Tenant)
	}
	if !slices.Contains(environments, h.Environment) {
		r.add(pos.line("hosts", i, "environment"), "host %s: environment %q is not one of %s", h.Name, h.Environment, strings.Join(environments, ", "))
	}
	if h.RealData && h.Environment != Staging {
		r.add(pos.line("hosts", i, "real_data"), "host %s: real_data is only for staging hosts (production always counts as real data; test hosts must not hold any)", h.Name)
	}
	for k, l := range h.Logins {
		if !loginRE.MatchString(l) {
			r.add(pos.line("hosts", i, "logins", k), "host %s: login %q is not a valid user name", h.Name, l)
		}
	}
	for k := range h.Labels {
		if k == "" {
			r.add(pos.line("hosts", i, "labels"), "host %s: empty label name", h.Name)
		}
	}
	switch {
	case h.HostKey == "" && h.HostCA == "":
		r.add(pos.line("hosts", i), "host %s: no trust on first use: set host_key or host_ca", h.Name)
	case h.HostKey != "" && h.HostCA != "":
		r.add(pos.line("hosts", i, "host_ca"), "host %s: set either host_key or host_ca, not both", h.Name)
	case h.HostKey != "":
		pub, _, err := parseKey(h.HostKey)
		if err != nil {
			r.add(pos.line("hosts", i, "host_key"), "host %s: host_key: %v", h.Name, err)
		}
		h.HostPublicKey, h.HostCAKey = pub, nil
	default:
		pub, _, err := parseKey(h.HostCA)
		if err != nil {
			r.add(pos.line("hosts", i, "host_ca"), "host %s: host_ca: %v", h.Name, err)
		}
		h.HostPublicKey, h.HostCAKey = nil, pub
	}
}

// checkSharedAddress refuses a host whose address another host already
// has under a different tenant or environment: the weaker entry would be
// a way around four-eyes (a "test" name for a production machine) or
// around tenant separation (M4). Two names for one machine in the same
// tenant and environment are allowed. Addresses are compared as written,
// host in lower case without a trailing dot, port 22 when missing; names
// are not resolved.
func checkSharedAddress(c *Config, i int, pos *positions, r *report, seen map[string]int) {
	h := &c.Hosts[i]
	key := normalAddress(h.Address)
	if key == "" {
		return
	}
	first, dup := seen[key]
	if !dup {
		seen[key] = i
		return
	}
	o := &c.Hosts[first]
	if o.Tenant == h.Tenant && o.Environment == h.Environment {
		return
	}
	r.add(pos.line("hosts", i, "address"), "host %s: address %s is also the address of host %s (line %d) in tenant %s, environment %s; one machine must not be reachable under two tenants or environments (the weaker one would bypass four-eyes or tenant separation)",
		h.Name, key, o.Name, pos.line("hosts", first), o.Tenant, o.Environment)
}

// normalAddress is the form in which checkSharedAddress compares
// addresses: "host:port" with the host in lower case without a trailing
// dot and port 22 when none is given; "" for an empty address.
func normalAddress(a string) string {
	a = strings.TrimSpace(a)
	if a == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = strings.Trim(a, "[]"), "22"
	}
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.ToLower(host), "."), port)
}

// checkID checks the form of an id and that it is unique among its kind.
func checkID(r *report, pos *positions, kind, id string, seen map[string]int, path ...any) {
	field := "id"
	if kind == "host" || kind == "collector" {
		field = "name"
	}
	line := pos.line(append(path, field)...)
	if id == "" {
		r.add(line, "%s has no %s", kind, field)
		return
	}
	if !idRE.MatchString(id) {
		r.add(line, "%s %s %q is invalid: use lower case letters, digits, . _ - (at most 63, starting with a letter or digit)", kind, field, id)
	}
	if first, dup := seen[id]; dup {
		r.add(line, "duplicate %s %s %q (first at line %d)", kind, field, id, first)
		return
	}
	seen[id] = line
}

// checkHostPort checks "host:port" with a numeric port 1-65535. With glob,
// the host part may be a path.Match pattern.
func checkHostPort(s string, glob bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	if glob {
		if host == "" {
			return fmt.Errorf("host is missing")
		}
		if _, err := path.Match(host, ""); err != nil {
			return fmt.Errorf("host pattern %q is not a valid glob", host)
		}
	}
	if strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("host %q contains blanks or slashes", host)
	}
	return nil
}

// CheckSourceAddress accepts what OpenSSH's source-address option takes
// and Tandem writes into it: one IP address or CIDR network, no blanks,
// no commas (the entries are joined with commas) and no host names.
func CheckSourceAddress(a string) error {
	if strings.Contains(a, "/") {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("%q is not an address or a CIDR network (e.g. 192.0.2.10 or 192.0.2.0/28)", a)
		}
		if p.Masked() != p {
			return fmt.Errorf("%q has host bits set; write %s", a, p.Masked())
		}
		return nil
	}
	if _, err := netip.ParseAddr(a); err != nil || strings.Contains(a, "%") {
		return fmt.Errorf("%q is not an address or a CIDR network (e.g. 192.0.2.10 or 192.0.2.0/28)", a)
	}
	return nil
}
