package policy

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

// A login granted only by sftp_read_only rules reaches the sftp subsystem
// and nothing else: a shell, a command (scp -O, ssh host 'cat > f') or a
// forward could write around the read-only SFTP proxy. One grant without
// sftp_read_only makes the login read-write for everything, as before.
func TestSFTPReadOnlyGrantsSFTPOnly(t *testing.T) {
	fresh := ecdsaKey(t, "2026-06-01")
	cfg := testConfig()
	cfg.Roles = append(cfg.Roles,
		config.Role{ID: "reader", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"web1"}}, Logins: []string{"backup"},
			SFTPReadOnly: true, Forward: []string{"pg.internal:5432"}}}},
		config.Role{ID: "backup-rw", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"web1"}}, Logins: []string{"backup"}}}},
	)
	e := New(cfg)
	var web1 *config.Host
	for i := range cfg.Hosts {
		if cfg.Hosts[i].Name == "web1" {
			web1 = &cfg.Hosts[i]
		}
	}
	rows := []struct {
		name   string
		roles  []string
		action Action
		pty    bool
		fwd    string
		want   Verdict
		reason string
	}{
		{"read-only: sftp allowed", []string{"reader"}, ActionSFTP, false, "", Allow, ""},
		{"read-only: exec refused (scp -O, cat > f)", []string{"reader"}, ActionExec, false, "", Deny, "backup on web1 is granted by sftp_read_only rules only, which grant read-only SFTP only: a command is refused"},
		{"read-only: exec with a terminal refused", []string{"reader"}, ActionExec, true, "", Deny, "a command is refused"},
		{"read-only: shell refused", []string{"reader"}, ActionShell, true, "", Deny, "a shell is refused"},
		{"read-only: forward refused", []string{"reader"}, ActionForward, false, "pg.internal:5432", Deny, "port forwarding is refused"},
		{"read-only and read-write: exec allowed", []string{"reader", "backup-rw"}, ActionExec, false, "", Allow, ""},
		{"read-only and read-write: shell allowed", []string{"backup-rw", "reader"}, ActionShell, true, "", Allow, ""},
		{"read-write only: exec allowed", []string{"backup-rw"}, ActionExec, false, "", Allow, ""},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Authorize(Request{Person: person("rita", tc.roles...), Key: fresh, Host: web1, Login: "backup",
				Action: tc.action, PTY: tc.pty, ForwardTo: tc.fwd, Now: testNow})
			if d.Verdict != tc.want {
				t.Fatalf("verdict %v, want %v (reason %q)", d.Verdict, tc.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tc.reason)
			}
			if tc.want == Deny && !strings.Contains(d.Hint, "sftp") {
				t.Errorf("hint %q names no way to read files", d.Hint)
			}
		})
	}
}
