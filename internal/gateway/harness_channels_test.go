package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/record"
)

// countEvents counts the events of type typ for person from index from on.
func countEvents(es []audit.Event, from int, typ audit.Type, person string) int {
	n := 0
	for _, e := range es[min(from, len(es)):] {
		if e.Type == typ && e.Person == person {
			n++
		}
	}
	return n
}

// TestHarnessRefusedKindsAuditedOnce: channel types and global requests
// the gateway never offers (X11, agent, tun, streamlocal, remote
// forwarding) are refused every time, but audited once per kind and
// connection, as x11-req and auth-agent-req are per channel: a client
// that repeats them in a loop cannot fill the audit log with one fsync'd
// event each.
func TestHarnessRefusedKindsAuditedOnce(t *testing.T) {
	h := newHarness(t)
	from := len(h.events(t))
	c := h.client(t, "alice", "root%db1")
	kinds := []string{"x11", "auth-agent@openssh.com", "tun@openssh.com", "direct-streamlocal@openssh.com", "forwarded-tcpip", "made-up"}
	const n = 40
	for i := 0; i < n; i++ {
		for _, k := range kinds {
			_, _, err := c.OpenChannel(k, nil)
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
				t.Fatalf("%s channel: %v, want a prohibited refusal", k, err)
			}
		}
		for _, g := range []string{"tcpip-forward", "streamlocal-forward@openssh.com"} {
			if ok, _, err := c.SendRequest(g, true, ssh.Marshal(struct {
				Addr string
				Port uint32
			}{"0.0.0.0", 2222})); ok || err != nil {
				t.Fatalf("%s: ok %v, err %v; want a refusal", g, ok, err)
			}
		}
	}
	// The connection is still good for honest work.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Output("echo still-here"); err != nil || string(out) != "still-here\n" {
		t.Fatalf("after the flood: %q, %v", out, err)
	}
	es := h.events(t)
	if got, want := countEvents(es, from, audit.ForwardDenied, "alice"), len(kinds)+1; got != want {
		t.Errorf("%d forward.denied events for %d refused kinds sent %d times each, want %d (one per kind; remote forwarding is one kind):%s",
			got, len(kinds)+2, n, want, types(es[from:]))
	}

	// A name of 16 KiB, and a new made-up kind each time: a few events
	// at most, none with the whole name.
	from = len(es)
	var oe *ssh.OpenChannelError
	if _, _, err := c.OpenChannel(strings.Repeat("k", 16<<10), nil); !errors.As(err, &oe) {
		t.Fatalf("a channel type of 16 KiB: %v, want a refusal", err)
	}
	for i := 0; i < 200; i++ {
		if _, _, err := c.OpenChannel(fmt.Sprintf("made-up-%d", i), nil); !errors.As(err, &oe) {
			t.Fatalf("a made-up channel type: %v, want a refusal", err)
		}
	}
	es = h.events(t)
	if got := countEvents(es, from, audit.ForwardDenied, "alice"); got > 16 {
		t.Errorf("%d forward.denied events for 201 made-up channel types on one connection, want at most 16", got)
	}
	for _, e := range es[from:] {
		if len(e.Attrs["kind"]) > 100 {
			t.Errorf("an event names a channel type of %d bytes", len(e.Attrs["kind"]))
		}
	}
}

// TestHarnessOtherSubsystem: a subsystem other than sftp is refused
// before any session starts: no session.start that calls it sftp, no
// recording, no connection to the target, and the refusal is audited
// as session.denied.
func TestHarnessOtherSubsystem(t *testing.T) {
	h := newHarness(t)
	from := len(h.events(t))
	_, out := rawSession(t, h.client(t, "alice", "root%db1"), "", strReq("subsystem", "netconf"))
	if !strings.Contains(out, `subsystem "netconf" is not supported`) {
		t.Errorf("output %q", out)
	}
	h.waitEvent(t, from, "session.denied", func(e audit.Event) bool {
		return e.Type == audit.SessionDenied && e.Person == "alice" && e.Attrs["command"] == "netconf"
	})
	es := h.events(t)
	if n := countEvents(es, from, audit.SessionStart, "alice"); n != 0 {
		t.Errorf("%d session.start events for a refused subsystem:%s", n, types(es[from:]))
	}
	if ids := h.targets["db1"].accepted(); len(ids) != 0 {
		t.Errorf("the target saw a login: %v", ids)
	}
}

