package demotarget

import (
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"FOO", "bar", true},
		{"LC_ALL", "", true},
		{"", "x", false},
		{"A=B", "x", false},
		{"A\x00", "x", false},
		{"A", "x\x00y", false},
	}
	for _, tt := range tests {
		n, v, err := parseEnv(ssh.Marshal(envRequest{Name: tt.name, Value: tt.value}))
		if (err == nil) != tt.ok || (tt.ok && (n != tt.name || v != tt.value)) {
			t.Errorf("parseEnv(%q, %q) = %q, %q, %v; want ok=%v", tt.name, tt.value, n, v, err, tt.ok)
		}
	}
	if _, _, err := parseEnv([]byte{0, 0, 0, 9, 'x'}); err == nil {
		t.Error("truncated payload accepted")
	}
}

func TestParsePtyRequest(t *testing.T) {
	in := ptyRequest{Term: "xterm", Cols: 100, Rows: 1 << 20, Modes: "\x00"}
	p, err := parsePtyRequest(ssh.Marshal(in))
	if err != nil || p != in {
		t.Fatalf("parsePtyRequest = %+v, %v", p, err)
	}
	ws := p.winsize()
	if ws.Cols != 100 || ws.Rows != 0xffff {
		t.Errorf("winsize = %+v, want cols 100, rows clamped to 65535", ws)
	}
	if _, err := parsePtyRequest(append(ssh.Marshal(in), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestSessionOf(t *testing.T) {
	tests := []struct {
		stat string
		sid  int
		ok   bool
	}{
		{"42 (bash) S 1 42 42 34816 42 4194560", 42, true},
		{"77 (a) b (c)) R 42 77 42 0", 42, true},
		{"5 (x) S 1", 0, false},
		{"no paren here", 0, false},
		{"9 (x) S 1 9 zz", 0, false},
	}
	for _, tt := range tests {
		sid, ok := sessionOf([]byte(tt.stat))
		if sid != tt.sid || ok != tt.ok {
			t.Errorf("sessionOf(%q) = %d, %v; want %d, %v", tt.stat, sid, ok, tt.sid, tt.ok)
		}
	}
}

func TestSignalNames(t *testing.T) {
	tests := []struct {
		name string
		sig  syscall.Signal
	}{
		{"TERM", syscall.SIGTERM}, {"KILL", syscall.SIGKILL}, {"INT", syscall.SIGINT},
		{"HUP", syscall.SIGHUP}, {"USR2", syscall.SIGUSR2},
	}
	for _, tt := range tests {
		if got, ok := signalByName(tt.name); !ok || got != tt.sig {
			t.Errorf("signalByName(%q) = %v, %v", tt.name, got, ok)
		}
		if got := signalName(tt.sig); got != tt.name {
			t.Errorf("signalName(%v) = %q, want %q", tt.sig, got, tt.name)
		}
	}
	if _, ok := signalByName("SIGTERM"); ok {
		t.Error(`"SIGTERM" accepted; RFC 4254 names have no SIG prefix`)
	}
	if got := signalName(syscall.SIGWINCH); !strings.HasSuffix(got, "@tandem.dev") {
		t.Errorf("signalName(SIGWINCH) = %q, want a name@domain form", got)
	}
}

// FuzzParsePayloads feeds arbitrary bytes to every channel-request parser:
// none may panic, and what parses must survive a round trip.
func FuzzParsePayloads(f *testing.F) {
	f.Add(ssh.Marshal(ptyRequest{Term: "xterm", Cols: 80, Rows: 24}))
	f.Add(ssh.Marshal(windowChange{Cols: 80, Rows: 24}))
	f.Add(ssh.Marshal(envRequest{Name: "A", Value: "b"}))
	f.Add(ssh.Marshal(stringPayload{Value: "echo hi"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := parsePtyRequest(b); err == nil {
			_ = p.winsize()
			if string(ssh.Marshal(p)) != string(b) {
				t.Errorf("pty-req round trip differs")
			}
		}
		if w, err := parseWindowChange(b); err == nil {
			_ = w.winsize()
		}
		if n, v, err := parseEnv(b); err == nil {
			if n == "" || strings.ContainsAny(n, "=\x00") || strings.Contains(v, "\x00") {
				t.Errorf("parseEnv accepted %q=%q", n, v)
			}
		}
		if s, err := parseString(b); err == nil {
			if string(ssh.Marshal(stringPayload{Value: s})) != string(b) {
				t.Errorf("string round trip differs")
			}
		}
		if s, err := parseSignal(b); err == nil {
			_, _ = signalByName(s)
		}
		_, _ = sessionOf(b)
	})
}
