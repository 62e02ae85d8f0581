package monitoring

import (
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// factory makes collectors and registers them with reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// labelGuard keeps a label whose values come from another package to at
// most max distinct, well-formed values, so a mistake there cannot grow a
// series per item.
type labelGuard struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

var labelWord = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

func (g *labelGuard) value(v string) string {
	if !labelWord.MatchString(v) {
		return "other"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[string]bool{}
	}
	if !g.seen[v] && len(g.seen) >= g.max {
		return "other"
	}
	g.seen[v] = true
	return v
}

// gatewayCollector reads the gauges from the running gateway at scrape
// time (Metrics.Watch); before Watch they are absent.
type gatewayCollector struct{ m *Metrics }

var (
	descConnOpen = prometheus.NewDesc("tandem_connections_open", "Client connections held now (authenticated or in their handshake).", nil, nil)
	descUnauth   = prometheus.NewDesc("tandem_connections_unauthenticated", "Client connections holding a slot before authentication now (gateway.limits.unauthenticated).", nil, nil)
	descWaiting  = prometheus.NewDesc("tandem_connections_waiting", "Newcomers waiting for a slot now, while the unauthenticated connections are at their cap.", nil, nil)
	descSessions = prometheus.NewDesc("tandem_sessions", "Live sessions on targets, by kind (pty, exec, sftp, forward) and state (waiting, live, paused, ended).",
		[]string{"kind", "state"}, nil)
	descDiskFree    = prometheus.NewDesc("tandem_data_disk_free_bytes", "Free bytes on data_dir's file system at the last check.", nil, nil)
	descDiskSize    = prometheus.NewDesc("tandem_data_disk_size_bytes", "Size of data_dir's file system at the last check.", nil, nil)
	descDiskRefuses = prometheus.NewDesc("tandem_data_disk_refusing", "1 while new sessions are refused because the data disk is almost full, else 0.", nil, nil)
)

func (c gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnOpen, descUnauth, descWaiting, descSessions, descDiskFree, descDiskSize, descDiskRefuses} {
		ch <- d
	}
}

func (c gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.m.gw.Load()
	if p == nil {
		return
	}
	g := *p
	ch <- prometheus.MustNewConstMetric(descConnOpen, prometheus.GaugeValue, float64(g.OpenConnections()))
	unauth, waiting := g.Preauth()
	ch <- prometheus.MustNewConstMetric(descUnauth, prometheus.GaugeValue, float64(unauth))
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(waiting))
	counts := map[[2]string]int{}
	g.EachSession(func(kind, state string) { counts[[2]string{sessionKind(kind), sessionState(state)}]++ })
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	free, total, refusing := g.DiskFree()
	ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(descDiskSize, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(descDiskRefuses, prometheus.GaugeValue, boolGauge(refusing))
}

func sessionState(s string) string {
	switch s {
	case "waiting", "live", "paused", "ended":
		return s
	}
	return "other"
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