// TestHarnessLongRoute: a route (login%host, or a jump's login) longer
// than any login or host name can be is refused at login, so that no
// refusal per channel writes a client's kilobytes of user name into the
// audit log again and again (login and host in session.denied, the
// login twice more in its reason).
func TestHarnessLongRoute(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("h", 32<<10)
	for _, tc := range []struct{ name, dest string }{
		{"long host", "root%" + long},
		{"long login", long + "%db1"},
		{"long login in a jump", long + "@db1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(h.events(t))
			if c, err := h.dial(t, "alice", tc.dest); err == nil {
				for i := 0; i < 5; i++ {
					if s, err := c.NewSession(); err == nil {
						_ = s.Run("true")
					}
				}
				c.Close()
				t.Errorf("logged in with a user name of %d bytes", len(tc.dest))
			} else if !strings.Contains(err.Error(), "bytes long") {
				t.Errorf("refused with %v, want the reason", err)
			}
			es := h.events(t)
			big := 0
			for _, e := range es[from:] {
				n := len(e.Host) + len(e.Login)
				for _, v := range e.Attrs {
					n += len(v)
				}
				big = max(big, n)
			}
			if big > 4<<10 {
				t.Errorf("an event of %d bytes of text for a user name of %d bytes:%s", big, len(tc.dest), types(es[from:])[:min(2000, len(types(es[from:])))])
			}
		})
	}
}

// TestHarnessForwardRefusals: forwards the policy does not allow are
// refused before the target is dialled and audited, whatever the route
// and however the destination is spelled; a destination host longer
// than a DNS name is refused without a copy of it in the audit log.
func TestHarnessForwardRefusals(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ name, dest, host string }{
		{"plain connection", "alice", "localhost"},
		{"user route", "root%db1", "localhost"},
		{"jump route", "root@db1", "localhost"},
		{"user route, upper case", "root%db1", "LOCALHOST"},
		{"user route, control characters", "root%db1", "local\x1b[2Jhost\n"},
		{"user route, long host", "root%db1", strings.Repeat("a", 32<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(h.events(t))
			c := h.client(t, "alice", tc.dest)
			for _, port := range []uint32{22, 5432, 65536 + 22, 0} {
				_, _, err := c.OpenChannel("direct-tcpip", ssh.Marshal(struct {
					Host     string
					Port     uint32
					OrigHost string
					OrigPort uint32
				}{tc.host, port, "127.0.0.1", 1234}))
				var oe *ssh.OpenChannelError
				if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
					t.Fatalf("port %d: %v, want a prohibited refusal", port, err)
				}
				if strings.ContainsAny(oe.Message, "\x1b\n") {
					t.Errorf("the refusal carries control characters: %q", oe.Message)
				}
			}
			es := h.events(t)
			if got := countEvents(es, from, audit.ForwardDenied, "alice"); got != 4 {
				t.Errorf("%d forward.denied events for 4 refused forwards:%s", got, types(es[from:]))
			}
			for _, e := range es[from:] {
				if e.Type == audit.SessionStart || e.Type == audit.ForwardStart {
					t.Errorf("a refused forward started: %s %v", e.Type, e.Attrs)
				}
				n := 0
				for _, v := range e.Attrs {
					n += len(v)
				}
				if n > 4<<10 {
					t.Errorf("a %s event of %d bytes of text", e.Type, n)
				}
			}
			if ids := h.targets["db1"].accepted(); len(ids) != 0 {
				t.Errorf("the target saw a login: %v", ids)
			}
		})
	}
}

// req is one hand-crafted channel request.
type req struct {
	typ     string
	payload []byte
}

func ptyReq(term string, modes string) req {
	return req{"pty-req", ssh.Marshal(struct {
		Term                string
		Columns, Rows, W, H uint32
		Modes               string
	}{term, 80, 24, 0, 0, modes})}
}

func strReq(typ, v string) req { return req{typ, ssh.Marshal(struct{ V string }{v})} }

// rawSession opens a session channel on c, sends reqs in order (each
// wanting a reply) and returns the replies and what the channel printed
// until it closed or, for a channel that stays open, until the output
// holds until; it fails the test after wait.
func rawSession(t *testing.T, c *ssh.Client, until string, reqs ...req) (replies []bool, out string) {
	t.Helper()
	ch, in, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	go ssh.DiscardRequests(in)
	var b buffer
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		var both sync.WaitGroup
		both.Add(1)
		go func() { defer both.Done(); _, _ = io.Copy(&b, ch.Stderr()) }()
		_, _ = io.Copy(&b, ch)
		both.Wait()
	}()
	for _, r := range reqs {
		ok, err := ch.SendRequest(r.typ, true, r.payload)
		if err != nil {
			break // the channel closed
		}
		replies = append(replies, ok)
	}
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-closed:
			return replies, b.String()
		case <-time.After(10 * time.Millisecond):
		}
		if until != "" && strings.Contains(b.String(), until) {
			return replies, b.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the channel is open and its output lacks %q: %q", wait, until, b.String())
		}
	}
}

