package policy

import (
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
)

// FuzzAuthorize feeds arbitrary host names, environments, logins, actions,
// terminals and forwarding destinations to the engine. It must never panic,
// a person without roles must never be allowed anything, every refusal must
// explain itself on one line, and only an Allow names a request.
func FuzzAuthorize(f *testing.F) {
	f.Add("db1", "production", "root", "shell", "", false, true)
	f.Add("web1", "test", "deploy", "exec", "", false, false)
	f.Add("lab-1", "test", "ubuntu", "sftp", "", true, true)
	f.Add("", "", "", "forward", "pg.internal:5432", false, false)
	f.Add("x", "staging", "root", "forward", "[::1]:8080", true, false)
	f.Add("[", "test", "root\n", "forward", "[:", false, true)
	f.Add("db1", "prod", "", "x11", "db1:0", false, false)

	cfg := testConfig()
	e := New(cfg)
	key := ecdsaKey(f, "2026-06-01")
	nobody := person("nobody")
	everyone := person("alice")
	for _, r := range cfg.Roles {
		everyone.Roles = append(everyone.Roles, r.ID)
	}
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

	f.Fuzz(func(t *testing.T, hostName, env, login, action, fwd string, realData, pty bool) {
		var host *config.Host
		for i := range cfg.Hosts {
			if cfg.Hosts[i].Name == hostName {
				host = &cfg.Hosts[i]
			}
		}
		if host == nil && hostName != "" {
			host = &config.Host{Name: hostName, Tenant: "acme", Environment: env, RealData: realData,
				Labels: map[string]string{"role": login}}
		}
		window := RequestWindow{ID: "r1", Requester: "alice", Hosts: []string{hostName}, Login: login,
			From: now.Add(-time.Hour), Until: now.Add(time.Hour), Approved: true, TTY: pty}
		for _, p := range []*config.Person{nobody, everyone} {
			d := e.Authorize(Request{Person: p, Key: key, Host: host, Login: login,
				Action: Action(action), PTY: pty, ForwardTo: fwd, Now: now, Requests: []RequestWindow{window}})
			if p == nobody && d.Verdict != Deny {
				t.Fatalf("person without roles got %v for %q@%q %q %q", d.Verdict, login, hostName, action, fwd)
			}
			if d.Verdict != Allow && d.Reason == "" {
				t.Fatalf("%v without a reason", d.Verdict)
			}
			if d.Verdict == Allow && d.Reason != "" {
				t.Fatalf("Allow with reason %q", d.Reason)
			}
			if (d.Request != "" || d.Terminal) && (d.Verdict != Allow || d.Request != window.ID || d.Terminal && !window.TTY) {
				t.Fatalf("%v with request %q terminal %v", d.Verdict, d.Request, d.Terminal)
			}
			if strings.ContainsAny(d.Reason, "\n\r") {
				t.Fatalf("reason spans lines: %q", d.Reason)
			}
		}
		_ = e.FourEyes(host)
		_ = e.Grants(everyone)
	})
}
