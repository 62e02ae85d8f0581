package monitoring

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// scrape renders m as a scrape does and returns the text and its samples
// by series ("name{label="value"}").
func scrape(t *testing.T, m *Metrics) (string, map[string]float64) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(quiet).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String(), testenv.Samples(rec.Body.String())
}

// fakeGateway is what the gauges read in these tests.
type fakeGateway struct{}

func (fakeGateway) OpenConnections() int { return 3 }
func (fakeGateway) Preauth() (int, int)  { return 7, 2 }
func (fakeGateway) EachSession(f func(kind, state string)) {
	f("pty", "waiting")
	f("pty", "waiting")
	f("exec", "live")
}
func (fakeGateway) DiskFree() (uint64, uint64, bool) { return 1 << 30, 4 << 30, false }

// TestSinkCounts feeds a day's worth of events through the audit sink and
// checks every count it derives, and that the events reach the log.
func TestSinkCounts(t *testing.T) {
	m := New("test")
	mem := &audit.MemorySink{}
	s := m.Sink(mem)
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	fourEyes := true
	events := []audit.Event{
		audit.AuthFailureEvent{Stage: "kex"}.Event(),
		audit.AuthFailureEvent{Stage: "auth", Attempts: 2}.Event(),
		audit.AuthSuccessEvent{Conn: audit.Conn{Person: "alice"}}.Event(),
		audit.AuthBlockedEvent{Scope: "source", Until: t0}.Event(),
		audit.SessionDeniedEvent{Reason: "no role grants it", Verdict: "deny"}.Event(),
		audit.SessionDeniedEvent{Reason: "channels_per_connection"}.Event(),
		audit.SessionDeniedEvent{Reason: "alice is locked: gone"}.Event(),
		audit.ForwardDeniedEvent{Kind: "x11"}.Event(),
		at(audit.SessionStartEvent{Target: audit.Target{Person: "alice", Session: "s1"}, FourEyes: &fourEyes}.Event(), t0),
		at(audit.SessionStateEvent{State: audit.SessionWaiting, Target: audit.Target{Session: "s1"}}.Event(), t0),
		at(audit.SessionStateEvent{State: audit.SessionLive, Target: audit.Target{Session: "s1"}}.Event(), t0.Add(40*time.Second)),
		at(audit.SessionStartEvent{Target: audit.Target{Person: "alice", Session: "s2"}}.Event(), t0),
		// alice is locked; her two sessions end 300 ms and 700 ms later.
		at(audit.LockEvent{Person: "alice", Reason: "test"}.Event(), t0.Add(time.Minute)),
		at(audit.SessionEndEvent{Target: audit.Target{Person: "alice", Session: "s1"}}.Event(), t0.Add(time.Minute+300*time.Millisecond)),
		at(audit.SessionEndEvent{Target: audit.Target{Person: "alice", Session: "s2"}}.Event(), t0.Add(time.Minute+700*time.Millisecond)),
		// bob's session ends before his lock is audited.
		at(audit.SessionStartEvent{Target: audit.Target{Person: "bob", Session: "s3"}}.Event(), t0),
		at(audit.SessionEndEvent{Target: audit.Target{Person: "bob", Session: "s3"}}.Event(), t0.Add(2*time.Minute+200*time.Millisecond)),
		at(audit.LockEvent{Person: "bob", Reason: "test"}.Event(), t0.Add(2*time.Minute)),
		audit.KeyDestroyedEvent{Tenant: "acme", Class: "operational", Day: "2026-04-27", KeyID: "k1"}.Event(),
		audit.KeyDestroyedEvent{Tenant: "acme", Class: "operational", Day: "2026-04-28", KeyID: "k2"}.Event(),
	}
	for _, e := range events {
		if err := s.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(mem.Events()); n != len(events) {
		t.Errorf("the log got %d events, want %d", n, len(events))
	}
	m.Watch(fakeGateway{})
	_, got := scrape(t, m)
	for series, want := range map[string]float64{
		`tandem_auth_failures_total{stage="kex"}`:                            1,
		`tandem_auth_failures_total{stage="auth"}`:                           1,
		`tandem_auth_successes_total`:                                        1,
		`tandem_auth_blocks_total{scope="source"}`:                           1,
		`tandem_refusals_total{reason="deny"}`:                               1,
		`tandem_refusals_total{reason="channels_per_connection"}`:            1,
		`tandem_refusals_total{reason="not_permitted_now"}`:                  1,
		`tandem_refusals_total{reason="forward_unsupported"}`:                1,
		`tandem_four_eyes_wait_seconds_count{outcome="joined"}`:              1,
		`tandem_four_eyes_wait_seconds_sum{outcome="joined"}`:                40,
		`tandem_enforcement_lag_seconds_count`:                               2,
		`tandem_enforcement_lag_seconds_sum`:                                 0.9,
		`tandem_enforcement_lag_seconds_bucket{le="0.5"}`:                    1,
		`tandem_audit_append_seconds_count`:                                  float64(len(events)),
		`tandem_audit_appends_in_flight`:                                     0,
		`tandem_connections_open`:                                            3,
		`tandem_connections_unauthenticated`:                                 7,
		`tandem_connections_waiting`:                                         2,
		`tandem_sessions{kind="pty",state="waiting"}`:                        2,
		`tandem_sessions{kind="exec",state="live"}`:                          1,
		`tandem_data_disk_free_bytes`:                                        1 << 30,
		`tandem_build_info{version="test"}`:                                  1,
		`tandem_retention_actions_total{action="key_destroyed_operational"}`: 2,
	} {
		if v, ok := got[series]; !ok || !near(v, want) {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

func at(e audit.Event, t time.Time) audit.Event { e.Time = t; return e }

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestGatewayCounts checks the gateway's own calls and the guard on
// retention action names.
func TestGatewayCounts(t *testing.T) {
	m := New("test")
	m.ConnectionAccepted()
	m.ConnectionRefused("max_connections")
	m.ConnectionRefused("too many unauthenticated connections from this source")
	m.ConnectionRefused("something new")
	m.ConnectionRefused("evicted: silent while the gateway was full")
	m.SessionStarted("exec")
	m.SessionEnded("exec", 1200)
	m.SessionEnded("pty", 0)
	m.RetentionAction("recording_deleted", 2)
	m.RetentionAction("Bad Name!", 1)
	for i := range 20 {
		m.RetentionAction("action_"+strconv.Itoa(i), 1)
	}
	_, got := scrape(t, m)
	for series, want := range map[string]float64{
		`tandem_connections_accepted_total`:                                     1,
		`tandem_connections_refused_total{reason="max_connections"}`:            1,
		`tandem_connections_refused_total{reason="unauthenticated_per_source"}`: 1,
		`tandem_connections_refused_total{reason="other"}`:                      1,
		`tandem_connections_refused_total{reason="evicted_silent"}`:             1,
		`tandem_sessions_started_total{kind="exec"}`:                            1,
		`tandem_recording_bytes_total{kind="exec"}`:                             1200,
		`tandem_retention_actions_total{action="recording_deleted"}`:            2,
		`tandem_retention_actions_total{action="other"}`:                        1 + 5,
	} {
		if v := got[series]; !near(v, want) {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}
	if _, ok := got[`tandem_connections_open`]; ok {
		t.Error("gauges of the gateway present before Watch")
	}
}

// TestPromtoolCheckMetrics lints a full scrape with promtool (Debian
// package prometheus): names, units, help texts.
func TestPromtoolCheckMetrics(t *testing.T) {
	m := New("test")
	m.Watch(fakeGateway{})
	_ = m.Sink(&audit.MemorySink{}).Append(context.Background(), audit.AuthFailureEvent{Stage: "kex"}.Event())
	text, _ := scrape(t, m)
	testenv.Promtool(t, text, "check", "metrics")
}
