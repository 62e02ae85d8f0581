package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// An Attacker is a deliberately ill-behaved SSH client for adversarial
// tests, built on golang.org/x/crypto/ssh: it can leave a channel's
// output unread (so the channel window fills and the server's writes
// stall), hold many channels, and stop reading its TCP socket altogether
// (so it answers no keep-alive and its receive window closes). It reports
// when the server closed the connection, with a timestamp, so a test can
// measure how quickly enforcement reached it. Loopback only.
type Attacker struct {
	User string
	conn ssh.Conn
	raw  *freezableConn
	// Banner collects what the server sent as authentication banners
	// (where refusals are explained).
	Banner *SyncBuffer

	closed   chan struct{}
	closedAt time.Time // valid once closed is closed
	how      string    // how the close was seen
}

// AttackerOpts configures DialAttacker.
type AttackerOpts struct {
	// Addr is the gateway's loopback address, host:port.
	Addr string
	// User is the SSH user name, e.g. "alice" or "root%db1".
	User string
	// Signer is the client key: a file key (ParsePrivateKeyFile) or an
	// SKSigner.
	Signer ssh.Signer
	// Timeout bounds dialing and the handshake; default 10s.
	Timeout time.Duration
}

// ParsePrivateKeyFile reads an unencrypted OpenSSH private key file as a
// signer.
func ParsePrivateKeyFile(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(b)
}

// DialAttacker connects and authenticates to the gateway. The host key is
// not checked (ssh.InsecureIgnoreHostKey): acceptable only because this
// is a test client talking to a gateway on loopback that the test itself
// started; never copy this into real code.
func DialAttacker(ctx context.Context, o AttackerOpts) (*Attacker, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	raw := &freezableConn{Conn: nc, release: make(chan struct{})}
	a := &Attacker{User: o.User, raw: raw, Banner: &SyncBuffer{}, closed: make(chan struct{})}
	cfg := &ssh.ClientConfig{
		User:            o.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(o.Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // test only, see above
		BannerCallback: func(msg string) error {
			_, _ = a.Banner.Write([]byte(msg))
			return nil
		},
		Timeout: timeout,
	}
	conn, chans, reqs, err := ssh.NewClientConn(raw, o.Addr, cfg)
	if err != nil {
		_ = nc.Close()
		if b := a.Banner.String(); b != "" {
			return nil, fmt.Errorf("%w; banner: %s", err, b)
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	a.conn = conn
	// Global requests (keepalive@openssh.com) are answered while the
	// connection is read; Freeze stops that by not reading at all.
	go ssh.DiscardRequests(reqs)
	go func() {
		for nch := range chans {
			_ = nch.Reject(ssh.Prohibited, "test client accepts no channels")
		}
	}()
	go a.watch()
	return a, nil
}

// watch notes when the connection ended: the SSH connection's read loop
// failed, or, for a frozen client that reads nothing, the kernel saw the
// server's FIN or RST.
func (a *Attacker) watch() {
	waited := make(chan struct{})
	go func() {
		_ = a.conn.Wait()
		close(waited)
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-waited:
			a.markClosed("connection read loop ended")
			return
		case <-tick.C:
			if a.raw.frozen.Load() {
				if gone, state := tcpPeerGone(a.raw.Conn); gone {
					a.markClosed("TCP state " + state)
					return
				}
			}
		}
	}
}

func (a *Attacker) markClosed(how string) {
	a.closedAt = time.Now()
	a.how = how
	close(a.closed)
}

// Closed is closed once the server closed the connection.
func (a *Attacker) Closed() <-chan struct{} { return a.closed }

// ClosedAt is when the close was seen; zero while open.
func (a *Attacker) ClosedAt() time.Time {
	select {
	case <-a.closed:
		return a.closedAt
	default:
		return time.Time{}
	}
}

// HowClosed says how the close was seen, for messages.
func (a *Attacker) HowClosed() string {
	select {
	case <-a.closed:
		return a.how
	default:
		return "still open"
	}
}

// WaitClosed waits up to timeout for the server to close the connection
// and returns when it was seen closed.
func (a *Attacker) WaitClosed(timeout time.Duration) (time.Time, bool) {
	if !WaitClosed(a.closed, timeout) {
		return time.Time{}, false
	}
	return a.closedAt, true
}

// Freeze makes the client stop reading its TCP socket entirely: no
// keep-alive is answered, no channel data or close is seen, and the TCP
// receive window closes once the kernel buffer is full.
func (a *Attacker) Freeze() { a.raw.frozen.Store(true) }

// Close closes the connection from the client side.
func (a *Attacker) Close() error {
	a.raw.unfreeze()
	if a.conn == nil {
		return a.raw.Close()
	}
	return a.conn.Close()
}

// SessionOpts describes one session channel.
type SessionOpts struct {
	// PTY sends a pty-req (xterm, 80x24) before the start request.
	PTY bool
	// Exactly one of Exec, Shell, Subsystem starts the session.
	Exec      string
	Shell     bool
	Subsystem string
	// Read drains stdout and stderr into Output. False never reads: the
	// channel window fills and the server's writes stall.
	Read bool
	// Stdin is written after the start request succeeded.
	Stdin string
}

// AttackSession is one session channel of an Attacker.
type AttackSession struct {
	ch     ssh.Channel
	Output *SyncBuffer // stdout and stderr, when read
	done   chan struct{}
	doneAt time.Time
	exit   atomic.Int64 // exit-status + 1; 0 while none
	signal atomic.Value // exit-signal name
}

// Session opens a session channel as o says. It fails when the channel
// or its start request is refused.
func (a *Attacker) Session(o SessionOpts) (*AttackSession, error) {
	ch, reqs, err := a.conn.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	s := &AttackSession{ch: ch, Output: &SyncBuffer{}, done: make(chan struct{})}
	// With Read, Done also waits for the output copiers, which end at the
	// channel's EOF: a caller that reads Output after Done sees all of it.
	var copying sync.WaitGroup
	if o.Read {
		copying.Add(2)
	}
	go func() {
		for r := range reqs {
			switch r.Type {
			case "exit-status":
				var st struct{ Status uint32 }
				if ssh.Unmarshal(r.Payload, &st) == nil {
					s.exit.Store(int64(st.Status) + 1)
				}
			case "exit-signal":
				var sig struct{ Signal string }
				if ssh.Unmarshal(r.Payload, &sig) == nil {
					s.signal.Store(sig.Signal)
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		s.doneAt = time.Now()
		copying.Wait()
		close(s.done)
	}()
	if o.Read {
		go func() { defer copying.Done(); _, _ = io.Copy(s.Output, ch) }()
		go func() { defer copying.Done(); _, _ = io.Copy(s.Output, ch.Stderr()) }()
	}
	if o.PTY {
		req := ssh.Marshal(struct {
			Term             string
			Cols, Rows, W, H uint32
			Modes            string
		}{"xterm", 80, 24, 0, 0, "\x00"})
		if ok, err := ch.SendRequest("pty-req", true, req); err != nil || !ok {
			_ = ch.Close()
			return s, fmt.Errorf("pty-req refused (ok=%v, err=%v)", ok, err)
		}
	}
	var kind string
	var ok bool
	switch {
	case o.Exec != "":
		kind = "exec"
		ok, err = ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{o.Exec}))
	case o.Subsystem != "":
		kind = "subsystem"
		ok, err = ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{o.Subsystem}))
	default:
		kind = "shell"
		ok, err = ch.SendRequest("shell", true, nil)
	}
	if err != nil || !ok {
		_ = ch.Close()
		return s, fmt.Errorf("%s request refused (ok=%v, err=%v); output: %q", kind, ok, err, s.Output.String())
	}
	if o.Stdin != "" {
		if _, err := io.WriteString(ch, o.Stdin); err != nil {
			return s, fmt.Errorf("write stdin: %w", err)
		}
	}
	return s, nil
}

// Sessions opens up to n session channels with the same options and
// returns those that opened, with the first error (the server may cap
// channels per connection).
func (a *Attacker) Sessions(n int, o SessionOpts) ([]*AttackSession, error) {
	var out []*AttackSession
	var first error
	for range n {
		s, err := a.Session(o)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, s)
	}
	return out, first
}