// TestHarnessFourEyesOrders: on a four-eyes host no order or mix of
// requests on a session channel reaches the target without a second
// person, on either route: a start without a terminal is refused, one
// with a terminal waits, and a second start, terminal or subsystem
// request on the waiting channel is refused.
func TestHarnessFourEyesOrders(t *testing.T) {
	h := newHarness(t)
	for _, dest := range []string{"root%prod1", "root@prod1"} {
		for _, tc := range []struct {
			name string
			reqs []req
			want string // in what the client reads
		}{
			{"exec", []req{strReq("exec", "id")}, "needs an approved access request"},
			{"shell without a terminal", []req{{typ: "shell"}}, "a shell needs a terminal"},
			{"sftp", []req{strReq("subsystem", "sftp")}, "needs an approved access request"},
			{"exec, then a terminal and a shell", []req{strReq("exec", "id"), ptyReq("xterm", ""), {typ: "shell"}}, "needs an approved access request"},
			{"terminal whose payload does not parse", []req{{"pty-req", []byte("\x00\x00\x00\x05xterm")}, {typ: "shell"}}, "ssh -t gw join"},
			{"waiting, then exec, shell, subsystem, env, terminal", []req{ptyReq("xterm", ""), {typ: "shell"},
				strReq("exec", "id"), {typ: "shell"}, strReq("subsystem", "sftp"), {"env", ssh.Marshal(struct{ N, V string }{"LC_X", "1"})},
				ptyReq("vt100", "")}, "ssh -t gw join"},
			{"command with a terminal, then agent and X11", []req{ptyReq("xterm", ""), {"auth-agent-req@openssh.com", nil},
				{"x11-req", ssh.Marshal(struct {
					Single        bool
					Proto, Cookie string
					Screen        uint32
				}{false, "MIT-MAGIC-COOKIE-1", "00", 0})}, strReq("exec", "id"), strReq("exec", "id")}, "ssh -t gw join"},
		} {
			t.Run(dest+" "+tc.name, func(t *testing.T) {
				c := h.client(t, "alice", dest)
				replies, out := rawSession(t, c, tc.want, tc.reqs...)
				if !strings.Contains(out, tc.want) {
					t.Errorf("output %q, want %q", out, tc.want)
				}
				// After a start, nothing more is granted.
				started := false
				for i, ok := range replies {
					if started && ok {
						t.Errorf("request %d (%s) after the start was granted", i, tc.reqs[i].typ)
					}
					if s := tc.reqs[i].typ; s == "exec" || s == "shell" || s == "subsystem" {
						started = true
					}
				}
				if ids := h.targets["prod1"].accepted(); len(ids) != 0 {
					t.Fatalf("the target saw a login without a second person: %q", ids)
				}
			})
		}
	}
}

// TestHarnessSecondStart: a second exec, shell, subsystem, terminal or
// env request on a running command's channel is refused and never reaches
// the target, which runs the first command only.
func TestHarnessSecondStart(t *testing.T) {
	h := newHarness(t)
	c := h.client(t, "alice", "root%db1")
	replies, out := rawSession(t, c, "", strReq("exec", "echo first; sleep 1; echo done"),
		strReq("exec", "echo second"), req{typ: "shell"}, strReq("subsystem", "sftp"), ptyReq("xterm", ""),
		req{"env", ssh.Marshal(struct{ N, V string }{"LC_X", "1"})})
	if len(replies) == 0 || !replies[0] {
		t.Fatalf("replies %v, output %q", replies, out)
	}
	for i, ok := range replies[1:] {
		if ok {
			t.Errorf("request %d after the start was granted", i+1)
		}
	}
	if !strings.Contains(out, "first") || !strings.Contains(out, "done") || strings.Contains(out, "second") {
		t.Errorf("output %q, want the first command's only", out)
	}
	if ids := h.targets["db1"].accepted(); len(ids) != 1 {
		t.Errorf("target accepted %q, want one certificate", ids)
	}
}

