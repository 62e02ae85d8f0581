package config

import (
	"net"
	"path/filepath"
	"time"
)

// Syslog sends every audit record and signed checkpoint, as they are in
// the local log, to central log servers: RFC 5424 messages over TLS (RFC
// 5425) with mutual certificates (docs/CENTRAL-LOG.md). Without
// collectors nothing is sent. Changes take effect at the next start.
type Syslog struct {
	Collectors []Collector `yaml:"collectors"`
	// Hostname is the HOSTNAME field of every message. Default: the
	// gateway machine's host name.
	Hostname string `yaml:"hostname"`
	// MaxBehind is how many audit records a collector may lack before new
	// sessions are refused (nothing is ever dropped; the log is the
	// spool). Default 100000.
	MaxBehind int `yaml:"max_behind"`
	// MaxAge is how old the oldest record a collector lacks may get before
	// new sessions are refused. Default 1h.
	MaxAge Duration `yaml:"max_age"`
	// WarnPercent of MaxBehind or MaxAge logs a warning first. Default 80.
	WarnPercent int `yaml:"warn_percent"`
	// Timeout bounds each connect, TLS handshake and write. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// Settle is how long a connection must stay up after a write before
	// the records written count as delivered (RFC 5425 has no
	// acknowledgement); after a break everything younger is sent again.
	// Default 2s.
	Settle Duration `yaml:"settle"`
	// Retry is the first wait after a failed connection; it doubles up to
	// a minute. Default 1s.
	Retry Duration `yaml:"retry"`
}

// Collector is one central log server.
type Collector struct {
	// Name identifies the collector in status, metrics and the name of
	// its cursor file (data_dir/syslog/NAME.cursor).
	Name string `yaml:"name"`
	// Addr is host:port, usually port 6514.
	Addr string `yaml:"addr"`
	// ServerName is the name the collector's certificate must carry.
	// Default: the host of Addr.
	ServerName string `yaml:"server_name"`
	// CAFile holds the CA certificates the collector's certificate is
	// verified against (PEM); the system's roots are not used.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the gateway's client certificate and key
	// (PEM), presented to the collector.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults of the syslog section (docs/CONFIG.md).
const (
	DefaultSyslogMaxBehind   = 100000
	DefaultSyslogMaxAge      = time.Hour
	DefaultSyslogWarnPercent = 80
	DefaultSyslogTimeout     = 10 * time.Second
	DefaultSyslogSettle      = 2 * time.Second
	DefaultSyslogRetry       = time.Second
)

func (s *Syslog) fillDefaults(cfgPath string, pos *positions) {
	if s.MaxBehind == 0 && !pos.has("syslog", "max_behind") {
		s.MaxBehind = DefaultSyslogMaxBehind
	}
	if s.WarnPercent == 0 && !pos.has("syslog", "warn_percent") {
		s.WarnPercent = DefaultSyslogWarnPercent
	}
	setDuration(&s.MaxAge, DefaultSyslogMaxAge, pos, "syslog", "max_age")
	setDuration(&s.Timeout, DefaultSyslogTimeout, pos, "syslog", "timeout")
	setDuration(&s.Settle, DefaultSyslogSettle, pos, "syslog", "settle")
	setDuration(&s.Retry, DefaultSyslogRetry, pos, "syslog", "retry")
	for i := range s.Collectors {
		c := &s.Collectors[i]
		if c.ServerName == "" {
			c.ServerName, _, _ = net.SplitHostPort(c.Addr)
		}
		for _, f := range []*string{&c.CAFile, &c.CertFile, &c.KeyFile} {
			if *f != "" && cfgPath != "" && !filepath.IsAbs(*f) {
				if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), *f)); err == nil {
					*f = abs
				}
			}
		}
	}
}

// validateSyslog checks the limits and that every collector has an
// address, a CA and a client certificate: there is no unauthenticated or
// plaintext way to send the audit log.
func validateSyslog(c *Config, pos *positions, r *report) {
	s := c.Syslog
	if s.MaxBehind < 1 && pos.decodes(new(int), "syslog", "max_behind") {
		r.add(pos.line("syslog", "max_behind"), "syslog.max_behind must be at least 1")
	}
	if (s.WarnPercent < 1 || s.WarnPercent > 99) && pos.decodes(new(int), "syslog", "warn_percent") {
		r.add(pos.line("syslog", "warn_percent"), "syslog.warn_percent must be 1 to 99")
	}
	for _, k := range []struct {
		key string
		d   Duration
	}{{"max_age", s.MaxAge}, {"timeout", s.Timeout}, {"settle", s.Settle}, {"retry", s.Retry}} {
		checkPositive(r, pos, k.d, "syslog", k.key)
	}
	names := map[string]int{}
	for i, col := range s.Collectors {
		checkID(r, pos, "collector", col.Name, names, "syslog", "collectors", i)
		at := func(key string) int { return pos.line("syslog", "collectors", i, key) }
		if err := checkHostPort(col.Addr, false); err != nil {
			r.add(at("addr"), "syslog.collectors[%d].addr: %v", i, err)
		} else if col.ServerName == "" {
			r.add(at("addr"), "syslog.collectors[%d].addr must name the collector (or set server_name)", i)
		}
		for _, f := range []struct{ key, path string }{{"ca_file", col.CAFile}, {"cert_file", col.CertFile}, {"key_file", col.KeyFile}} {
			if f.path == "" {
				r.add(pos.line("syslog", "collectors", i), "syslog.collectors[%d].%s is required: the audit log travels only over mutual TLS", i, f.key)
			} else if f.key == "key_file" && InsideDataDir(c.Gateway.DataDir, f.path) {
				r.add(at(f.key), "syslog.collectors[%d].key_file %s lies inside data_dir %s; keep it with the configuration", i, f.path, c.Gateway.DataDir)
			}
		}
	}
}
