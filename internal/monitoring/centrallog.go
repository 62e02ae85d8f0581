package monitoring

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SpoolStatus is how far one central log collector is behind the audit
// log (the log is the spool; see docs/CENTRAL-LOG.md).
type SpoolStatus struct {
	Collector string    // its name in syslog.collectors: a bounded label
	Connected bool      // a TLS connection is up
	Depth     uint64    // records it lacks
	Oldest    time.Time // time of the first record it lacks; zero when none
	Refusing  bool      // so far behind that new sessions are refused
}

var (
	descSpoolDepth = prometheus.NewDesc("tandem_central_log_behind_records",
		"Audit records a central log collector has not received yet (the spool's depth).", []string{"collector"}, nil)
	descSpoolAge = prometheus.NewDesc("tandem_central_log_behind_seconds",
		"Age of the oldest audit record a collector has not received yet; 0 when it has all.", []string{"collector"}, nil)
	descSpoolUp = prometheus.NewDesc("tandem_central_log_connected",
		"1 while the TLS connection to the collector is up, else 0.", []string{"collector"}, nil)
	descSpoolRefusing = prometheus.NewDesc("tandem_central_log_refusing",
		"1 while new sessions are refused because the collector is too far behind, else 0.", []string{"collector"}, nil)
)

// spoolCollector reads the collectors' state at scrape time.
type spoolCollector struct {
	status func() []SpoolStatus
	now    func() time.Time
}

func (c spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSpoolDepth, descSpoolAge, descSpoolUp, descSpoolRefusing} {
		ch <- d
	}
}

func (c spoolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.status() {
		age := 0.0
		if !s.Oldest.IsZero() {
			age = max(0, c.now().Sub(s.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(descSpoolDepth, prometheus.GaugeValue, float64(s.Depth), s.Collector)
		ch <- prometheus.MustNewConstMetric(descSpoolAge, prometheus.GaugeValue, age, s.Collector)
		ch <- prometheus.MustNewConstMetric(descSpoolUp, prometheus.GaugeValue, b2f(s.Connected), s.Collector)
		ch <- prometheus.MustNewConstMetric(descSpoolRefusing, prometheus.GaugeValue, b2f(s.Refusing), s.Collector)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WatchCentralLog adds the central log's gauges, read from status at
// scrape time. now is the clock the records' times follow.
func (m *Metrics) WatchCentralLog(status func() []SpoolStatus, now func() time.Time) {
	m.reg.MustRegister(spoolCollector{status: status, now: now})
}

// CentralLogCheck is the readiness condition "the spool is below its
// limit": not ready while any collector is so far behind that new
// sessions are refused.
func CentralLogCheck(status func() []SpoolStatus) Check {
	return Check{Name: "central log", Run: func(context.Context) error {
		var behind []string
		for _, s := range status() {
			if s.Refusing {
				behind = append(behind, fmt.Sprintf("%s (%d records behind)", s.Collector, s.Depth))
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("too far behind, new sessions refused: %s", strings.Join(behind, ", "))
		}
		return nil
	}}
}

// Add appends a check to the readiness checks; call it before serving.
func (h *Health) Add(c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, c)
	h.last = nil
}
