// Package policy decides who may do what through the gateway.
//
// It is pure: every input, including the current time and live state such as
// a lock, arrives as an argument, and every answer is a Decision that explains
// itself to the person on their terminal. Nothing here performs I/O, starts
// goroutines or reads a clock, so each rule can be tested with a table.
//
// Decisions fail closed: anything the engine cannot positively justify from
// the configuration (an unknown role, an unreadable key, a malformed glob, an
// unknown action) is a Deny.
package policy

import (
	"fmt"
	"time"

	"tandem.dev/tandem/internal/config"
)

// Action is the kind of work a request asks for.
type Action string

// Actions the gateway distinguishes: what the client asked for. Whether it
// asked for a terminal as well is Request.PTY; the two together decide
// whether the work is interactive, which four-eyes hosts and external
// persons treat differently (M6, M7, M8).
const (
	ActionShell   Action = "shell"   // a shell, with or without a PTY
	ActionExec    Action = "exec"    // a named command (scripts, Ansible, scp -O, rsync); PTY tells whether with a terminal
	ActionSFTP    Action = "sftp"    // the sftp subsystem
	ActionForward Action = "forward" // direct-tcpip port forwarding to ForwardTo, leaving from Host
)

// Verdict is the outcome of a decision.
type Verdict int

// Verdicts. Deny is the zero value so that a forgotten assignment fails closed.
const (
	Deny Verdict = iota
	Allow
	NeedsSecondPerson // four-eyes host, interactive: allowed only with a second person joined (M6)
	NeedsApproval     // four-eyes host, non-interactive: allowed only under an approved access request (M8)
)

// String returns the verdict as a stable lower-case word for logs and audit
// events.
func (v Verdict) String() string {
	switch v {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	case NeedsSecondPerson:
		return "needs-second-person"
	case NeedsApproval:
		return "needs-approval"
	default:
		return fmt.Sprintf("verdict(%d)", int(v))
	}
}

// Decision is a verdict with the words the person sees.
type Decision struct {
	Verdict  Verdict
	Reason   string   // one line for the person's terminal: what was refused and why; empty on Allow
	Hint     string   // one line: what to do about it; may be empty
	Warnings []string // shown even on Allow, e.g. "your key SHA256:… expires on 2026-12-01; register a new key …"

	// Request is the id of the access request that covers the work when
	// the verdict is Allow because of it; the gateway records it with the
	// session. Empty otherwise.
	Request string
	// Terminal is set on Allow under a request that grants terminals
	// (RequestWindow.TTY): the gateway records the work exactly like a
	// PTY session, keystrokes and screen.
	Terminal bool
}

// Message renders the decision for a person: the reason, and the hint on
// a second line indented by two spaces, so the hint reads as advice under
// the refusal rather than as a second refusal.
func (d Decision) Message() string {
	if d.Hint == "" {
		return d.Reason
	}
	return d.Reason + "\n  " + d.Hint
}

// Request is one action a person wants to take.
type Request struct {
	Person    *config.Person
	Key       *config.Key // the key the person authenticated with (may be nil when only checking grants)
	Host      *config.Host
	Login     string
	Action    Action
	PTY       bool   // the client asked for a terminal (pty-req) before its shell or exec
	ForwardTo string // "host:port", for ActionForward; resolved on Host, where the forward leaves
	Now       time.Time
	Lock      string // non-empty: the person is locked, with this reason (live state from the store)
	// Requests are the person's current access requests as read from the
	// store. Whether one covers the work is decided here, with covers, so
	// that the gateway cannot forget a condition.
	Requests []RequestWindow
	// Freezes are the freezes in force (live state from the store, M27):
	// a frozen host takes only an incident session with a second person.
	Freezes []Freeze
}

// Grant is what `ssh gw whoami` shows for one host.
type Grant struct {
	Host        string
	Tenant      string
	Environment string
	Logins      []string
	FourEyes    bool
}

// minRSABits is the smallest RSA key the engine accepts (docs/STANDARDS.md).
const minRSABits = 3072

// Defaults that apply when the configuration leaves a policy value unset.
// The config package fills them when it loads a file; the engine falls back
// to the same named values (config.Default*) so that a Config built in code
// is safe too. The numbers exist only in the config package.
//
// defaultFourEyes is the four-eyes list when Policy.FourEyes is empty:
// production, and staging hosts that hold real personal data (M6). It is
// read only.
var defaultFourEyes = config.DefaultFourEyes()

// Engine answers policy questions for one configuration. It is immutable
// after New and safe for concurrent use; a reload builds a new Engine.
type Engine struct {
	cfg   *config.Config
	roles map[string]*config.Role
}

// New returns an engine for cfg. A nil cfg yields an engine that denies
// everything.
func New(cfg *config.Config) *Engine {
	if cfg == nil {
		cfg = &config.Config{}
	}
	e := &Engine{cfg: cfg, roles: make(map[string]*config.Role, len(cfg.Roles))}
	for i := range cfg.Roles {
		r := &cfg.Roles[i]
		// First definition wins; validation refuses duplicates anyway.
		if _, dup := e.roles[r.ID]; !dup {
			e.roles[r.ID] = r
		}
	}
	return e
}

// rolesOf resolves the person's role ids. Ids that name no role are skipped:
// they grant nothing, and validation refuses them in a loaded file.
func (e *Engine) rolesOf(p *config.Person) []*config.Role {
	if p == nil {
		return nil
	}
	out := make([]*config.Role, 0, len(p.Roles))
	seen := make(map[string]bool, len(p.Roles))
	for _, id := range p.Roles {
		if seen[id] {
			continue
		}
		seen[id] = true
		if r, ok := e.roles[id]; ok {
			out = append(out, r)
		}
	}
	return out
}

func (e *Engine) keyMaxAge() time.Duration {
	if d := e.cfg.Policy.KeyMaxAge.Duration; d > 0 {
		return d
	}
	return config.DefaultKeyMaxAge
}

func (e *Engine) keyWarn() time.Duration {
	if d := e.cfg.Policy.KeyWarn.Duration; d > 0 {
		return d
	}
	return config.DefaultKeyWarn
}

// personName is how reasons name a person: by id, the name they log in with.
func personName(p *config.Person) string {
	if p == nil || p.ID == "" {
		return "this person"
	}
	return oneLine(p.ID)
}

func deny(reason, hint string, warnings []string) Decision {
	return Decision{Verdict: Deny, Reason: reason, Hint: hint, Warnings: warnings}
}
