package monitoring

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
)

// Timeouts of the monitoring listener: a client that stalls holds a
// connection for seconds, not for ever.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second // a scrape gathers every metric
	idleTimeout       = 60 * time.Second
)

// Listen opens the monitoring listener of c (validated: an IP literal,
// TLS files when not loopback). A non-loopback listener speaks TLS only,
// with the profile of docs/STANDARDS.md.
func Listen(c config.Monitoring) (net.Listener, error) {
	loopback, err := config.MonitoringLoopback(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("monitoring.listen: %w", err)
	}
	var tc *tls.Config
	if c.TLSCert != "" {
		cert, err := cryptoprofile.LoadTLSCertificate(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("monitoring: %w", err)
		}
		tc = cryptoprofile.TLSServer(cert)
	} else if !loopback {
		return nil, fmt.Errorf("monitoring.listen %s is not a loopback address and has no TLS certificate", c.Listen)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("monitoring: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

// Handler routes /healthz, /readyz and /metrics; nothing else is served,
// and only GET and HEAD.
func Handler(m *Metrics, h *Health, log *slog.Logger, tls bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", m.Handler(log))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if tls {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		mux.ServeHTTP(w, r)
	})
}

// Serve serves handler on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler, log *slog.Logger) {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		// Handshake errors of scanners would otherwise go to the
		// standard logger, unstructured.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("monitoring listener stopped", "err", err)
	}
}
