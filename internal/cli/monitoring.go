package cli

import (
	"context"
	"log/slog"
	"net"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/syslog"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/monitoring"
	"tandem.dev/tandem/internal/store"
)

// monitor is the gateway's monitoring (docs/MONITORING.md): metrics fed
// by the gateway, the audit log and the CA keys, and the listener of
// monitoring.listen, if set.
type monitor struct {
	metrics *monitoring.Metrics
	audit   audit.Sink // the audit log, counted
	health  *monitoring.Health
	ln      net.Listener // nil when monitoring.listen is unset
	tls     bool
}

// newMonitor prepares monitoring before the gateway is built: the audit
// log and the CA keys are wrapped so that they count, and the listener is
// opened now, so that a taken port stops the start rather than leaving a
// gateway nobody can watch.
func newMonitor(cfg *config.Config, keys *ca.Keys, alog *audit.Log, st *store.Store) (*monitor, error) {
	m := &monitor{metrics: monitoring.New(version())}
	m.health = monitoring.NewHealth(
		monitoring.AuditCheck(alog.Failed()),
		monitoring.StoreCheck(func(ctx context.Context) error { _, err := st.Generation(ctx); return err }),
		// The original signer: the check's certificate is no signing
		// for the counts.
		monitoring.SigningCheck(keys.UserCA),
		monitoring.BreakglassCheck(func() error { return pendingBreakglass(cfg) }),
	)
	// Through WrapCA, so that a rotated CA is counted too.
	keys.WrapCA(func(kind ca.Kind, s ssh.Signer) ssh.Signer { return m.metrics.CountSignatures(string(kind), s) })
	m.audit = m.metrics.Sink(alog)
	if cfg.Monitoring.Listen == "" {
		return m, nil
	}
	ln, err := monitoring.Listen(cfg.Monitoring)
	if err != nil {
		return nil, err
	}
	m.ln, m.tls = ln, cfg.Monitoring.TLSCert != ""
	return m, nil
}

// serve connects the gauges to srv and serves the listener until ctx
// ends. Without a listener it only connects the gauges.
func (m *monitor) serve(ctx context.Context, srv *gateway.Server, log *slog.Logger) {
	m.metrics.Watch(srv)
	if m.ln == nil {
		return
	}
	log.Info("monitoring listening", "addr", m.ln.Addr().String(), "tls", m.tls)
	go monitoring.Serve(ctx, m.ln, monitoring.Handler(m.metrics, m.health, log, m.tls), log)
}

// close closes a listener that was never served (the start failed).
func (m *monitor) close() {
	if m.ln != nil {
		m.ln.Close()
	}
}

// watchCentralLog adds the central log's spool gauges and its readiness
// check; without collectors there is nothing to watch.
func (m *monitor) watchCentralLog(ship *syslog.Shipper) {
	if ship == nil {
		return
	}
	status := spoolStatus(ship)
	m.metrics.WatchCentralLog(status, clock.Now)
	m.health.Add(monitoring.CentralLogCheck(status))
}
