package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// command is one administration command served on the gateway itself
// (`ssh gw <command>`).
type command struct {
	name    string
	summary string
	run     func(c *clientConn, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"whoami", "who you are to the gateway, your key, your open connections, and the hosts and logins you may use", (*clientConn).cmdWhoami},
		{"sessions", "the live and waiting sessions you own or may join", (*clientConn).cmdSessions},
		{"join", "join SESSION-ID [--observer]: join a session as second person (use ssh -t)", nil},
		{"request", "request --hosts SELECTOR --login LOGIN --for DURATION [--tty] --reason TEXT: ask for non-interactive access to four-eyes hosts", (*clientConn).cmdRequest},
		{"requests", "open access requests you own or may decide", (*clientConn).cmdRequests},
		{"approve", "approve ID [--terminals] [--comment TEXT]", (*clientConn).cmdApprove},
		{"deny", "deny ID --reason TEXT", (*clientConn).cmdDeny},
		{"revoke", "revoke ID --reason TEXT: end an approval early (live sessions under it end)", (*clientConn).cmdRevoke},
		{"recordings", "recordings [--host H] [--person P] [--since 24h]: recordings you may read", (*clientConn).cmdRecordings},
		{"replay", "replay SESSION-ID [--speed N] [--idle-cap D]: play a recording (use ssh -t)", (*clientConn).cmdReplay},
		{"export", "export SESSION-ID: write a recording as asciicast v2 to stdout", (*clientConn).cmdExport},
		{"keys", "your registered keys, their fingerprints and expiry", (*clientConn).cmdKeys},
		{"lock", "lock PERSON --reason TEXT [--for DURATION]: refuse their logins and end their sessions now", (*clientConn).cmdLock},
		{"unlock", "unlock PERSON: lift a lock", (*clientConn).cmdUnlock},
		{"help", "this list", nil},
	}
}

// errUsage marks a command line the gateway does not understand.
var errUsage = errors.New("usage")

// commandSession serves a session channel on the gateway itself.
func (c *clientConn) commandSession(ctx context.Context, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ss, ok := c.collectStart(ch, reqs)
	if !ok {
		return
	}
	_ = ss.start.Reply(ss.start.Type != "subsystem", nil)
	var status uint32
	if args, err := splitArgs(ss.command); err == nil && len(args) > 0 && args[0] == "join" {
		if !c.auditCommand(ctx, ss, ch.Stderr()) {
			status = 1
		} else {
			status = c.joinSession(ctx, ch, reqs, ss, args[1:])
		}
	} else {
		go ssh.DiscardRequests(reqs)
		status = c.runCommand(ctx, ss, ch)
	}
	endChannel(ch, status)
}

// runCommand parses and runs one command line, returning its exit status.
func (c *clientConn) runCommand(ctx context.Context, ss *sessionStart, ch ssh.Channel) uint32 {
	var out, errOut io.Writer = ch, ch.Stderr()
	if ss.pty != nil {
		out, errOut = crlf{ch}, crlf{ch.Stderr()}
	}
	if c.key != nil {
		for _, w := range c.st.engine.CheckPerson(c.person, c.key, c.srv.now(), "").Warnings {
			fmt.Fprintf(errOut, "tandem: %s\n", safetext.Line(w))
		}
	}
	args, err := splitArgs(ss.command)
	if err != nil {
		fmt.Fprintf(errOut, "tandem: %v\n", err)
		return 2
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" {
		c.usage(out)
		if ss.start.Type == "shell" && ss.pty != nil {
			fmt.Fprintln(out, "\nThis gateway has no shell: name a command, or reach a host with `ssh -J gw login@host`.")
		}
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name != args[0] || cmd.run == nil {
			continue
		}
		if !c.auditCommand(ctx, ss, errOut) {
			return 1
		}
		if err := cmd.run(c, args[1:], out); err != nil {
			fmt.Fprintf(errOut, "tandem: %s: %s\n", cmd.name, safetext.Lines(err.Error()))
			return 1
		}
		return 0
	}
	fmt.Fprintf(errOut, "tandem: unknown command %q\n\n", args[0])
	c.usage(errOut)
	return 2
}

// auditCommand records a gateway command before it runs (fail closed).
func (c *clientConn) auditCommand(ctx context.Context, ss *sessionStart, errOut io.Writer) bool {
	err := c.srv.audit.Append(ctx, audit.Event{Type: audit.Command, Person: c.person.ID, Source: c.source,
		Attrs: map[string]string{"command": ss.command}})
	if err != nil {
		fmt.Fprintln(errOut, "tandem: the audit log is unavailable, so no command can run")
		return false
	}
	return true
}

