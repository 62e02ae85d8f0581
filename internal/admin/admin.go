// Package admin is Tandem's command application: the administration
// commands a person runs on the gateway itself (`ssh gw whoami`, `lock`,
// `request`, `recordings` …) and that the local `tandem` CLI runs where it
// has a twin (`tandem lock`, `tandem recording export` …). Both sides call
// the same functions here, so the rules, the refusals and the messages of
// a command cannot drift apart.
//
// The package sees the caller as a plain value (Caller) and the gateway
// through a small interface (Gateway): the policy in force, the state
// store, the live sessions, the recordings and the audit sink. It knows
// nothing of SSH; the gateway serves `ssh gw <command>` by handing the
// command line to Run, and the CLI implements Gateway over the state store
// alone.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/store"
)

// Caller is who runs a command, and from where.
type Caller struct {
	// Person is the person asking, as configured now. Nil for the
	// operator of the gateway host (`tandem lock` without --as), who holds
	// the state key and so is not bound by a person's rights.
	Person *config.Person
	// Key is the key the person logged in with; nil for a local command,
	// where nobody logged in.
	Key *config.Key
	// Source is the client's address; "" for a local command.
	Source string
	// Operator names the local operator ("local:root") for commands run on
	// the gateway host; "" over SSH.
	Operator string
	// Input is the command's standard input (the SSH channel); nil when
	// there is none. Only a command that asks for it reads it
	// (`disclose request --recipient-key -`), bounded in size and time.
	Input io.Reader
}

// ID is who the caller is in the store and the audit log: the person, or
// else the local operator.
func (c Caller) ID() string {
	if c.Person != nil {
		return c.Person.ID
	}
	return c.Operator
}

// conn is the caller as the audit events of their commands name them.
func (c Caller) conn() audit.Conn { return audit.Conn{Person: c.ID(), Source: c.Source} }

// Gateway is what the commands need of the gateway they run on. The
// gateway implements it over its server and the caller's connection; the
// CLI over the state store, with no live sessions.
type Gateway interface {
	// Policy is the configuration and policy engine in force for the
	// caller now.
	Policy() (*config.Config, *policy.Engine)
	Now() time.Time
	// LockReason says why person is locked, "" when they are not.
	LockReason(person string) string
	// Freezes are the freezes in force now (M27).
	Freezes() []policy.Freeze
	// Audit appends an event to the audit log (or the store's outbox for
	// it); an error means it is not recorded, so the command must not go
	// on (fail closed).
	Audit(ctx context.Context, e audit.Event) error
	// Requests is the store of access requests; nil when there is none.
	Requests() Requests
	// Lock stores a lock and applies it here; Unlock lifts one and reports
	// whether there was one.
	Lock(ctx context.Context, l store.Lock) error
	Unlock(ctx context.Context, person, by string) (bool, error)
	// Sessions are the live shared (interactive) sessions, in a cluster
	// those of every node; Session is one of them by id.
	Sessions() []SessionInfo
	Session(id string) (SessionInfo, bool)
	// EndRequestSessions ends the live sessions running under request id
	// with msg, and says how many it ended. It returns at once.
	EndRequestSessions(id, msg string) int
	// Library is the recordings this gateway keeps.
	Library() readable.Library
	// AuditEvents calls fn for every event of the audit log that f
	// selects, in log order; an error of fn ends the read and is returned.
	AuditEvents(f audit.Filter, fn func(audit.Record) error) error
	// Reload re-reads the configuration file as who's change, records it
	// and applies it, returning the changes.
	Reload(ctx context.Context, who Caller) ([]config.Change, error)
	// Connections are the caller's open connections to the gateway.
	Connections(who Caller) []Connection
	Log() *slog.Logger
}

// Requests is the part of the state store the request commands change;
// *store.Store implements it.
type Requests interface {
	CreateRequest(ctx context.Context, r store.Request) (store.Request, error)
	GetRequest(ctx context.Context, id string) (*store.Request, error)
	ListRequests(ctx context.Context, f store.RequestFilter) ([]store.Request, error)
	Approve(ctx context.Context, id string, a store.Approval, need int) (store.Request, error)
	Deny(ctx context.Context, id, by, reason string, at time.Time) (store.Request, error)
	Revoke(ctx context.Context, id, by, reason string, at time.Time) (store.Request, error)
}

// SessionInfo is one live shared session, as `sessions` and `join` see it.
type SessionInfo struct {
	session.Info
	// HostConfig is the session's host as configured when it started
	// (for a session on another node of a cluster: as configured here).
	HostConfig *config.Host
	// Node is the cluster node that holds the session; "" outside a
	// cluster.
	Node string
}

// Connection is one of the caller's open connections to the gateway.
type Connection struct {
	Source   string
	Since    time.Time
	Channels int32
	This     bool // the connection the command runs on
}

// errNoStore is the refusal of every command that needs the state store
// when the gateway runs without one.
var errNoStore = errors.New("this gateway has no state store")

// errUsage marks a command line the gateway does not understand.
var errUsage = errors.New("usage")

// command is one administration command.
type command struct {
	name    string
	summary string
	run     func(c *call, args []string, out io.Writer) error
}

// call is one command running: what every command needs at hand.
type call struct {
	ctx context.Context
	gw  Gateway
	who Caller
	cfg *config.Config
	eng *policy.Engine
}

func newCall(ctx context.Context, gw Gateway, who Caller) *call {
	cfg, eng := gw.Policy()
	return &call{ctx: ctx, gw: gw, who: who, cfg: cfg, eng: eng}
}

// lock is why the caller is locked, "" when they are not.
func (c *call) lock() string { return c.gw.LockReason(c.who.ID()) }

