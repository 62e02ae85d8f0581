package config

import (
	"net"
	"path/filepath"
	"slices"
	"time"

	"tandem.dev/tandem/internal/ca"
)

// Defaults of the gateway and policy sections. They are documented in
// docs/CONFIG.md; keep both in step.
const (
	DefaultListen           = "127.0.0.1:2222"
	DefaultDataDir          = "./tandem-data"
	DefaultCryptoProfile    = "bsi"
	DefaultCertValidity     = 5 * time.Minute
	MaxCertValidity         = 5 * time.Minute
	DefaultHandshakeTimeout = 20 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultKeepAlive        = 3 * time.Second
	DefaultMaxConnections   = 1000
	// Limits (gateway.limits) beyond those the rate limiter defaults.
	DefaultUnauthPerPrefix       = 25
	DefaultPrefixV4              = 24
	DefaultPrefixV6              = 64
	DefaultKexTimeout            = 5 * time.Second
	DefaultEvictAfterSilence     = time.Second
	DefaultConnectionsPerPerson  = 20
	DefaultConnectionsPerSource  = 50
	DefaultChannelsPerConnection = 10
	DefaultWaitingPerPerson      = 3
	DefaultPreauthAuditPerMinute = 20
	DefaultDiskWarnPercent       = 10
	DefaultDiskWarnMiB           = 2048
	DefaultDiskRefusePercent     = 2
	DefaultDiskRefuseMiB         = 512
	DefaultDiskCheckEvery        = 10 * time.Second
	DefaultKeyMaxAge             = 180 * Day
	DefaultKeyWarn               = 14 * Day
	DefaultWaitTimeout           = 10 * time.Minute
	DefaultAuditOrigin           = "tandem/audit"
	DefaultKEKFile               = "tandem.kek"
	DefaultSigningKeyFile        = "tandem-audit.key"
	DefaultStreamCap             = 1 << 20
	DefaultCheckpointEvery       = 10 * time.Second
	DefaultCAOverlap             = 7 * Day
	DefaultCheckpointEvents      = 1000
	DefaultGrace                 = 5 * time.Minute
	DefaultMaxRequest            = 8 * time.Hour
	// DefaultApprovers is the number of approvers an access request
	// needs in an environment that policy.approvers leaves out;
	// MaxApprovers bounds what it may ask for.
	DefaultApprovers = 1
	MaxApprovers     = 5
	// AccountPersonal is the only account kind there is.
	AccountPersonal = "personal"
)

// Obligation names used in Role.Requires.
const (
	RequireConfidentiality = "confidentiality"
	RequireTraining        = "training"
	RequireContract        = "contract"
	RequireNDA             = "nda"
)

// Join modes (Rule.Join) and gateway-wide permissions (Role.Permissions).
const (
	JoinPeer            = "peer"
	JoinObserver        = "observer"
	PermissionLock      = "lock"
	PermissionConfigure = "configure"
	// PermissionHold: place, renew and release legal holds (`tandem hold`).
	PermissionHold = "hold"
	// PermissionFreeze: freeze and unfreeze hosts, tenants and labels
	// after a security finding (`tandem freeze`, M27).
	PermissionFreeze = "freeze"
	// PermissionDisclose: open and approve lawful disclosure cases
	// (`ssh gw disclose`, M15).
	PermissionDisclose = "disclose"
	// PermissionDPO: the data protection officer's; approves disclosure
	// cases as the one approver a case always needs (M15).
	PermissionDPO = "dpo"
)

var permissions = []string{PermissionLock, PermissionConfigure, PermissionHold, PermissionFreeze, PermissionDisclose, PermissionDPO}

// RealDataQualifier qualifies an environment in policy.four_eyes: "ENV:real_data"
// lists only that environment's hosts that hold real personal data.
const RealDataQualifier = "real_data"

