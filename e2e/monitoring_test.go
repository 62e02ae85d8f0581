package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestMonitoring scrapes /metrics of a running gateway while a session
// runs and after it ended, checks the series by name and value, lints the
// scrape with `promtool check metrics` and the example alert rules with
// `promtool check rules`, and asks /healthz and /readyz.
func TestMonitoring(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "promtool")
	var base string
	e := newEnv(t, func(c *config.Config) {
		c.Monitoring.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		c.Log.Format = "json"
		base = "http://" + c.Monitoring.Listen
	})

	// One failed login: mallory's key is registered to nobody.
	if r := e.Mallory.SSH(t, sshArgs(e.routeArgs("root", "db1"), "true")...); r.Code == 0 {
		e.failf(t, r, "mallory: want the login refused")
	}
	// One session, scraped while it runs.
	cmd := e.Alice.Command(t, "ssh", sshArgs(e.routeArgs("root", "db1"), "sleep 4")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer testenv.KillGroup(cmd)
	during := waitSeries(t, base, `tandem_sessions{kind="exec",state="live"}`, 1)
	if during[`tandem_connections_open`] < 1 {
		t.Errorf("tandem_connections_open = %v during the session, want at least 1", during[`tandem_connections_open`])
	}
	// The session's connection is authenticated: it holds no slot of
	// limits.unauthenticated, and nobody waits for one.
	for _, series := range []string{`tandem_connections_unauthenticated`, `tandem_connections_waiting`} {
		if v, ok := during[series]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v) during the session, want 0", series, v, ok)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("alice's session: %v\ngateway output:\n%s", err, e.GW.Tail())
	}

	// The client's ssh returns once the channel is closed; the gateway
	// takes the session out of its registry, and counts its recorded
	// bytes, a moment later.
	if !testenv.WaitFor(10*time.Second, func() bool {
		_, live := testenv.Samples(get(t, base+"/metrics", 200))[`tandem_sessions{kind="exec",state="live"}`]
		return !live
	}) {
		t.Error("the ended session is still counted in tandem_sessions after 10s")
	}
	text := waitSeries(t, base, `tandem_auth_failures_total{stage="auth"}`, 1)
	want := map[string]float64{
		`tandem_auth_successes_total`:                 1,
		`tandem_sessions_started_total{kind="exec"}`:  1,
		`tandem_certificates_signed_total{ca="user"}`: 1,
		`tandem_refusals_total{reason="deny"}`:        0,
		`tandem_audit_appends_in_flight`:              0,
		`tandem_data_disk_refusing`:                   0,
	}
	for series, v := range want {
		if got := text[series]; got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for _, series := range []string{`tandem_connections_accepted_total`, `tandem_recording_bytes_total{kind="exec"}`,
		`tandem_certificates_signed_total{ca="host"}`, `tandem_audit_append_seconds_count`, `tandem_data_disk_free_bytes`} {
		if text[series] <= 0 {
			t.Errorf("%s = %v, want more than 0", series, text[series])
		}
	}

	raw := get(t, base+"/metrics", 200)
	testenv.Promtool(t, raw, "check", "metrics")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Promtool(t, "", "check", "rules", filepath.Join(root, "docs", "tandem-alerts.yml"))

	if body := get(t, base+"/healthz", 200); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	if body := get(t, base+"/readyz", 200); body != "ok audit\nok store\nok signing\nok breakglass\n" {
		t.Errorf("/readyz: %q", body)
	}
	// log.format json: every line the gateway wrote is one JSON object.
	for _, line := range strings.Split(strings.TrimSpace(e.GW.Stderr.String()), "\n") {
		if !strings.HasPrefix(line, `{"time":`) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
}

// waitSeries scrapes until series has value (10s at most) and returns the
// last scrape's samples.
func waitSeries(t *testing.T, base, series string, value float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := testenv.Samples(get(t, base+"/metrics", 200))
		if s[series] == value {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want %v", series, s[series], value)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get returns the body of url and checks the status.
func get(t *testing.T, url string, status int) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, b)
	}
	return string(b)
}