// TestHarnessHugeWindowSize: a terminal holds at most 65535 columns and
// rows (struct winsize), so sizes above that, as a client may send them
// in pty-req and window-change, reach the target and the recording
// alike as 65535: the target would otherwise cut 65616 to 80 while the
// recording, and the player that replays it, said 65616, and the
// recording refused a resize above 65536 and lost it.
func TestHarnessHugeWindowSize(t *testing.T) {
	h := newHarness(t)
	c := h.client(t, "alice", "root%db1")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out buffer
	s.Stdout, s.Stderr = &out, &out
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 1<<32-1, 65536+80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	// The marker is computed, so that the terminal's echo of the line
	// does not count as its output.
	_, _ = io.WriteString(stdin, "stty size; echo $((40+2))-sized\n")
	out.waitFor(t, func(s string) bool { return strings.Contains(s, "42-sized") }, "stty size")
	if !strings.Contains(out.String(), "65535 65535") {
		t.Errorf("the target's terminal: %q, want 65535 65535", out.String())
	}
	if err := s.WindowChange(1<<32-1, 1<<31); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "stty size; echo $((40+3))-resized\n")
	out.waitFor(t, func(s string) bool { return strings.Contains(s, "43-resized") }, "stty size after the resize")
	_, _ = io.WriteString(stdin, "exit\n")
	_ = s.Wait()
	end := h.waitEvent(t, 0, "session.end", func(e audit.Event) bool { return e.Type == audit.SessionEnd && e.Person == "alice" })
	r, err := record.Open(h.vault, end.Attrs["recording"])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := r.Meta()
	if m.Cols != 65535 || m.Rows != 65535 {
		t.Errorf("the recording starts at %dx%d, want 65535x65535", m.Cols, m.Rows)
	}
	resized := false
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.Type == record.EvResize {
			resized = resized || ev.Cols == 65535 && ev.Rows == 65535
			if ev.Cols > 65535 || ev.Rows > 65535 {
				t.Errorf("the recording resizes to %dx%d", ev.Cols, ev.Rows)
			}
		}
	}
	if !resized {
		t.Error("the recording lacks the resize the target's terminal had")
	}
}

// TestHarnessEnvFiltered: only variables gateway.env_allow names reach
// the target; those that change what the login runs (LD_PRELOAD,
// BASH_ENV, PATH) are refused, before and on a terminal's session alike.
func TestHarnessEnvFiltered(t *testing.T) {
	h := newHarness(t)
	env := func(n, v string) req { return req{"env", ssh.Marshal(struct{ N, V string }{n, v})} }
	for _, pty := range []bool{false, true} {
		c := h.client(t, "alice", "root%db1")
		reqs := []req{env("LD_PRELOAD", "/tmp/evil.so"), env("BASH_ENV", "/tmp/evil.sh"), env("PATH", "/tmp/evil"),
			env("LC_TANDEM_TEST", "passed"), env("lc_lower", "x"), env("LC_", "empty-suffix")}
		if pty {
			reqs = append(reqs, ptyReq("xterm", ""))
		}
		reqs = append(reqs, strReq("exec", "env; echo END"))
		replies, out := rawSession(t, c, "", reqs...)
		want := []bool{false, false, false, true, false, true}
		for i, w := range want {
			if i >= len(replies) || replies[i] != w {
				t.Errorf("pty %v: env %d answered %v, want %v", pty, i, replies, want)
				break
			}
		}
		if !strings.Contains(out, "LC_TANDEM_TEST=passed") || !strings.Contains(out, "END") {
			t.Errorf("pty %v: the allowed variable did not arrive: %q", pty, out)
		}
		for _, bad := range []string{"LD_PRELOAD", "BASH_ENV", "/tmp/evil", "lc_lower"} {
			if strings.Contains(out, bad) {
				t.Errorf("pty %v: %s reached the target: %q", pty, bad, out)
			}
		}
	}
}