// FourEyesStagingRealData is the policy.four_eyes entry for staging hosts
// that hold real personal data (real_data: true).
const FourEyesStagingRealData = Staging + ":" + RealDataQualifier

func defaultEnvAllow() []string { return []string{"LANG", "LC_*", "TZ"} }

// DefaultFourEyes is policy.four_eyes when the file leaves it out:
// production, and staging hosts with real personal data (M6). It returns a
// new slice each time, so that no caller can change the default of another.
func DefaultFourEyes() []string { return []string{Production, FourEyesStagingRealData} }

// applyDefaults fills every setting left out of the file. Explicit zero or
// negative values are left alone so that validation can refuse them.
func applyDefaults(c *Config, pos *positions, r *report) {
	g := &c.Gateway
	if g.Listen == "" {
		g.Listen = DefaultListen
	}
	if g.CryptoProfile == "" {
		g.CryptoProfile = DefaultCryptoProfile
	}
	if g.KeyType == "" {
		g.KeyType = ca.DefaultKeyType
	}
	if g.DataDir == "" {
		g.DataDir = DefaultDataDir
	}
	if c.Path != "" && !filepath.IsAbs(g.DataDir) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(c.Path), g.DataDir))
		if err != nil {
			r.add(pos.line("gateway", "data_dir"), "cannot resolve data_dir: %v", err)
		} else {
			g.DataDir = abs
		}
	}
	if g.Names == nil {
		g.Names = defaultNames(g.Listen)
	}
	setDuration(&g.CertValidity, DefaultCertValidity, pos, "gateway", "cert_validity")
	setDuration(&g.HandshakeTimeout, DefaultHandshakeTimeout, pos, "gateway", "handshake_timeout")
	setDuration(&g.DialTimeout, DefaultDialTimeout, pos, "gateway", "dial_timeout")
	setDuration(&g.KeepAlive, DefaultKeepAlive, pos, "gateway", "keepalive")
	setDuration(&g.CAOverlap, DefaultCAOverlap, pos, "gateway", "ca_overlap")
	if g.EnvAllow == nil {
		g.EnvAllow = defaultEnvAllow()
	}
	if g.MaxConnections == 0 && !pos.has("gateway", "max_connections") {
		g.MaxConnections = DefaultMaxConnections
	}
	g.Limits.fillDefaults()

	a := &c.Audit
	if a.Origin == "" {
		a.Origin = DefaultAuditOrigin
	}
	setDuration(&a.CheckpointEvery, DefaultCheckpointEvery, pos, "audit", "checkpoint_every")
	if a.CheckpointEvents == 0 && !pos.has("audit", "checkpoint_events") {
		a.CheckpointEvents = DefaultCheckpointEvents
	}
	if a.SigningKey == "" {
		a.SigningKey = DefaultSigningKeyFile
	}
	for _, f := range []*string{&a.WitnessFile, &a.SigningKey} {
		if *f != "" && c.Path != "" && !filepath.IsAbs(*f) {
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(c.Path), *f)); err == nil {
				*f = abs
			}
		}
	}

	rec := &c.Recording
	if rec.KEKFile == "" && rec.AgeIdentity == "" {
		rec.KEKFile = DefaultKEKFile
	}
	for _, f := range []*string{&rec.KEKFile, &rec.AgeIdentity} {
		if *f != "" && c.Path != "" && !filepath.IsAbs(*f) {
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(c.Path), *f)); err == nil {
				*f = abs
			}
		}
	}
	if rec.StreamCap == 0 && !pos.has("recording", "stream_cap") {
		rec.StreamCap = DefaultStreamCap
	}
	if rec.Storage == "" {
		rec.Storage = RecordingLocal
	}

	c.Retention.fillDefaults(c.Path, pos)
	c.Backup.fillDefaults(c.Path)
	c.Cluster.fillDefaults(c.Path)
	c.Store.fillDefaults(c.Path)
	fillMonitoringDefaults(c)
	c.Syslog.fillDefaults(c.Path, pos)

	p := &c.Policy
	if p.FourEyes == nil {
		p.FourEyes = DefaultFourEyes()
	}
	setDuration(&p.KeyMaxAge, DefaultKeyMaxAge, pos, "policy", "key_max_age")
	setDuration(&p.KeyWarn, DefaultKeyWarn, pos, "policy", "key_warn")
	setDuration(&p.WaitTimeout, DefaultWaitTimeout, pos, "policy", "wait_timeout")
	setDuration(&p.Grace, DefaultGrace, pos, "policy", "grace")
	setDuration(&p.MaxRequestDuration, DefaultMaxRequest, pos, "policy", "max_request_duration")
	// Environments the file leaves out need one approver; an entry the
	// file gives (even 0) stays, so that validation can refuse it.
	if p.Approvers == nil {
		p.Approvers = make(map[string]int, 3)
	}
	for _, env := range []string{Production, Staging, Test} {
		if _, ok := p.Approvers[env]; !ok {
			p.Approvers[env] = DefaultApprovers
		}
	}

	for i := range c.Persons {
		if c.Persons[i].Account == "" {
			c.Persons[i].Account = AccountPersonal
		}
	}
	for i := range c.Roles {
		ro := &c.Roles[i]
		if ro.Requires == nil {
			ro.Requires = []string{RequireConfidentiality, RequireTraining}
		}
		if ro.External {
			// M7: externals need a valid contract and NDA, whatever the
			// file says.
			for _, req := range []string{RequireContract, RequireNDA} {
				if !slices.Contains(ro.Requires, req) {
					ro.Requires = append(ro.Requires, req)
				}
			}
		}
	}
}

