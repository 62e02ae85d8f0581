package demotarget

import (
	"fmt"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

// Channel request payloads (RFC 4254 §6). ssh.Unmarshal refuses short or
// over-long payloads, so a malformed request is refused, never half-read.

type ptyRequest struct {
	Term   string
	Cols   uint32
	Rows   uint32
	Width  uint32 // pixels
	Height uint32 // pixels
	Modes  string // encoded terminal modes; the demo leaves the PTY defaults
}

type windowChange struct {
	Cols   uint32
	Rows   uint32
	Width  uint32
	Height uint32
}

type envRequest struct {
	Name  string
	Value string
}

type stringPayload struct {
	Value string
}

type exitStatusMsg struct {
	Status uint32
}

type exitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

func parsePtyRequest(b []byte) (ptyRequest, error) {
	var p ptyRequest
	if err := ssh.Unmarshal(b, &p); err != nil {
		return ptyRequest{}, fmt.Errorf("pty-req payload: %w", err)
	}
	return p, nil
}

func parseWindowChange(b []byte) (windowChange, error) {
	var w windowChange
	if err := ssh.Unmarshal(b, &w); err != nil {
		return windowChange{}, fmt.Errorf("window-change payload: %w", err)
	}
	return w, nil
}

func parseEnv(b []byte) (name, value string, err error) {
	var e envRequest
	if err := ssh.Unmarshal(b, &e); err != nil {
		return "", "", fmt.Errorf("env payload: %w", err)
	}
	// A name with '=' or NUL would smuggle another variable (or truncate
	// this one) into the environment block.
	for i := 0; i < len(e.Name); i++ {
		if e.Name[i] == '=' || e.Name[i] == 0 {
			return "", "", fmt.Errorf("env payload: invalid variable name %q", e.Name)
		}
	}
	if e.Name == "" {
		return "", "", fmt.Errorf("env payload: empty variable name")
	}
	for i := 0; i < len(e.Value); i++ {
		if e.Value[i] == 0 {
			return "", "", fmt.Errorf("env payload: NUL in value of %q", e.Name)
		}
	}
	return e.Name, e.Value, nil
}

// parseString reads the single-string payload of exec, subsystem and signal.
func parseString(b []byte) (string, error) {
	var s stringPayload
	if err := ssh.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("request payload: %w", err)
	}
	return s.Value, nil
}

func parseSignal(b []byte) (string, error) { return parseString(b) }

// clamp16 fits a client-supplied size into a winsize field.
func clamp16(v uint32) uint16 {
	if v > 0xffff {
		return 0xffff
	}
	return uint16(v)
}

func (p *ptyRequest) winsize() *pty.Winsize {
	return &pty.Winsize{Rows: clamp16(p.Rows), Cols: clamp16(p.Cols), X: clamp16(p.Width), Y: clamp16(p.Height)}
}

func (w windowChange) winsize() *pty.Winsize {
	return &pty.Winsize{Rows: clamp16(w.Rows), Cols: clamp16(w.Cols), X: clamp16(w.Width), Y: clamp16(w.Height)}
}

// signals maps RFC 4254 §6.10 signal names (without "SIG") to signals,
// plus a few more common Unix ones for exit-signal reports.
var signals = []struct {
	name string
	sig  syscall.Signal
}{
	{"ABRT", syscall.SIGABRT}, {"ALRM", syscall.SIGALRM}, {"FPE", syscall.SIGFPE},
	{"HUP", syscall.SIGHUP}, {"ILL", syscall.SIGILL}, {"INT", syscall.SIGINT},
	{"KILL", syscall.SIGKILL}, {"PIPE", syscall.SIGPIPE}, {"QUIT", syscall.SIGQUIT},
	{"SEGV", syscall.SIGSEGV}, {"TERM", syscall.SIGTERM}, {"USR1", syscall.SIGUSR1},
	{"USR2", syscall.SIGUSR2},
	{"BUS", syscall.SIGBUS}, {"SYS", syscall.SIGSYS}, {"TRAP", syscall.SIGTRAP},
	{"XCPU", syscall.SIGXCPU}, {"XFSZ", syscall.SIGXFSZ},
}

func signalByName(name string) (syscall.Signal, bool) {
	for _, s := range signals {
		if s.name == name {
			return s.sig, true
		}
	}
	return 0, false
}

// signalName is the RFC 4254 name of sig; signals outside the table use
// the "name@domain" form the RFC allows for local extensions.
func signalName(sig syscall.Signal) string {
	for _, s := range signals {
		if s.sig == sig {
			return s.name
		}
	}
	return fmt.Sprintf("SIG%d@tandem.dev", int(sig))
}
