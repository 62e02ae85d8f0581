package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/vault"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/sdnotify"
	"tandem.dev/tandem/internal/store"
)

func newServeCmd() *cobra.Command {
	var path string
	var debug bool
	var pprofAddr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the gateway",
		Long: `Run the gateway with the given configuration. Keys are created in the data
directory on first start and never replaced; the audit signing key
(audit.signing_key) is created outside it. audit.witness_file must be set,
outside the data directory. One gateway per data directory: a second serve
on the same one is refused. SIGHUP reloads the
configuration (a bad file is refused and the running one stays); SIGINT or
SIGTERM stop the gateway.

With monitoring.listen set, /healthz, /readyz and /metrics (Prometheus) are
served there; log.format and log.level shape the log on stderr
(docs/MONITORING.md).`,
		Example: `  tandem serve --config /etc/tandem/tandem.yaml
  curl -s http://127.0.0.1:9122/readyz      # with monitoring: {listen: 127.0.0.1:9122}
  curl -s http://127.0.0.1:9122/metrics | promtool check metrics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if pprofAddr != "" {
				ln, err := listenPprof(pprofAddr)
				if err != nil {
					return err
				}
				go servePprof(ctx, ln)
			}
			return runGateway(ctx, cfg, serveLogger(cmd.ErrOrStderr(), cfg.Log, debug), hup, nil)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&debug, "debug", false, "log handshake failures and other details")
	cmd.Flags().StringVar(&pprofAddr, "pprof", "", "serve Go's profiler (net/http/pprof, /debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060;\n"+
		"off by default; only a loopback IP literal is accepted, as the profiles show memory contents\n"+
		"such as session data and are served without authentication")
	return cmd
}

// listenPprof listens on addr for the profiler, refusing anything but a
// loopback IP literal: profiles (heap, goroutines) can reveal session data
// and are served without authentication, so they must never be reachable
// from another machine. A host name is refused too, as it might resolve to
// a non-loopback address.
func listenPprof(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--pprof %q: only a loopback address such as 127.0.0.1:6060 or [::1]:6060 is allowed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	return ln, nil
}

// servePprof serves the profiler's handlers on a private mux (not
// http.DefaultServeMux, so nothing else registered there is exposed) until
// ctx ends.
func servePprof(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	_ = srv.Serve(ln)
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// runGateway wires keys, audit log and server for cfg and serves until ctx
// ends. reload delivers requests to re-read the configuration file; ready,
// if set, is called with the listening address.
func runGateway(ctx context.Context, cfg *config.Config, log *slog.Logger, hup <-chan os.Signal, ready func(addr string)) error {
	if err := strictModes(cfg); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	if err := requireWitness(cfg); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	release, err := lockDataDir(cfg.Gateway.DataDir, "tandem serve")
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	defer release()
	warnSameDevice(cfg, log)
	keys, err := ca.LoadOrCreateType(keyDir(cfg), nil, cfg.Gateway.KeyType)
	if err != nil {
		return err
	}
	keyStore, err := openVault(cfg, true)
	if err != nil {
		return err
	}
	alog, err := openAuditLog(cfg, keyStore)
	if err != nil {
		return err
	}
	defer alog.Close()
	st, err := openKeyedStore(cfg, store.WithReporter(gateway.ReportForgery(alog, log)))
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	defer st.Close()
	rec, upload, err := newRecorder(cfg, keyStore, st)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	mon, err := newMonitor(cfg, keys, alog, st)
	if err != nil {
		return err
	}
	defer mon.close()
	readAudit := func(f audit.Filter, fn func(audit.Record) error) error {
		return audit.ReadKeys(auditDir(cfg), keyStore, f, fn)
	}
	ship, stopShip, err := startShipper(cfg, alog, log)
	if err != nil {
		return err
	}
	defer stopShip()
	mon.watchCentralLog(ship)
	cosigner, err := newCosigner(cfg, st, mon.audit, log)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	reload := &reloader{current: cfg, sink: mon.audit, log: log}
	lkey, err := linkKey(cfg)
	if err != nil {
		return err
	}
	lln, err := linkListener(cfg)
	if err != nil {
		return err
	}
	if lln != nil {
		defer lln.Close() // Serve closes it; this covers a return before Serve
	}
	srv, err := gateway.New(gateway.Options{Config: cfg, Keys: keys, Audit: mon.audit, Store: st, Recorder: rec, Logger: log, Now: clock.Now,
		Metrics: mon.metrics, ReadAudit: readAudit, Reload: reload.byPerson, Refuse: ship.Refusal, LinkKey: lkey, LinkListener: lln})
	if err != nil {
		return err
	}
	reload.srv = srv
	// Under systemd (Type=notify) the unit is started once the gateway
	// accepts connections, and restarted when the watchdog is not fed.
	notify, err := sdnotify.FromEnv()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	start := audit.GatewayStartEvent{Listen: ln.Addr().String(), ConfigDigest: cfg.Digest(), Version: version()}
	if err := audit.OrRefuse(ctx, alog, start.Event()); err != nil {
		ln.Close()
		return fmt.Errorf("audit log refuses the start event, not serving: %w", err)
	}
	// Sign at once, so that even a young log is covered by a checkpoint.
	if _, err := alog.Checkpoint(); err != nil {
		ln.Close()
		return fmt.Errorf("audit log cannot sign a checkpoint, not serving: %w", err)
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "profile", cfg.Gateway.CryptoProfile, "data_dir", cfg.Gateway.DataDir)
	if ready != nil {
		ready(ln.Addr().String())
	}
	if err := notify.Notify("READY=1"); err != nil {
		log.Warn("cannot tell systemd the gateway is ready", "err", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sched := newBackupSchedule(cfg, mon.audit, log)
	if sched != nil {
		mon.health.Add(sched.check())
	}
	if cosigner != nil {
		for _, c := range cosignChecks(cosigner) {
			mon.health.Add(c)
		}
	}
	mon.serve(ctx, srv, log)
	go watch(ctx, reload, alog, hup)
	go watchRotation(ctx, cfg, keys, mon.audit, log)
	// The retention job is serve's: it ends with ctx, and serve waits
	// for it before the log closes.
	var retained sync.WaitGroup
	retained.Add(1)
	go func() {
		defer retained.Done()
		job := newRetentionJob(cfg, rec.Vault, st, mon.audit, log)
		// Periods as the configuration in force says, after a reload too.
		job.Period = func(tenant string, c vault.Class) int {
			return int(reload.config().Period(tenant, string(c)) / config.Day)
		}
		runRetention(ctx, job, log)
	}()
	if sched != nil { // scheduled backups are serve's too
		retained.Add(1)
		go func() { defer retained.Done(); sched.run(ctx) }()
	}
	if cosigner != nil { // so is the witnessing of the peers
		retained.Add(1)
		go func() { defer retained.Done(); cosigner.Run(ctx, cosignEvery) }()
	}
	if upload != nil { // and the upload of spooled recordings
		mon.health.Add(spoolCheck(upload))
		retained.Add(1)
		go func() { defer retained.Done(); upload.RunUploader(ctx, time.Second, spoolWarner(log)) }()
	}
	retained.Add(1) // and so is the watchdog's ping
	go func() {
		defer retained.Done()
		notify.RunWatchdog(ctx, func(err error) { log.Warn("systemd watchdog", "err", err) })
	}()
	err = srv.Serve(ctx, ln)
	_ = notify.Notify("STOPPING=1") // best effort: systemd sees the exit anyway
	cancel()
	retained.Wait()
	audit.BestEffort(context.Background(), alog, log, audit.GatewayStopEvent{}.Event()) // the gateway has stopped anyway
	log.Info("gateway stopped")
	return err
}

// openAuditLog opens the audit log with the signing key and witness
// outside data_dir. A damaged log keeps the gateway from starting, and
// the error says the way back.
func openAuditLog(cfg *config.Config, keyStore audit.Keys) (*audit.Log, error) {
	key, err := openSigningKey(cfg, true)
	if err != nil {
		return nil, fmt.Errorf("refusing to start: %w", err)
	}
	alog, err := audit.Open(audit.Options{
		Dir: auditDir(cfg), Key: key, Keys: keyStore, Now: clock.Now, Origin: cfg.Audit.Origin, WitnessFile: cfg.Audit.WitnessFile,
		CheckpointEvery: cfg.Audit.CheckpointEvery.Duration, CheckpointEvents: cfg.Audit.CheckpointEvents,
	})
	if errors.Is(err, audit.ErrDamaged) {
		return nil, fmt.Errorf("refusing to start: %w\nThe gateway does not start on a damaged log. See what happened with\n  tandem audit verify --config %[2]s\nthen start a new log segment from the last witnessed checkpoint (the damaged files are kept, the loss is recorded) with\n  tandem audit recover --config %[2]s --reason \"what happened\"", err, configName(cfg))
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return alog, nil
}

// watch reloads the configuration on SIGHUP and ends every session when
// the audit log fails (fail closed). It ends with ctx.
func watch(ctx context.Context, r *reloader, alog *audit.Log, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-alog.Failed():
			r.log.Error("audit log failed: ending every session; new logins are refused")
			r.srv.EndAll("the audit log is unavailable, so the session cannot go on")
			<-ctx.Done()
			return
		case <-hup:
			r.onSignal(ctx)
		}
	}
}
