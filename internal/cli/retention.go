package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"tandem.dev/tandem/internal/clock"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/retention"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// retentionEvery is how often `tandem serve` runs the retention job after
// its first run at start; noticeEvery how often it retries DPO notices in
// between.
const (
	retentionEvery = 24 * time.Hour
	noticeEvery    = 5 * time.Minute
)

// newRetentionJob wires the job for cfg: periods from the configuration,
// person and session holds from the audit log's clear fields.
func newRetentionJob(cfg *config.Config, v *vault.Vault, st *store.Store, sink audit.Sink, log *slog.Logger) *retention.Job {
	return &retention.Job{
		Vault: v, State: st, Audit: sink, Log: log, Now: clock.Now,
		Period:   func(tenant string, c vault.Class) int { return int(cfg.Period(tenant, string(c)) / config.Day) },
		Days:     retention.LogDays{Dir: auditDir(cfg), Keys: v},
		Notifier: retention.NewNotifier(cfg.Retention.DPO),
	}
}

// runRetention is `tandem serve`'s retention loop: a run at start for
// anything overdue, then one a day, and due DPO notices every few
// minutes. It ends with ctx; serve waits for it.
func runRetention(ctx context.Context, job *retention.Job, log *slog.Logger) {
	run := func() {
		if rep, err := job.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("retention run failed", "err", err)
		} else if len(rep.Destroyed)+rep.Repaired > 0 {
			log.Info("retention run", "destroyed", len(rep.Destroyed), "repaired", rep.Repaired, "kept_by_holds", rep.Kept)
		}
	}
	run()
	daily := time.NewTicker(retentionEvery)
	defer daily.Stop()
	notices := time.NewTicker(noticeEvery)
	defer notices.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-daily.C:
			run()
		case <-notices.C:
			if _, err := job.DeliverNotices(ctx); err != nil && ctx.Err() == nil {
				log.Error("retention: DPO notices", "err", err)
			}
		}
	}
}

// localRetention opens what a local retention command needs: the
// configuration, the state store (with the state key) and the vault.
func localRetention(path string) (*config.Config, *store.Store, *vault.Vault, error) {
	cfg, st, err := openStore(path)
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := openVault(cfg, false)
	if err == nil {
		_, err = recordingStorage(cfg, st, v) // shreds reach the shared key copies
	}
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return cfg, st, v, nil
}

// outboxSink queues events in the store's outbox, which `tandem serve`
// appends to the audit log: the local commands work whether or not it
// runs.
type outboxSink struct{ gw *localGateway }

func (o outboxSink) Append(ctx context.Context, e audit.Event) error { return o.gw.Audit(ctx, e) }

func newRetentionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "retention of evidence: destroy data keys whose period is over, extend, show (docs/RETENTION.md)",
	}
	cmd.AddCommand(newRetentionRunCmd(), newRetentionStatusCmd(), newRetentionExtendCmd())
	return cmd
}

func newRetentionRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "destroy every data key whose retention period is over, now, and deliver due DPO notices",
		Long: `Run the retention job once: every data key whose period is over, and that
no extension or legal hold keeps, is destroyed (crypto-shredding), each
destruction is audited (key.destroyed, queued for the running gateway), and
DPO notices that are due are delivered. "tandem serve" runs the same job at
start and daily; this command is for a gateway host without it running, or
to see the result at once. Running it twice does nothing more.`,
		Example: `  tandem retention run -c /etc/tandem/tandem.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, v, err := localRetention(path)
			if err != nil {
				return err
			}
			defer st.Close()
			gw := newLocalGateway(cmd.Context(), cfg, st, v)
			rep, err := newRetentionJob(cfg, v, st, outboxSink{gw}, slog.New(slog.DiscardHandler)).Run(cmd.Context())
			for _, a := range rep.Destroyed {
				fmt.Fprintf(cmd.OutOrStdout(), "destroyed %s %s %s: %s\n", a.Key.Class, a.Key.Tenant, a.Key.Day, a.Reason)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d key(s) destroyed, %d destruction(s) audited late, %d due key(s) kept by legal holds, %d notice(s) delivered, %d failed\n",
				len(rep.Destroyed), rep.Repaired, rep.Kept, rep.Notices, rep.Failed)
			return err
		},
	}
	configFlag(cmd, &path)
	return cmd
}

func newRetentionExtendCmd() *cobra.Command {
	var path, tenant, class, until, ref, by string
	cmd := &cobra.Command{
		Use:   "extend --tenant T --class operational --until DATE --request-ref REF --by PERSON",
		Short: "keep a tenant's operational data longer (at most 14 days), with a notice to the DPO",
		Long: `Keep a tenant's operational data (source addresses, client versions,
