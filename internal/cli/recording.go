package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// reader is a person reading recordings with the gateway host's key
// custody: the local commands check that person's read grants and queue
// an audit event for the gateway before any byte leaves (M13).
type reader struct {
	cfg    *config.Config
	engine *policy.Engine
	person *config.Person
	vault  *record.Vault
	store  *store.Store
}

func openReader(cfgPath, as string) (*reader, error) {
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
	st, err := store.Open(storePath(cfg))
	if err != nil {
		return nil, err
	}
	return &reader{cfg: cfg, engine: policy.New(cfg), person: p, vault: v, store: st}, nil
}

// outbox is the audit Sink of a process other than the gateway: it queues
// events in the store, and the gateway, the log's only writer, appends
// them. An event is durable once it is queued.
type outbox struct{ st *store.Store }

func (o outbox) Append(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return o.st.QueueAudit(ctx, e.Time, b)
}

// audit queues the event for the gateway; without it, nothing is read.
func (r *reader) audit(ctx context.Context, e audit.Event) error {
	if err := audit.OrRefuse(ctx, outbox{r.store}, e); err != nil {
		return fmt.Errorf("cannot record the read in the audit outbox, so nothing is read: %w", err)
	}
	return nil
}

// recording names a read by this reader, run by the local operator.
func (r *reader) recording() audit.Recording {
	return audit.Recording{Person: r.person.ID, Actor: localActor()}
}

// open opens a session's recording if the person may read it, after the
// read is queued for the audit log.
func (r *reader) open(ctx context.Context, id string, what audit.Type) (*record.Reader, error) {
	rd, host, err := r.library().Open(r.person, id)
	if err != nil {
		return nil, err
	}
	ref := r.recording()
	ref.Session, ref.Tenant, ref.Host, ref.Owner = id, host.Tenant, host.Name, rd.Meta().Owner
	if err := r.audit(ctx, audit.RecordingOpened(what, ref)); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

func (r *reader) library() readable.Library {
	return readable.Library{Vault: r.vault, Dir: recordingsDir(r.cfg), Config: r.cfg, Engine: r.engine}
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
			r, err := openReader(cfgPath, as)
			if err != nil {
				return err
			}
			defer r.store.Close()
			return r.list(cmd, tenant, since)
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
			r, err := openReader(cfgPath, as)
			if err != nil {
				return err
			}
			defer r.store.Close()
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
			r, err := openReader(cfgPath, as)
			if err != nil {
				return err
			}
			defer r.store.Close()
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

func (r *reader) list(cmd *cobra.Command, tenant string, since time.Duration) error {
	metas := r.library().List(r.person, readable.Filter{Tenant: tenant, Since: time.Now().Add(-since)})
	if err := r.audit(cmd.Context(), audit.RecordingReadEvent{Recording: r.recording(),
		Listing: &audit.Listing{Filter: "tenant=" + tenant + " since=" + since.String(), Count: len(metas)}}.Event()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTARTED\tKIND\tTENANT\tOWNER\tLOGIN@HOST\tSEALED")
	for _, m := range metas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s@%s\t%s\n", m.SessionID, m.Started.UTC().Format("2006-01-02 15:04"), m.Kind,
			safetext.Line(m.Tenant), safetext.Line(m.Owner), safetext.Line(m.Login), safetext.Line(m.Host), m.SealedColumn())
	}
	return tw.Flush()
}
