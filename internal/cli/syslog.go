package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"tandem.dev/tandem/internal/monitoring"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/syslog"
)

func syslogDir(cfg *config.Config) string { return filepath.Join(cfg.Gateway.DataDir, "syslog") }

// startShipper starts sending the audit log to syslog.collectors in its
// own goroutine, which serve owns: stop ends it and waits for it. Without
// collectors the shipper is nil (it refuses nothing).
func startShipper(cfg *config.Config, alog *audit.Log, log *slog.Logger) (*syslog.Shipper, func(), error) {
	if len(cfg.Syslog.Collectors) == 0 {
		return nil, func() {}, nil
	}
	s, err := syslog.New(syslog.Options{Config: cfg.Syslog, AuditDir: auditDir(cfg), StateDir: syslogDir(cfg),
		Durable: alog.Size, Now: clock.Now, Log: log})
	if err != nil {
		return nil, nil, fmt.Errorf("refusing to start: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Run(ctx)
	}()
	return s, func() { cancel(); wg.Wait() }, nil
}

func newStatusCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show how far each central log server (syslog collector) has the audit log",
		Long: `Show, per configured syslog collector, how many audit records it has and how
many it still lacks, and how old the oldest of those is. The audit log is the
spool: nothing is dropped while a collector is away, but past syslog.max_behind
or syslog.max_age the gateway refuses new sessions. Read from the data
directory, beside a running serve.`,
		Example: `  tandem status -c /etc/tandem/tandem.yaml
  tandem status -c /etc/tandem/tandem.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			var sts []syslog.Status
			for _, c := range cfg.Syslog.Collectors {
				st, err := syslog.Offline(auditDir(cfg), syslogDir(cfg), c)
				if err != nil {
					return fmt.Errorf("collector %s: %w", c.Name, err)
				}
				sts = append(sts, st)
			}
			return printSyslogStatus(cmd.OutOrStdout(), cfg, sts, asJSON)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// collectorJSON is one collector in `tandem status --json`.
type collectorJSON struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	Segment    int    `json:"segment"`
	Delivered  uint64 `json:"delivered"`
	Missing    uint64 `json:"missing"`
	OldestAgeS int64  `json:"oldest_missing_age_seconds"`
	MaxBehind  int    `json:"max_behind"`
	MaxAgeS    int64  `json:"max_age_seconds"`
}

func printSyslogStatus(w io.Writer, cfg *config.Config, sts []syslog.Status, asJSON bool) error {
	now := clock.Now()
	if asJSON {
		out := []collectorJSON{}
		for _, s := range sts {
			out = append(out, collectorJSON{Name: s.Name, Addr: s.Addr, Segment: s.Segment, Delivered: s.Delivered, Missing: s.Depth,
				OldestAgeS: int64(s.Age(now) / time.Second), MaxBehind: cfg.Syslog.MaxBehind, MaxAgeS: int64(cfg.Syslog.MaxAge.Duration / time.Second)})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"collectors": out})
	}
	if len(sts) == 0 {
		_, err := fmt.Fprintln(w, "no syslog collectors configured (syslog.collectors)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTOR\tADDRESS\tSEGMENT\tDELIVERED\tMISSING\tOLDEST MISSING")
	for _, s := range sts {
		age := "-"
		if s.Depth > 0 {
			age = s.Age(now).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Addr, s.Segment, s.Delivered, s.Depth, age)
	}
	fmt.Fprintf(tw, "limits: %d records or %s behind, then new sessions are refused (warning at %d %%)\n",
		cfg.Syslog.MaxBehind, cfg.Syslog.MaxAge, cfg.Syslog.WarnPercent)
	return tw.Flush()
}

// spoolStatus is the shipper's state in monitoring's terms.
func spoolStatus(s *syslog.Shipper) func() []monitoring.SpoolStatus {
	return func() []monitoring.SpoolStatus {
		var out []monitoring.SpoolStatus
		for _, c := range s.Status() {
			out = append(out, monitoring.SpoolStatus{Collector: c.Name, Connected: c.Connected,
				Depth: c.Depth, Oldest: c.Oldest, Refusing: c.Level == "refuse"})
		}
		return out
	}
}
