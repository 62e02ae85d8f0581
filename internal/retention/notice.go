package retention

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// Notifier delivers a notice to the data protection officer.
type Notifier interface {
	Deliver(ctx context.Context, subject, text string) error
	Via() string // smtp or command, for the audit event
}

// NewNotifier builds the notifier retention.dpo configures, or nil when
// none is configured.
func NewNotifier(d config.DPO) Notifier {
	switch {
	case d.SMTP != nil:
		return &SMTPNotifier{Server: *d.SMTP, From: d.From, To: d.To, Timeout: d.Timeout.Duration}
	case d.Command != nil:
		return &CommandNotifier{Argv: d.Command, From: d.From, To: d.To, Timeout: d.Timeout.Duration}
	}
	return nil
}

// message is the RFC 5322 message of a notice. Subject and addresses come
// from the configuration and the gateway, never from a person, so no
// header can be injected; the text's person-supplied parts were made one
// line each when the notice was written (NoticeText).
func message(from, to, subject, text string) []byte {
	var b bytes.Buffer
	if from != "" {
		fmt.Fprintf(&b, "From: %s\r\n", from)
	}
	fmt.Fprintf(&b, "To: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		to, subject, time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n"))
	return b.Bytes()
}

// SMTPNotifier sends notices by e-mail. STARTTLS is required and the
// server's certificate checked (against CAFile, or the system's roots);
// the whole exchange has one deadline.
type SMTPNotifier struct {
	Server   config.SMTP
	From, To string
	Timeout  time.Duration
}

func (n *SMTPNotifier) Via() string { return "smtp" }

// Deliver sends one notice.
func (n *SMTPNotifier) Deliver(ctx context.Context, subject, text string) error {
	host, _, err := net.SplitHostPort(n.Server.Addr)
	if err != nil {
		return err
	}
	tc, err := n.tlsConfig(host)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", n.Server.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // a cancelled run does not wait for the deadline
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return errors.New("the mail server does not offer STARTTLS; refusing to send the notice in clear")
	}
	if err := c.StartTLS(tc); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if err := n.auth(c, host); err != nil {
		return err
	}
	return send(c, n.From, n.To, message(n.From, n.To, subject, text))
}

func (n *SMTPNotifier) tlsConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if n.Server.CAFile != "" {
		pem, err := os.ReadFile(n.Server.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smtp ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smtp ca_file %s holds no PEM certificate", n.Server.CAFile)
		}
	}
	return tc, nil
}

// auth logs in when a user is configured. The password is read from its
// file for each attempt, never kept, never logged.
func (n *SMTPNotifier) auth(c *smtp.Client, host string) error {
	if n.Server.Username == "" {
		return nil
	}
	pw, err := os.ReadFile(n.Server.PasswordFile)
	if err != nil {
		return fmt.Errorf("smtp password_file: %w", err)
	}
	if err := c.Auth(smtp.PlainAuth("", n.Server.Username, strings.TrimRight(string(pw), "\r\n"), host)); err != nil {
		return fmt.Errorf("smtp login as %s failed: %w", n.Server.Username, err)
	}
	return nil
}

func send(c *smtp.Client, from, to string, msg []byte) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// CommandNotifier runs a program (no shell) with the notice, as an RFC
// 5322 message, on its stdin, e.g. [/usr/sbin/sendmail, -t].
type CommandNotifier struct {
	Argv     []string
	From, To string
	Timeout  time.Duration
}

func (n *CommandNotifier) Via() string { return "command" }

// Deliver runs the command once; a non-zero exit or the timeout fails.
func (n *CommandNotifier) Deliver(ctx context.Context, subject, text string) error {
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.Argv[0], n.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(message(n.From, n.To, subject, text))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child that keeps the pipes open does not hold the run
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return fmt.Errorf("%s: %w: %s", n.Argv[0], err, msg)
	}
	return nil
}

// NoticeText is the body of the notice about extension x. What persons
// typed (the request reference) is made one safe line.
func NoticeText(x store.Extension) string {
	return fmt.Sprintf(`An extension of the retention period was recorded on the Tandem gateway.

Tenant:       %s
Data:         %s (source addresses, client versions, connection metadata)
Kept until:   %s (end of day, UTC), at most 14 days beyond each day's own
Request:      %s
Extended by:  %s
At:           %s
Extension id: %s

The extension is in the audit log (retention.extended). Keys of these days
are destroyed on the first run after the extension ends.
`, x.Tenant, x.Class, x.Until.Format("2006-01-02"), safetext.Line(x.RequestRef), safetext.Line(x.By),
		x.Created.UTC().Format(time.RFC3339), x.ID)
}

// backoff is the wait before retrying a notice after attempts failed:
// one minute, doubling, at most six hours.
func backoff(attempts int) time.Duration {
	d := time.Minute
	for i := 1; i < attempts && d < 6*time.Hour; i++ {
		d *= 2
	}
	return min(d, 6*time.Hour)
}

// deliver tries every notice that is due, records each attempt and
// audits it (best effort: the notice went out, or failed, either way).
func (j *Job) deliver(ctx context.Context, rep *Report) error {
	if j.Notifier == nil {
		return nil
	}
	ns, err := j.State.Notices(ctx)
	if err != nil {
		return err
	}
	now := j.Now()
	for _, n := range ns {
		if !n.Delivered.IsZero() || n.Next.After(now) {
			continue
		}
		if err := j.attempt(ctx, n, rep); err != nil {
			return err
		}
	}
	return nil
}

func (j *Job) attempt(ctx context.Context, n store.Notice, rep *Report) error {
	subject := fmt.Sprintf("Tandem: operational data of tenant %s kept longer (extension %s)", n.Tenant, n.Extension)
	derr := j.Notifier.Deliver(ctx, subject, n.Text)
	now := j.Now()
	ev := audit.RetentionNoticeEvent{Tenant: n.Tenant, Extension: n.Extension, Via: j.Notifier.Via(), Attempt: n.Attempts + 1, Outcome: "delivered"}
	failure := ""
	if derr != nil {
		failure = derr.Error()
		ev.Outcome, ev.Error = "failed", failure
		rep.Failed++
		j.Log.Warn("retention: DPO notice not delivered; retried later", "extension", n.Extension, "attempt", n.Attempts+1, "err", derr)
	} else {
		rep.Notices++
	}
	e := ev.Event()
	e.Time = now.UTC()
	audit.BestEffort(ctx, j.Audit, j.Log, e)
	return j.State.NoticeAttempt(ctx, n.ID, now, failure, now.Add(backoff(n.Attempts+1)))
}

// DeliverNotices tries the notices that are due, without destroying
// anything: `tandem serve` calls it between its daily runs.
func (j *Job) DeliverNotices(ctx context.Context) (Report, error) {
	var rep Report
	err := j.deliver(ctx, &rep)
	return rep, err
}