func (c *clientConn) usage(w io.Writer) {
	fmt.Fprintln(w, "Commands on the Tandem gateway (ssh gw <command>):")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nTo reach a host:  ssh -J <you>@gw <login>@<host>   or   ssh <login>%<host>@gw")
}

func (c *clientConn) cmdWhoami(args []string, out io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	p := c.person
	fmt.Fprintf(out, "%s (%s <%s>)\n", safetext.Line(p.ID), safetext.Line(p.Name), safetext.Line(p.Email))
	fmt.Fprintf(out, "roles: %s\n", safetext.Line(strings.Join(p.Roles, ", ")))
	if c.key != nil {
		exp := c.st.engine.KeyExpiry(c.key)
		fmt.Fprintf(out, "key:   %s (%s), registered %s, expires %s\n", c.key.Fingerprint,
			c.key.PublicKey.Type(), c.key.Added.Format(time.DateOnly), exp.Format(time.DateOnly))
	}
	c.writeConnections(out)
	grants := c.st.engine.Grants(p)
	if len(grants) == 0 {
		fmt.Fprintln(out, "hosts: none")
		return nil
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].Host < grants[j].Host })
	fmt.Fprintln(out, "hosts:")
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	for _, g := range grants {
		four := ""
		if g.FourEyes {
			four = "four-eyes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", safetext.Line(g.Host), safetext.Line(g.Tenant), safetext.Line(g.Environment),
			safetext.Line(strings.Join(g.Logins, ",")), four)
	}
	return tw.Flush()
}

func (c *clientConn) cmdKeys(args []string, out io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	now := c.srv.now()
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tTYPE\tADDED\tEXPIRES\tSTATUS")
	for i := range c.person.Keys {
		k := &c.person.Keys[i]
		exp := c.st.engine.KeyExpiry(k)
		status := "valid"
		switch d := c.st.engine.CheckPerson(c.person, k, now, ""); {
		case !exp.After(now):
			status = "expired"
		case d.Verdict == policy.Allow && len(d.Warnings) > 0:
			status = "expires soon: register a new key"
		}
		if k == c.key {
			status += " (this login)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Fingerprint, k.PublicKey.Type(),
			k.Added.Format(time.DateOnly), exp.Format(time.DateOnly), status)
	}
	return tw.Flush()
}

// mayLock is the policy's verdict on this person locking or unlocking
// others: a role with the permission lock, never an external (M7).
func (c *clientConn) mayLock() error {
	d := c.st.engine.MayLock(c.person, c.key, c.srv.now(), c.srv.lockReason(c.person.ID))
	if d.Verdict != policy.Allow {
		return errors.New(joinReason(d))
	}
	return nil
}

func (c *clientConn) cmdLock(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	fs.SetOutput(out)
	reason := fs.String("reason", "", "why (shown to the person and recorded)")
	dur := fs.Duration("for", 0, "lift the lock automatically after this long (default: until unlocked)")
	person, err := commandArgs(fs, args, "reason", "person")
	if err != nil {
		return err
	}
	if err := c.mayLock(); err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return fmt.Errorf("--reason is required")
	}
	if c.st.cfg.Person(person) == nil {
		return fmt.Errorf("unknown person %q", person)
	}
	var until time.Time
	if *dur > 0 {
		until = c.srv.now().Add(*dur)
	}
	if err := c.srv.lockPerson(context.Background(), person, c.person.ID, *reason, until); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is locked: new logins are refused and their sessions have ended\n", safetext.Line(person))
	return nil
}

func (c *clientConn) cmdUnlock(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	fs.SetOutput(out)
	person, err := commandArgs(fs, args, "", "person")
	if err != nil {
		return err
	}
	if err := c.mayLock(); err != nil {
		return err
	}
	if c.srv.store == nil {
		return fmt.Errorf("this gateway has no state store")
	}
	removed, err := c.srv.store.Unlock(context.Background(), person, c.person.ID)
	if err != nil {
		return err
	}
	if !removed {
		return fmt.Errorf("%s was not locked", person)
	}
	if err := c.srv.refreshLocks(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is unlocked\n", safetext.Line(person))
	return nil
}

// crlf turns \n into \r\n for clients with a terminal.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