connection metadata) beyond its 1 to 3 days, on a request: an incident, an
authority's letter. Only operational data can be extended, until at most
14 days after today, and no day's keys are kept beyond that day + 14.

The extension is audited (retention.extended) and a notice to the data
protection officer (retention.dpo) is delivered at once; one that fails is
retried with backoff by "tandem serve" and "tandem retention run".`,
		Example: `  tandem retention extend --tenant klinik-sued --class operational --until 2026-12-10 \
      --request-ref INC-2041 --by alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return extend(cmd, path, store.Extension{Tenant: tenant, Class: class, RequestRef: ref, By: by}, until)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant (required)")
	cmd.Flags().StringVar(&class, "class", "operational", "the class of data: only operational")
	cmd.Flags().StringVar(&until, "until", "", "the last day to keep, YYYY-MM-DD (UTC), at most 14 days from today (required)")
	cmd.Flags().StringVar(&ref, "request-ref", "", "the request it serves: ticket, letter, case (required)")
	cmd.Flags().StringVar(&by, "by", "", "the configured person who extends (required)")
	return cmd
}

func extend(cmd *cobra.Command, path string, x store.Extension, until string) error {
	u, err := config.ParseDate(until)
	if err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if x.Tenant == "" || x.RequestRef == "" {
		return errors.New("--tenant and --request-ref are required")
	}
	now := clock.Now().UTC()
	if err := config.ValidateExtension(x.Class, u.Time, now.Truncate(config.Day)); err != nil {
		return err
	}
	cfg, st, v, err := localRetention(path)
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.Tenant(x.Tenant) == nil {
		return fmt.Errorf("unknown tenant %q", x.Tenant)
	}
	if cfg.Person(x.By) == nil {
		return fmt.Errorf("--by %q: not a configured person; name yourself with --by PERSON", x.By)
	}
	if retention.NewNotifier(cfg.Retention.DPO) == nil {
		return errors.New("retention.dpo is not configured: an extension needs a notice to the data protection officer")
	}
	x.ID, x.Until, x.Created = newID(), u.Time, now
	ev := audit.RetentionExtendedEvent{Tenant: x.Tenant, ID: x.ID, Class: x.Class, Until: x.Until, RequestRef: x.RequestRef, By: x.By, Actor: localActor()}.Event()
	ev.Time = now
	if err := st.AddExtension(cmd.Context(), x, ev, retention.NoticeText(x)); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "extension %s: %s data of %s kept through %s\n", x.ID, x.Class, x.Tenant, until)
	gw := newLocalGateway(cmd.Context(), cfg, st, v)
	rep, err := newRetentionJob(cfg, v, st, outboxSink{gw}, slog.New(slog.DiscardHandler)).DeliverNotices(cmd.Context())
	switch {
	case err != nil || rep.Failed > 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: the DPO notice was not delivered yet; it is retried (see tandem retention status)%s\n", errSuffix(err))
	case rep.Notices > 0:
		fmt.Fprintln(cmd.OutOrStdout(), "DPO notice delivered")
	}
	return nil
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// newID is a random id for holds and extensions, short enough to type.
func newID() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}