// setDuration fills a duration that the file leaves out. A duration the
// file sets to 0 stays 0, so that validation refuses it instead of quietly
// replacing it.
func setDuration(d *Duration, def time.Duration, pos *positions, path ...any) {
	if d.Duration == 0 && !pos.has(path...) {
		d.Duration = def
	}
}

// defaultNames is the host part of listen plus "localhost". A wildcard
// listen address names no host, so only "localhost" remains.
func defaultNames(listen string) []string {
	names := []string{}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		switch host {
		case "", "0.0.0.0", "::":
		default:
			names = append(names, host)
		}
	}
	if !slices.Contains(names, "localhost") {
		names = append(names, "localhost")
	}
	return names
}

// fillDefaults sets the limits that are zero (zero means the default; the
// rate limiter fills in its own: window, failures, block, unauthenticated).
func (l *Limits) fillDefaults() {
	for _, f := range []struct {
		v *int
		d int
	}{
		{&l.UnauthenticatedPerPrefix, DefaultUnauthPerPrefix}, {&l.PrefixV4, DefaultPrefixV4}, {&l.PrefixV6, DefaultPrefixV6},
		{&l.ConnectionsPerPerson, DefaultConnectionsPerPerson}, {&l.ConnectionsPerSource, DefaultConnectionsPerSource},
		{&l.ChannelsPerConnection, DefaultChannelsPerConnection}, {&l.WaitingPerPerson, DefaultWaitingPerPerson},
		{&l.PreauthAuditPerMinute, DefaultPreauthAuditPerMinute},
		{&l.DiskWarnPercent, DefaultDiskWarnPercent}, {&l.DiskWarnMiB, DefaultDiskWarnMiB},
		{&l.DiskRefusePercent, DefaultDiskRefusePercent}, {&l.DiskRefuseMiB, DefaultDiskRefuseMiB},
	} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	if l.KexTimeout.Duration == 0 {
		l.KexTimeout.Duration = DefaultKexTimeout
	}
	if l.EvictAfterSilence.Duration == 0 {
		l.EvictAfterSilence.Duration = DefaultEvictAfterSilence
	}
	if l.DiskCheckEvery.Duration == 0 {
		l.DiskCheckEvery.Duration = DefaultDiskCheckEvery
	}
}