// Write sends input on the channel.
func (s *AttackSession) Write(p string) error {
	_, err := io.WriteString(s.ch, p)
	return err
}

// Done is closed when the channel closed (or the connection ended).
func (s *AttackSession) Done() <-chan struct{} { return s.done }

// WaitDone waits up to timeout for the channel to close and returns when
// it did.
func (s *AttackSession) WaitDone(timeout time.Duration) (time.Time, bool) {
	if !WaitClosed(s.done, timeout) {
		return time.Time{}, false
	}
	return s.doneAt, true
}

// DoneAt is when the channel closed; zero while open.
func (s *AttackSession) DoneAt() time.Time {
	select {
	case <-s.done:
		return s.doneAt
	default:
		return time.Time{}
	}
}

// ExitStatus is the exit status the server sent, or -1 if none (yet).
func (s *AttackSession) ExitStatus() int { return int(s.exit.Load()) - 1 }

// ExitSignal is the exit signal the server sent, or "".
func (s *AttackSession) ExitSignal() string {
	v, _ := s.signal.Load().(string)
	return v
}

// Close closes the channel from the client side.
func (s *AttackSession) Close() error { return s.ch.Close() }

// freezableConn is a net.Conn whose reads can be stopped: once frozen,
// Read blocks until the connection is closed by the client.
type freezableConn struct {
	net.Conn
	frozen  atomic.Bool
	release chan struct{}
	once    sync.Once
}

func (c *freezableConn) Read(p []byte) (int, error) {
	if c.frozen.Load() {
		<-c.release
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *freezableConn) unfreeze() { c.once.Do(func() { close(c.release) }) }

func (c *freezableConn) Close() error {
	c.unfreeze()
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