// TestHarnessChannelCapAuditedOnce: a client at its connection's channel
// cap that goes on opening channels is refused each time, audited once.
func TestHarnessChannelCapAuditedOnce(t *testing.T) {
	h := newHarness(t)
	from := len(h.events(t))
	c := h.client(t, "alice", "root%db1")
	for i := 0; i < 10; i++ { // gateway.limits.channels_per_connection's default
		if _, _, err := c.OpenChannel("session", nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		_, _, err := c.OpenChannel("session", nil)
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage {
			t.Fatalf("channel %d past the cap: %v", 11+i, err)
		}
	}
	es := h.events(t)
	if got := countEvents(es, from, audit.SessionDenied, "alice"); got != 1 {
		t.Errorf("%d session.denied events for 50 channels past the cap, want 1", got)
	}
}

// TestHarnessNotPermittedNowAuditedOnce: a connection whose person may no
// longer work (here: the key expired by a reload) but is not closed for
// it has every new channel refused, and audited once, not per try.
func TestHarnessNotPermittedNowAuditedOnce(t *testing.T) {
	h := newHarness(t)
	c := h.client(t, "alice", "root%db1")
	h.reload(t, func(h *harness) {
		for i := range h.spec.persons {
			if h.spec.persons[i].id == "alice" {
				h.spec.persons[i].added = time.Now().UTC().AddDate(0, 0, -400)
			}
		}
	})
	from := len(h.events(t))
	for i := 0; i < 30; i++ {
		_, _, err := c.OpenChannel("session", nil)
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited || !strings.Contains(oe.Message, "expired") {
			t.Fatalf("channel %d: %v, want a refusal for the expired key", i, err)
		}
	}
	es := h.events(t)
	if got := countEvents(es, from, audit.SessionDenied, "alice"); got != 1 {
		t.Errorf("%d session.denied events for 30 refused channels, want 1:%s", got, types(es[from:min(len(es), from+3)]))
	}
}

// TestHarnessOddRoutes: user names that almost name a route reach no
// target, and the person reads the refusal without raw control
// characters.
func TestHarnessOddRoutes(t *testing.T) {
	h := newHarness(t)
	for _, user := range []string{
		"ro\x1b[2Jot%db1", "root%db1\n", "root%db1\x00", "root%%db1", "root%db1%db1", " root%db1", "root%db1 ",
		"root%DB1\u202e", "root\u009b%db1", "%db1", "root%", "root%prod1\rroot%db1",
	} {
		t.Run(strconv.Quote(user), func(t *testing.T) {
			_, stderr, status := h.run(t, "alice", user, "id")
			if status == 0 {
				t.Errorf("%q ran a command: %q", user, stderr)
			}
			for _, r := range stderr {
				if r == 0x1b || r == 0x9b || r == 0x202e || r == 0 || r == '\r' {
					t.Errorf("the refusal shows a raw %U: %q", r, stderr)
				}
			}
			if ids := h.targets["db1"].accepted(); len(ids) != 0 {
				t.Fatalf("%q reached db1: %q", user, ids)
			}
		})
	}
}

// TestHarnessGatewaySubsystem: the gateway itself has no subsystems; a
// subsystem request on a plain connection is refused and its name never
// runs as a gateway command (it did, under a reply that said it failed:
// `ssh -s gw 'lock bob --reason x'` locked bob).
func TestHarnessGatewaySubsystem(t *testing.T) {
	h := newHarness(t)
	from := len(h.events(t))
	_, out := rawSession(t, h.client(t, "alice", "gw"), "", strReq("subsystem", "lock bob --reason x"))
	if !strings.Contains(out, "no subsystems") {
		t.Errorf("output %q", out)
	}
	es := h.events(t)
	for _, e := range es[from:] {
		if e.Type == audit.Command || e.Type == audit.Lock {
			t.Errorf("the subsystem ran as a command: %s %v", e.Type, e.Attrs)
		}
	}
	if _, stderr, status := h.run(t, "bob", "root%db1", "true"); status != 0 {
		t.Errorf("bob can no longer work: %d %q", status, stderr)
	}
}

// TestHarnessSFTPReadOnlyAfterReload: a reload that leaves a person's
// login only to sftp_read_only rules ends their running read-write sftp
// session (an sshfs mount lives for days), as it ends a shell the reload
// no longer allows; a new one is read-only.
func TestHarnessSFTPReadOnlyAfterReload(t *testing.T) {
	h := newHarness(t)
	c := h.client(t, "alice", "root%db1")
	fc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	write := func(name string) error {
		f, err := fc.Create(name)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte("data\n")); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write("rw-before"); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	h.reload(t, func(h *harness) {
		h.spec.roles = strings.Replace(h.spec.roles, "logins: [root], join:", "logins: [root], sftp_read_only: true, join:", 1)
	})
	time.Sleep(100 * time.Millisecond)
	if err := write("rw-after"); err == nil {
		t.Fatal("the running sftp session still writes after a reload made the login read-only")
	}
	h.waitEvent(t, 0, "session.end of the sftp session", func(e audit.Event) bool {
		return e.Type == audit.SessionEnd && strings.Contains(e.Attrs["reason"], "sftp_read_only")
	})
	fc2, err := sftp.NewClient(h.client(t, "alice", "root%db1"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc2.Close()
	if _, err := fc2.Create("rw-new"); err == nil {
		t.Error("a new sftp session writes after the reload made the login read-only")
	}
	if _, err := fc2.Stat("rw-before"); err != nil {
		t.Errorf("a new sftp session cannot read: %v", err)
	}
}
