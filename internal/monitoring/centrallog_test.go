package monitoring

import (
	"context"
	"testing"
	"time"
)

// TestCentralLogGauges: the spool's depth, age and state per collector,
// and readiness failing only while a collector makes the gateway refuse.
func TestCentralLogGauges(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	st := []SpoolStatus{
		{Collector: "central", Connected: true},
		{Collector: "backup", Depth: 420, Oldest: now.Add(-90 * time.Second)},
	}
	status := func() []SpoolStatus { return st }
	m := New("test")
	m.WatchCentralLog(status, func() time.Time { return now })
	_, got := scrape(t, m)
	for series, want := range map[string]float64{
		`tandem_central_log_behind_records{collector="central"}`: 0,
		`tandem_central_log_connected{collector="central"}`:      1,
		`tandem_central_log_behind_records{collector="backup"}`:  420,
		`tandem_central_log_behind_seconds{collector="backup"}`:  90,
		`tandem_central_log_connected{collector="backup"}`:       0,
		`tandem_central_log_refusing{collector="backup"}`:        0,
	} {
		if v, ok := got[series]; !ok || !near(v, want) {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	check := CentralLogCheck(status)
	if err := check.Run(context.Background()); err != nil {
		t.Fatalf("behind but not refusing: %v", err)
	}
	st[1].Refusing = true
	if err := check.Run(context.Background()); err == nil {
		t.Fatal("a refusing collector left the gateway ready")
	}
}
