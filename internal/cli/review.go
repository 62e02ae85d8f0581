package cli

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/report"
	"tandem.dev/tandem/internal/safetext"
)

// newReviewCmd is "tandem review": spot checks (M29).
func newReviewCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "review",
		Short:   "spot checks: draw sessions and access requests at random for review",
		Example: `  tandem review sample -c /etc/tandem/tandem.yaml --tenant schule-nord --period 2026-10-01..2026-10-31 --count 5`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var cfgPath, tenant, period, seed string
	var count int
	sample := &cobra.Command{
		Use:   "sample",
		Short: "draw sessions and access requests of a tenant at random, record the draw, and print how to review each",
		Long: `Draws --count items among the tenant's sessions of the period and the
access requests they ran under, records the draw in the audit log
(review.sampled), and prints each with the command that replays it and the
command a reviewer records the verdict with. The same --seed over the same
records draws the same items; without --seed a random one is chosen and
printed. Verdicts and the draw appear in the tenant's evidence report.`,
		Example: `  tandem review sample -c /etc/tandem/tandem.yaml --tenant schule-nord --period 2026-10-01..2026-10-31 --count 5
  tandem review sample -c /etc/tandem/tandem.yaml --tenant schule-nord --period 2026-10-01..2026-10-31 --count 5 --seed 4711   # the same draw again
  ssh gw review record 7f3a9c01de --verdict ok                # the reviewer, after replaying it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("--tenant is required")}
			}
			from, to, _ := strings.Cut(period, "..")
			if to == "" {
				to = from
			}
			fromDay, toDay, err := reportPeriod(from, to, clock.Now().UTC())
			if err != nil {
				return &usageError{cmd: cmd, err: fmt.Errorf("--period FROM..TO: %w", err)}
			}
			s, err := parseSeed(seed)
			if err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			cfg, v, gw, done, err := openReportSources(cmd, cfgPath)
			if err != nil {
				return err
			}
			defer done()
			if cfg.Tenant(tenant) == nil {
				return fmt.Errorf("unknown tenant %q", tenant)
			}
			d, err := report.DrawSample(report.SampleOptions{AuditDir: auditDir(cfg), Keys: v, Tenant: tenant, From: fromDay, To: toDay, Count: count, Seed: s})
			if err != nil {
				return err
			}
			if len(d.Items) == 0 {
				return fmt.Errorf("nothing to draw: %s has no sessions in %s", tenant, d.Period)
			}
			if err := gw.Audit(cmd.Context(), d.Event()); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "drawn %d of %d from %s, %s (seed %d: the same seed draws the same)\n", len(d.Items), d.Candidates, tenant, d.Period, d.Seed)
			for _, it := range d.Items {
				fmt.Fprintf(w, "  %-8s %-12s host %s, owner %s, %s\n", it.Kind, safetext.Line(it.ID), safetext.Line(it.Host), safetext.Line(it.Owner), it.Time)
				if it.Kind == "session" {
					fmt.Fprintf(w, "           replay: ssh -t gw replay %s   (on the gateway host: tandem replay --as REVIEWER %s)\n", safetext.Line(it.ID), safetext.Line(it.ID))
				} else {
					fmt.Fprintf(w, "           what was done under it: tandem audit show --request %s\n", safetext.Line(it.ID))
				}
			}
			fmt.Fprintf(w, "verdicts: ssh gw review record ID --verdict ok|finding --note \"…\"  (a reviewer with audit: true who took no part)\n")
			return nil
		},
	}
	configFlag(sample, &cfgPath)
	sample.Flags().StringVar(&tenant, "tenant", "", "the tenant to draw from")
	sample.Flags().StringVar(&period, "period", "", "days to draw from, FROM..TO or one day, YYYY-MM-DD (UTC; default the last 30 days)")
	sample.Flags().IntVar(&count, "count", 5, "how many items to draw")
	sample.Flags().StringVar(&seed, "seed", "", "the seed (a number); the same seed draws the same items")
	cmd.AddCommand(sample)
	return cmd
}

// parseSeed reads --seed, or picks a random one.
func parseSeed(s string) (uint64, error) {
	if s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("--seed must be a number")
		}
		return n, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]) >> 11, nil // short enough to type again
}
