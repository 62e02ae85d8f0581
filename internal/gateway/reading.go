package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/safetext"
)

// Reading recordings over SSH (M13): a person sees and exports only the
// recordings of hosts their roles let them read, one session at a time;
// every read is audited before any byte leaves.

// maxListed bounds `recordings`: a listing is for finding a session, not a
// way to enumerate everything.
const maxListed = 200

func (c *clientConn) cmdRecordings(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("recordings", flag.ContinueOnError)
	fs.SetOutput(out)
	host := fs.String("host", "", "only this host")
	person := fs.String("person", "", "only sessions owned by this person")
	since := fs.Duration("since", 7*24*time.Hour, "only sessions of the last DURATION")
	if _, err := commandArgs(fs, args, "", ""); err != nil {
		return err
	}
	rows := c.library().List(c.person, readable.Filter{Host: *host, Owner: *person, Since: c.srv.now().Add(-*since)})
	if err := c.srv.audit.Append(context.Background(), audit.Event{Type: audit.RecordingRead, Person: c.person.ID,
		Source: c.source, Attrs: map[string]string{"listing": fmt.Sprintf("host=%s person=%s since=%s", *host, *person, *since), "count": fmt.Sprint(len(rows))}}); err != nil {
		return errors.New("the audit log is unavailable, so no recording can be listed")
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no recordings you may read match")
		return nil
	}
	if len(rows) > maxListed {
		rows = rows[:maxListed]
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTARTED\tKIND\tOWNER\tLOGIN@HOST\tSEALED\tCOMMAND")
	for _, m := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s@%s\t%s\t%s\n", m.SessionID, m.Started.UTC().Format("2006-01-02 15:04"),
			m.Kind, safetext.Line(m.Owner), safetext.Line(m.Login), safetext.Line(m.Host), m.SealedColumn(), safetext.Line(clip(m.Command, 40)))
	}
	return tw.Flush()
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

// cmdExport writes one recording as asciicast v2 to the client:
// `ssh gw export ID > session.cast`.
func (c *clientConn) cmdExport(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: export SESSION-ID  (ssh gw export ID > ID.cast)")
	}
	r, err := c.openReadable(context.Background(), args[0], audit.RecordingExport)
	if err != nil {
		return err
	}
	defer r.Close()
	return record.ExportAsciicast(r, out)
}

// cmdReplay plays a recording on the client's terminal in real time (or
// faster), with long pauses cut short.
func (c *clientConn) cmdReplay(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(out)
	speed := fs.Float64("speed", 1, "playback speed factor")
	idle := fs.Duration("idle-cap", 2*time.Second, "longest pause shown")
	id, err := commandArgs(fs, args, "", "session id")
	if err != nil || *speed <= 0 {
		return errors.New("usage: replay SESSION-ID [--speed N] [--idle-cap DURATION]  (use ssh -t)")
	}
	r, err := c.openReadable(context.Background(), id, audit.RecordingRead)
	if err != nil {
		return err
	}
	defer r.Close()
	return record.Replay(r, out, record.ReplayOptions{Speed: *speed, IdleCap: *idle})
}