func commands() []command {
	return []command{
		{"whoami", "who you are to the gateway, your key, your open connections, and the hosts and logins you may use", (*call).whoami},
		{"sessions", "the live and waiting sessions you own or may join (in a cluster: of every node)", (*call).sessions},
		{"join", "join SESSION-ID [--observer]: join a session as second person (use ssh -t)", nil},
		{"request", "request --hosts SELECTOR --login LOGIN --for DURATION [--tty] --reason TEXT: ask for non-interactive access to four-eyes hosts", (*call).request},
		{"requests", "open access requests you own or may decide", (*call).requests},
		{"approve", "approve ID [--terminals] [--comment TEXT]", (*call).approve},
		{"deny", "deny ID --reason TEXT", (*call).deny},
		{"revoke", "revoke ID --reason TEXT: end an approval early (live sessions under it end)", (*call).revoke},
		{"recordings", "recordings [--host H] [--person P] [--since 24h]: recordings you may read", (*call).recordings},
		{"replay", "replay SESSION-ID [--speed N] [--idle-cap D]: play a recording (use ssh -t)", (*call).replay},
		{"export", "export SESSION-ID: write a recording as asciicast v2 to stdout", (*call).export},
		{"audit", "audit show [--since 24h] [--type T,…] [--person P] [--session S] [--limit N] [--json]: audit events of the tenants you may read (audit: true), e.g. ssh gw audit show --since 2h --type session.start", (*call).auditCmd},
		{"review", "review record ID --verdict ok|finding [--note TEXT]: your verdict on a session or request a spot check drew (audit: true)", (*call).reviewCmd},
		{"disclose", "disclose request|approve|show …: lawful disclosure cases (permission disclose or dpo), e.g. ssh gw disclose request --tenant T --scope session:ID --legal-basis TEXT --recipient-key - --reason TEXT < key.asc", (*call).discloseCmd},
		{"keys", "your registered keys, their fingerprints and expiry", (*call).keys},
		{"reload", "reload: re-read the configuration file as your change (permission configure); prints what changed", (*call).reloadCmd},
		{"lock", "lock PERSON --reason TEXT [--for DURATION]: refuse their logins and end their sessions now", (*call).lockCmd},
		{"unlock", "unlock PERSON: lift a lock", (*call).unlockCmd},
		{"help", "this list", nil},
	}
}

// Run parses and runs one command line of who on gw and returns its exit
// status: 0 done, 1 refused or failed, 2 not understood. The line is
// audited before anything else; without the audit log nothing runs. `join` is
// not run here: the gateway attaches the terminal (see JoinArgs, Join).
func Run(ctx context.Context, gw Gateway, who Caller, line string, out, errOut io.Writer) int {
	if who.Person == nil {
		// Every command here acts as a person; the operator's commands
		// are the CLI's (Lock, Unlock).
		fmt.Fprintln(errOut, "tandem: commands on the gateway need a person")
		return 1
	}
	if strings.TrimSpace(line) == "" {
		usage(out) // `ssh gw` alone: nothing asked, nothing to record
		return 0
	}
	// Every line a person sends is recorded as sent before anything else,
	// a line the gateway refuses unparsed (unknown, malformed, too long)
	// too: a probe of the command application is an admin action (M9).
	if !AuditCommand(ctx, gw, who, line, errOut) {
		return 1
	}
	c := newCall(ctx, gw, who)
	// The person is decided again for each command, the lock as of now:
	// the connection's check is from when the channel opened, and a locked
	// person's connection closes only evictFlush after the lock landed.
	d := c.eng.CheckPerson(who.Person, who.Key, gw.Now(), c.lock())
	if d.Verdict != policy.Allow {
		fmt.Fprintf(errOut, "tandem: %s\n", safetext.Lines(d.Message()))
		return 1
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(errOut, "tandem: %s\n", safetext.Line(w))
	}
	args, err := splitArgs(line)
	if err != nil {
		fmt.Fprintf(errOut, "tandem: %v\n", err)
		return 2
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" {
		usage(out)
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name != args[0] || cmd.run == nil {
			continue
		}
		if err := cmd.run(c, args[1:], out); err != nil {
			fmt.Fprintf(errOut, "tandem: %s: %s\n", cmd.name, safetext.Lines(err.Error()))
			return 1
		}
		return 0
	}
	fmt.Fprintf(errOut, "tandem: unknown command %q\n\n", args[0])
	usage(errOut)
	return 2
}

// AuditCommand records a command line before it runs (fail closed): false
// means the audit log refused it, the caller was told, and the command
// must not run.
func AuditCommand(ctx context.Context, gw Gateway, who Caller, line string, errOut io.Writer) bool {
	if err := audit.OrRefuse(ctx, audit.SinkFunc(gw.Audit), audit.CommandEvent{Conn: who.conn(), Command: line}.Event()); err != nil {
		fmt.Fprintln(errOut, "tandem: the audit log is unavailable, so no command can run")
		return false
	}
	return true
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Commands on the Tandem gateway (ssh gw <command>):")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nTo reach a host:  ssh -J <you>@gw <login>@<host>   or   ssh <login>%<host>@gw")
}

// noArgs refuses arguments to a command that takes none.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	return nil
}

// tsv starts a table: columns separated by tabs, aligned with two blanks.
func tsv(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 2, 8, 2, ' ', 0) }

// list writes a table of rows under header, or empty when there are none.
func list[T any](out io.Writer, header, empty string, rows []T, row func(T) string) error {
	if len(rows) == 0 {
		fmt.Fprintln(out, empty)
		return nil
	}
	tw := tsv(out)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, row(r))
	}
	return tw.Flush()
}
