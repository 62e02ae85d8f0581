package config

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
)

// Monitoring configures the listener that serves /healthz, /readyz and
// /metrics. It is off unless Listen is set.
type Monitoring struct {
	// Listen is host:port with an IP literal. A loopback address is
	// served over plain HTTP; any other needs TLSCert and TLSKey, since
	// the metrics tell an observer how the gateway is used.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files (ECDSA P-256/P-384 or RSA of at
	// least 3072 bits). A relative path is resolved against the
	// configuration file's directory.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// Log configures the gateway's own operational log on stderr.
type Log struct {
	// Format is text (default, key=value) or json (one object per line).
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}

// Log formats and levels.
var (
	LogFormats = []string{"text", "json"}
	LogLevels  = []string{"debug", "info", "warn", "error"}
)

// Defaults of the log section.
const (
	DefaultLogFormat = "text"
	DefaultLogLevel  = "info"
)

// fillMonitoringDefaults sets the log defaults and resolves the TLS files
// against the configuration file's directory.
func fillMonitoringDefaults(c *Config) {
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	for _, f := range []*string{&c.Monitoring.TLSCert, &c.Monitoring.TLSKey} {
		if *f != "" && c.Path != "" && !filepath.IsAbs(*f) {
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(c.Path), *f)); err == nil {
				*f = abs
			}
		}
	}
}

// validateMonitoring refuses a monitoring listener that another machine
// could reach without TLS, and unknown log settings.
func validateMonitoring(c *Config, pos *positions, r *report) {
	m := c.Monitoring
	if !slices.Contains(LogFormats, c.Log.Format) {
		r.add(pos.line("log", "format"), "log.format %q: want text or json", c.Log.Format)
	}
	if !slices.Contains(LogLevels, c.Log.Level) {
		r.add(pos.line("log", "level"), "log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if (m.TLSCert == "") != (m.TLSKey == "") {
		r.add(pos.line("monitoring"), "monitoring: set both tls_cert and tls_key, or neither")
	}
	if m.Listen == "" {
		return
	}
	loopback, err := MonitoringLoopback(m.Listen)
	switch {
	case err != nil:
		r.add(pos.line("monitoring", "listen"), "monitoring.listen: %v", err)
	case !loopback && (m.TLSCert == "" || m.TLSKey == ""):
		r.add(pos.line("monitoring", "listen"), "monitoring.listen %s is not a loopback address: set tls_cert and tls_key, or listen on 127.0.0.1", m.Listen)
	}
}

// MonitoringLoopback reports whether addr (host:port) is a loopback
// address. The host must be an IP literal: a name might resolve to an
// address other machines reach.
func MonitoringLoopback(addr string) (bool, error) {
	if err := checkHostPort(addr, false); err != nil {
		return false, err
	}
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if ip == nil {
		return false, fmt.Errorf("%q: write an IP address such as 127.0.0.1:9122 or [::1]:9122, not a host name", addr)
	}
	return ip.IsLoopback(), nil
}
