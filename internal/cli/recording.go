package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
)

// reader is a person reading recordings with the gateway host's key
// custody: the local commands check that person's read grants and queue
// an audit event for the gateway before any byte leaves (M13), through the
// same admin functions as `ssh gw recordings|export|replay`.
type reader struct {
	gw  *localGateway
	who admin.Caller
}

func openReader(ctx context.Context, cfgPath, as string) (*reader, error) {
	if as == "" {
		return nil, fmt.Errorf("--as PERSON is required: reading is bound to a person's read grants")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	p := cfg.Person(as)
	if p == nil {
		return nil, fmt.Errorf("unknown person %q", as)
	}
	v, err := openVault(cfg, false)
	if err != nil {
		return nil, err
	}
	st, err := openStateStore(cfg)
	if err != nil {
		return nil, err
	}
	gw := newLocalGateway(ctx, cfg, st, v)
	return &reader{gw: gw, who: gw.personCaller(p)}, nil
}

func (r *reader) Close() error { return r.gw.st.Close() }

// open opens a session's recording if the person may read it, after the
// read is queued for the audit log.
func (r *reader) open(ctx context.Context, id string, what audit.Type) (*record.Reader, error) {
	return admin.OpenRecording(ctx, r.gw, r.who, id, what)
}

func newRecordingCmds() []*cobra.Command {
	var cfgPath, as, out, tenant string
	var since time.Duration
	rec := &cobra.Command{Use: "recording", Short: "list and export session recordings (bound to a person's read grants)"}
	list := &cobra.Command{
		Use:   "list --as PERSON [--tenant T] [--since DURATION]",
		Short: "list the recordings PERSON may read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := openReader(cmd.Context(), cfgPath, as)
			if err != nil {
				return err
			}
			defer r.Close()
			return admin.ListRecordings(cmd.Context(), r.gw, r.who, admin.RecordingFilter{Tenant: tenant, Since: since}, cmd.OutOrStdout())
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
	list.Flags().DurationVar(&since, "since", 7*24*time.Hour, "only recordings of the last DURATION")
	export := &cobra.Command{
		Use:   "export SESSION-ID --as PERSON --out FILE.cast",
		Short: "write one recording as a plain asciicast v2 file (for asciinema play / cat)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out FILE is required")
			}
			r, err := openReader(cmd.Context(), cfgPath, as)
			if err != nil {
				return err
			}
			defer r.Close()
			rd, err := r.open(cmd.Context(), args[0], audit.RecordingExport)
			if err != nil {
				return err
			}
			defer rd.Close()
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if err := record.ExportAsciicast(rd, f); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
	export.Flags().StringVar(&out, "out", "", "file to write (created, never overwritten; mode 0600)")
	for _, c := range []*cobra.Command{list, export} {
		configFlag(c, &cfgPath)
		asFlag(c, &as)
	}
	rec.AddCommand(list, export, newReplayCmd())
	// replay is also a top-level command: `tandem replay ID`.
	return []*cobra.Command{rec, newReplayCmd()}
}

func asFlag(c *cobra.Command, as *string) {
	c.Flags().StringVar(as, "as", "", "the person reading (required; needs a role rule with read: true for the host)")
}

func newReplayCmd() *cobra.Command {
	var cfgPath, as, skipTo string
	var idle time.Duration
	var speed float64
	c := &cobra.Command{
		Use:   "replay SESSION-ID --as PERSON [--speed N] [--idle-cap D] [--skip-to MARKER]",
		Short: "play a recording in this terminal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openReader(cmd.Context(), cfgPath, as)
			if err != nil {
				return err
			}
			defer r.Close()
			rd, err := r.open(cmd.Context(), args[0], audit.RecordingRead)
			if err != nil {
				return err
			}
			defer rd.Close()
			return record.Replay(rd, cmd.OutOrStdout(), record.ReplayOptions{Speed: speed, IdleCap: idle, SkipTo: skipTo})
		},
	}
	c.Flags().Float64Var(&speed, "speed", 1, "playback speed factor")
	c.Flags().DurationVar(&idle, "idle-cap", 2*time.Second, "longest pause shown")
	c.Flags().StringVar(&skipTo, "skip-to", "", "play fast up to the first marker containing this text (e.g. \"joined\")")
	configFlag(c, &cfgPath)
	asFlag(c, &as)
	return c
}
