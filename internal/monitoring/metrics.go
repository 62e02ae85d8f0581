// Package monitoring is the gateway's health and metrics: the counters and
// gauges of docs/MONITORING.md in Prometheus form, the readiness checks,
// and the listener that serves /healthz, /readyz and /metrics.
//
// Nothing here may hold back a connection, a session or an enforcement:
// the gateway's calls only add to atomic counters or, for the audit
// events, take a short mutex over in-memory maps. Label values come from
// small fixed sets (kinds, states, reason codes); person ids, addresses
// and host names are never labels, as they are personal data and would
// make a series per person.
package monitoring

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tandem.dev/tandem/internal/ratelimit"
)

// Gateway is what the metrics read from the running gateway when they are
// scraped, so the gauges never drift from the registry they describe.
type Gateway interface {
	// OpenConnections is the number of client connections held now.
	OpenConnections() int
	// Preauth is the number of connections holding a slot before
	// authentication, and of newcomers waiting for one (the waiting room
	// at the cap, gateway.limits.evict_after_silence).
	Preauth() (unauthenticated, waiting int)
	// EachSession calls f with the kind and state of every live session.
	EachSession(f func(kind, state string))
	// DiskFree is the data disk's free and total bytes at the last
	// check, and whether new sessions are refused for lack of space.
	DiskFree() (free, total uint64, refusing bool)
}

// Metrics holds every collector of one gateway process in a registry of
// its own (not Prometheus's global one, which any imported package could
// fill).
type Metrics struct {
	reg *prometheus.Registry
	gw  atomic.Pointer[Gateway]

	connAccepted   prometheus.Counter
	connRefused    *prometheus.CounterVec
	sessStarted    *prometheus.CounterVec
	recBytes       *prometheus.CounterVec
	authFailures   *prometheus.CounterVec
	authSuccesses  prometheus.Counter
	authBlocks     *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	fourEyesWait   *prometheus.HistogramVec
	enforcementLag prometheus.Observer
	auditLatency   prometheus.Observer
	auditInFlight  prometheus.Gauge
	auditErrors    prometheus.Counter
	certsSigned    *prometheus.CounterVec
	retention      *prometheus.CounterVec
	retentionNames labelGuard
}

// New builds the metrics of a gateway of the given version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), retentionNames: labelGuard{max: 16}}
	m.counters()
	m.histograms()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_build_info", Help: "Always 1; the label names the running version.",
		ConstLabels: prometheus.Labels{"version": version}})
	build.Set(1)
	m.reg.MustRegister(build, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gatewayCollector{m})
	return m
}

func (m *Metrics) counters() {
	f := factory{m.reg}
	m.connAccepted = f.counter("tandem_connections_accepted_total", "Client TCP connections accepted for an SSH handshake.")
	m.connRefused = f.counterVec("tandem_connections_refused_total", "Client connections closed before the handshake, by reason.", "reason")
	m.sessStarted = f.counterVec("tandem_sessions_started_total", "Sessions on targets that started (start event written, recording open), by kind.", "kind")
	m.recBytes = f.counterVec("tandem_recording_bytes_total", "Bytes of recorded session content (before encryption), by session kind.", "kind")
	m.authFailures = f.counterVec("tandem_auth_failures_total", "Connections that ended without authenticating after a failed attempt or a timeout, by stage (kex, auth or proxy).", "stage")
	m.authSuccesses = f.counter("tandem_auth_successes_total", "Logins that passed the key check and the policy.")
	m.authBlocks = f.counterVec("tandem_auth_blocks_total", "Blocks started after too many failed logins, by scope (source or person).", "scope")
	m.refusals = f.counterVec("tandem_refusals_total", "Sessions, channels and forwards refused, by reason code.", "reason")
	m.auditErrors = f.counter("tandem_audit_append_errors_total", "Audit events the log did not take.")
	m.certsSigned = f.counterVec("tandem_certificates_signed_total", "Certificates signed, by CA (user: per-session target certificates; host: the gateway's host certificates).", "ca")
	m.retention = f.counterVec("tandem_retention_actions_total", "Items the retention job acted on, by action.", "action")
	m.auditInFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_audit_appends_in_flight", Help: "Audit events handed to the log and not yet stored durably."})
	m.reg.MustRegister(m.auditInFlight)
}

func (m *Metrics) histograms() {
	f := factory{m.reg}
	m.fourEyesWait = f.histogramVec("tandem_four_eyes_wait_seconds", "Time a four-eyes session waited for its second person, by outcome (joined or gave_up).",
		[]float64{5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}, "outcome")
	m.enforcementLag = f.histogramVec("tandem_enforcement_lag_seconds", "Time from a lock to the end of the last session of the locked person on this gateway.",
		[]float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10}).WithLabelValues()
	m.auditLatency = f.histogramVec("tandem_audit_append_seconds", "Time until the audit log stored an event durably (fsync included).",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}).WithLabelValues()
}

// Watch connects the scrape-time gauges to the running gateway.
func (m *Metrics) Watch(g Gateway) { m.gw.Store(&g) }

// Handler serves the metrics in Prometheus's text format. A failure to
// gather is logged and answered with 500.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError), MaxRequestsInFlight: 4,
		Timeout: 10 * time.Second,
	})
}

// The gateway's calls (gateway.Metrics). Each is a counter increment.

// ConnectionAccepted counts a connection taken for a handshake.
func (m *Metrics) ConnectionAccepted() { m.connAccepted.Inc() }

// ConnectionRefused counts a connection closed before its handshake;
// reason is "max_connections" or a reason of the rate limiter (including
// ratelimit.ReasonEvicted for a silent connection that lost its slot).
func (m *Metrics) ConnectionRefused(reason string) {
	m.connRefused.WithLabelValues(connRefusalCode(reason)).Inc()
}

// SessionStarted counts a session of kind (pty, exec, sftp, forward).
func (m *Metrics) SessionStarted(kind string) { m.sessStarted.WithLabelValues(sessionKind(kind)).Inc() }

// SessionEnded adds the bytes recorded for a session of kind.
func (m *Metrics) SessionEnded(kind string, recorded int64) {
	if recorded > 0 {
		m.recBytes.WithLabelValues(sessionKind(kind)).Add(float64(recorded))
	}
}

// RetentionAction counts n items the retention job acted on (deleted a
// recording, shredded a data key, …). action should be one of a few fixed
// words; past 16 distinct ones the rest count as "other".
func (m *Metrics) RetentionAction(action string, n int) {
	if n > 0 {
		m.retention.WithLabelValues(m.retentionNames.value(action)).Add(float64(n))
	}
}

// connRefusalCode maps the rate limiter's reasons to label values.
func connRefusalCode(reason string) string {
	switch reason {
	case "max_connections", "proxy_protocol":
		return reason
	case ratelimit.ReasonSourceBlocked:
		return "source_blocked"
	case ratelimit.ReasonTooManyUnauth:
		return "unauthenticated"
	case ratelimit.ReasonTooManyPerSrc:
		return "unauthenticated_per_source"
	case ratelimit.ReasonTooManyPerNet:
		return "unauthenticated_per_prefix"
	case ratelimit.ReasonEvicted:
		return "evicted_silent"
	}
	return "other"
}

func sessionKind(kind string) string {
	switch kind {
	case "pty", "exec", "sftp", "forward":
		return kind
	}
	return "other"
}
