package config

import (
	"strings"
	"testing"
)

// TestMonitoring checks that a monitoring listener other machines could
// reach needs TLS, that only IP literals are accepted, and the log
// settings.
func TestMonitoring(t *testing.T) {
	k := newKeys(t)
	for _, tc := range []struct {
		name, add string
		msg       string // "" = valid
	}{
		{name: "off", add: ""},
		{name: "loopback", add: "monitoring:\n  listen: 127.0.0.1:9122\n"},
		{name: "loopback v6", add: "monitoring:\n  listen: \"[::1]:9122\"\n"},
		{name: "tls elsewhere", add: "monitoring:\n  listen: 0.0.0.0:9122\n  tls_cert: m.crt\n  tls_key: m.key\n"},
		{name: "plain elsewhere", add: "monitoring:\n  listen: 0.0.0.0:9122\n", msg: "is not a loopback address: set tls_cert and tls_key"},
		{name: "host name", add: "monitoring:\n  listen: localhost:9122\n", msg: "not a host name"},
		{name: "no port", add: "monitoring:\n  listen: 127.0.0.1\n", msg: "is not host:port"},
		{name: "cert without key", add: "monitoring:\n  listen: 127.0.0.1:9122\n  tls_cert: m.crt\n", msg: "set both tls_cert and tls_key"},
		{name: "json log", add: "log:\n  format: json\n  level: debug\n"},
		{name: "bad format", add: "log:\n  format: xml\n", msg: `log.format "xml"`},
		{name: "bad level", add: "log:\n  level: loud\n", msg: `log.level "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/tandem/base.yaml", build(k, nil, tc.add))
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Log.Format == "" || c.Log.Level == "" {
					t.Errorf("log defaults not filled: %+v", c.Log)
				}
				if c.Monitoring.TLSCert != "" && c.Monitoring.TLSCert != "/etc/tandem/m.crt" {
					t.Errorf("tls_cert %q: want it resolved against the file's directory", c.Monitoring.TLSCert)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want a problem containing %q", err, tc.msg)
			}
		})
	}
}
