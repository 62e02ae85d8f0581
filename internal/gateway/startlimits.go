package gateway

import (
	"fmt"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
)

// Caps on what a client may send on a session channel before its session
// starts (M19, M30). collectStart keeps what it needs to replay on the
// target, so without them one person with no grants could grow the
// gateway by hundreds of megabytes per channel. Every session channel is
// held to them, the gateway's own commands (`ssh gw …`) too. The values
// are far above what OpenSSH, PuTTY, Ansible or an SFTP client send.
const (
	// maxStartRequests bounds all requests before shell, exec or
	// subsystem: env, pty-req, window-change, x11-req, agent and unknown
	// ones. OpenSSH sends a handful (one pty-req, a few env, perhaps a
	// window-change). A client that goes on past this number is not
	// confused but flooding: its channel is closed.
	maxStartRequests = 256

	// maxEnvRequests bounds the env requests of one channel, allowed by
	// gateway.env_allow or not: a flood of refused ones costs a reply and
	// an audit check each, so it is counted too. OpenSSH sends one per
	// SendEnv/SetEnv match; 64 is several times any real setup.
	maxEnvRequests = 64

	// maxEnvBytes bounds the names and values of the env requests kept
	// for the target (they are held until the session starts and then
	// replayed). 32 KiB holds LANG, LC_*, TZ and a few long values
	// (a COLORTERM, a token variable) with room to spare.
	maxEnvBytes = 32 << 10

	// maxTermBytes bounds the terminal name of a pty-req (TERM). terminfo
	// names are short ("xterm-256color", "tmux-direct"); ncurses keeps
	// them under 128 bytes including aliases.
	maxTermBytes = 256

	// maxModesBytes bounds the encoded terminal modes of a pty-req. RFC
	// 4254 §8 encodes each mode as one opcode byte and a uint32, and
	// defines opcodes 1-159 with 160-255 reserved: even every opcode once
	// is under 1 KiB (OpenSSH sends about 60 modes, some 300 bytes).
	maxModesBytes = 1 << 10

	// maxCommandBytes bounds an exec command. sshd runs it as the one
	// argument of `$SHELL -c`, and Linux refuses a single argument longer
	// than MAX_ARG_STRLEN (32 pages, 128 KiB), so a longer command could
	// never run on a Linux target. Ansible sends its modules on stdin
	// (pipelining) or through SFTP/scp, and its commands
	// (`/bin/sh -c 'sudo -H -S -n -u root /bin/sh -c '"'"'echo
	// BECOME-SUCCESS-… ; /usr/bin/python3'"'"' && sleep 0'`) are a few
	// hundred bytes; the raw and shell modules pass the task's text, which
	// the same kernel limit bounds.
	maxCommandBytes = 128 << 10

	// maxSubsystemBytes bounds a subsystem name. Only "sftp" is served;
	// registered names (RFC 4250 §4.6.1, name@domain) stay under 64.
	maxSubsystemBytes = 64
)

// startLimits counts what one channel sent before its session started,
// and makes sure its excess is audited once.
type startLimits struct {
	requests int
	envs     int
	envBytes int
	audited  bool
	forwards map[string]bool // forward kinds already audited as refused
}

// limitKind names the cap a request ran into, for the audit event and the
// client's message.
type limitKind struct {
	name string // audit attr "limit"
	max  int
	what string // for people: "too many env requests"
}

var (
	limitRequests  = limitKind{"requests", maxStartRequests, "too many requests before the session started"}
	limitEnvCount  = limitKind{"env_requests", maxEnvRequests, "too many env requests"}
	limitEnvBytes  = limitKind{"env_bytes", maxEnvBytes, "env variables too large in total"}
	limitTerm      = limitKind{"term_bytes", maxTermBytes, "terminal name too long"}
	limitModes     = limitKind{"modes_bytes", maxModesBytes, "terminal modes too long"}
	limitCommand   = limitKind{"command_bytes", maxCommandBytes, "command too long"}
	limitSubsystem = limitKind{"subsystem_bytes", maxSubsystemBytes, "subsystem name too long"}
)

// exceeded audits the first cap a channel runs into; later excess on the
// same channel is dropped without a word, so a flood cannot fill the
// audit log (M30).
func (c *clientConn) exceeded(l *startLimits, k limitKind, kind string, closed bool) {
	if l.audited {
		return
	}
	l.audited = true
	c.srv.record(audit.ChannelLimitedEvent{Conn: audit.Conn{Person: c.person.ID, Source: c.source},
		Limit: k.name, Max: k.max, Kind: kind, Reason: k.what, Closed: closed}.Event())
}

// limitMessage is what a client is told when a start request is over a
// cap.
func limitMessage(k limitKind, n int) string {
	return fmt.Sprintf("%s (%d bytes; the gateway accepts at most %d)", k.what, n, k.max)
}

// ptyOverLimit reports which cap a pty-req breaks, if any. A payload that
// does not parse is left to the target, as before, if it is no longer
// than a valid one could be.
func ptyOverLimit(payload []byte) (limitKind, bool) {
	var p struct {
		Term                string
		Columns, Rows, W, H uint32
		Modes               string
	}
	if ssh.Unmarshal(payload, &p) != nil {
		if len(payload) > 4+maxTermBytes+16+4+maxModesBytes {
			return limitModes, true
		}
		return limitKind{}, false
	}
	switch {
	case len(p.Term) > maxTermBytes:
		return limitTerm, true
	case len(p.Modes) > maxModesBytes:
		return limitModes, true
	}
	return limitKind{}, false
}
