package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
)

// Reading recordings (M13): a person sees and exports only the recordings
// of hosts their roles let them read, one session at a time; every read is
// audited before any byte leaves. `ssh gw recordings|export|replay` and
// `tandem recording list|export|replay` read through the same functions.

// maxListed bounds a listing: it is for finding a session, not a way to
// enumerate everything.
const maxListed = 200

// RecordingFilter selects the recordings of a listing; empty fields select
// all.
type RecordingFilter struct {
	Host, Person, Tenant string
	Since                time.Duration // only sessions of the last Since
}

func (c *call) recordings(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("recordings", flag.ContinueOnError)
	fs.SetOutput(out)
	var f RecordingFilter
	fs.StringVar(&f.Host, "host", "", "only this host")
	fs.StringVar(&f.Person, "person", "", "only sessions owned by this person")
	fs.DurationVar(&f.Since, "since", 7*24*time.Hour, "only sessions of the last DURATION")
	if _, err := commandArgs(fs, args, "", ""); err != nil {
		return err
	}
	return c.listRecordings(f, out)
}

// ListRecordings writes the recordings who may read that f selects, after
// the listing is audited.
func ListRecordings(ctx context.Context, gw Gateway, who Caller, f RecordingFilter, out io.Writer) error {
	return newCall(ctx, gw, who).listRecordings(f, out)
}

func (c *call) listRecordings(f RecordingFilter, out io.Writer) error {
	rows := c.gw.Library().List(c.who.Person, readable.Filter{Host: f.Host, Owner: f.Person, Tenant: f.Tenant, Since: c.gw.Now().Add(-f.Since)})
	listing := &audit.Listing{Filter: fmt.Sprintf("host=%s person=%s tenant=%s since=%s", f.Host, f.Person, f.Tenant, f.Since), Count: len(rows)}
	ev := audit.RecordingReadEvent{Recording: audit.Recording{Person: c.who.ID(), Source: c.who.Source}, Listing: listing}
	if err := audit.OrRefuse(c.ctx, audit.SinkFunc(c.gw.Audit), ev.Event()); err != nil {
		return errors.New("the audit log is unavailable, so no recording can be listed")
	}
	if len(rows) > maxListed {
		rows = rows[:maxListed]
	}
	return list(out, "SESSION\tSTARTED\tKIND\tTENANT\tOWNER\tLOGIN@HOST\tSEALED\tCOMMAND", "no recordings you may read match", rows,
		func(m readable.Entry) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s@%s\t%s\t%s", m.SessionID, m.Started.UTC().Format("2006-01-02 15:04"), m.Kind,
				safetext.Line(m.Tenant), safetext.Line(m.Owner), safetext.Line(m.Login), safetext.Line(m.Host), m.SealedColumn(),
				safetext.Line(clip(m.Command, 40)))
		})
}

// clip shortens s to about n bytes, never inside a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - 1
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// maxReplayPause bounds replay's --idle-cap, the longest pause between
// two events of a replay.
const maxReplayPause = time.Minute

// export writes one recording as asciicast v2 to the client:
// `ssh gw export ID > session.cast`.
func (c *call) export(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: export SESSION-ID  (ssh gw export ID > ID.cast)")
	}
	r, err := c.openRecording(args[0], audit.RecordingExport)
	if err != nil {
		return err
	}
	defer r.Close()
	return record.ExportAsciicast(r, out)
}

// replay plays a recording on the client's terminal in real time (or
// faster), with long pauses cut short.
func (c *call) replay(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(out)
	speed := fs.Float64("speed", 1, "playback speed factor")
	idle := fs.Duration("idle-cap", 2*time.Second, "longest pause shown (at most 1m)")
	id, err := commandArgs(fs, args, "", "session id")
	// The replay sleeps between events without watching the client, and
	// the connection's slot is held until its commands return: a pause
	// of the client's choosing would hold it long after the client left.
	// (!(x > 0) refuses NaN too.)
	if err != nil || !(*speed > 0) || *idle <= 0 || *idle > maxReplayPause {
		return errors.New("usage: replay SESSION-ID [--speed N] [--idle-cap DURATION]  (use ssh -t)")
	}
	r, err := c.openRecording(id, audit.RecordingRead)
	if err != nil {
		return err
	}
	defer r.Close()
	return record.Replay(r, out, record.ReplayOptions{Speed: *speed, IdleCap: *idle})
}

// OpenRecording opens session id's recording if who may read it, and
// audits the read (what: recording.read or recording.export) before any
// byte leaves (fail closed).
func OpenRecording(ctx context.Context, gw Gateway, who Caller, id string, what audit.Type) (*record.Reader, error) {
	return newCall(ctx, gw, who).openRecording(id, what)
}

func (c *call) openRecording(id string, what audit.Type) (*record.Reader, error) {
	r, host, err := c.gw.Library().Open(c.who.Person, id)
	if err != nil {
		return nil, err
	}
	rc := audit.Recording{Person: c.who.ID(), Source: c.who.Source, Session: id, Tenant: host.Tenant, Host: host.Name, Owner: r.Meta().Owner}
	if err := audit.OrRefuse(c.ctx, audit.SinkFunc(c.gw.Audit), audit.RecordingOpened(what, rc)); err != nil {
		r.Close()
		return nil, errors.New("the audit log is unavailable, so no recording can be read")
	}
	return r, nil
}
