package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

// echoResult holds (b): one-byte round trips per path. Joined is the
// owner's side of a four-eyes session with a second person joined; it is
// empty if that session could not be set up.
type echoResult struct {
	Direct, Tandem, Joined []time.Duration
	// The same with a Go client (x/crypto/ssh) instead of OpenSSH's,
	// direct and through the gateway with the owner alone, and through a
	// bare x/crypto relay (barerelay.go): the floor of any relay built on
	// that library here.
	GoDirect, GoTandem, GoBare []time.Duration
}

// ptySession is a real OpenSSH client running `ssh -tt …` on a local PTY;
// for the measured sessions the remote side echoes every byte back.
type ptySession struct {
	name   string
	cmd    *exec.Cmd
	master *os.File
	bytes  chan byte // bytes read from the PTY, in order; dropped when full
	done   chan struct{}
}

// echoReady is what the remote side prints once its terminal is raw.
const echoReady = "ECHO-READY"

// echoCommand puts the remote terminal into raw mode without echo, says
// so, and then echoes every byte through cat.
const echoCommand = "stty raw -echo; echo " + echoReady + "; exec cat"

// joinHintRE finds the session id in the notice a four-eyes session
// prints to its owner while it waits: "ask a colleague to run:  ssh -t
// [-p PORT] GW join ID". The line end is part of the match so the id is
// complete.
var joinHintRE = regexp.MustCompile(`ask a colleague to run:[^\r\n]* join ([0-9a-f]+)\r?\n`)

// parseJoinHint returns the session id of a waiting-room notice.
func parseJoinHint(out []byte) (string, bool) {
	m := joinHintRE.FindSubmatch(out)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// startPTY starts `ssh -F CONFIG ARGS…` on a fresh PTY and keeps reading
// the PTY into s.bytes until ssh ends. A PTY nobody reads would block
// ssh's writes, so bytes beyond the channel's capacity are dropped.
func startPTY(e *env, name string, args ...string) (*ptySession, error) {
	cmd := exec.Command("ssh", append([]string{"-F", e.sshCfg}, args...)...)
	// pty.Start makes the child a session leader (Setsid) with the PTY as
	// its controlling terminal; its PID is then its process group id too.
	master, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		return nil, fmt.Errorf("start ssh on a pty: %w", err)
	}
	s := &ptySession{name: name, cmd: cmd, master: master, bytes: make(chan byte, 1<<16), done: make(chan struct{})}
	go pump(master, s.bytes, s.done)
	return s, nil
}

// pump copies what r yields into bytes, byte by byte, until r fails (EIO
// on a PTY whose ssh has ended, EOF on a channel), then closes done. A
// reader nobody drains would block the client's writes, so bytes beyond
// the channel's capacity are dropped.
func pump(r io.Reader, bytes chan<- byte, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			select {
			case bytes <- b:
			default:
			}
		}
		if err != nil {
			return
		}
	}
}

// waitOutput reads the session's output until ok(all output so far)
// holds, ssh ends, the timeout passes or ctx is cancelled, and returns the
// output read.
func (s *ptySession) waitOutput(ctx context.Context, what string, timeout time.Duration, ok func([]byte) bool) ([]byte, error) {
	var seen []byte
	deadline := time.After(timeout)
	for !ok(seen) {
		select {
		case b := <-s.bytes:
			seen = append(seen, b)
		case <-s.done:
			seen = append(seen, s.pending()...)
			if ok(seen) {
				return seen, nil
			}
			return seen, fmt.Errorf("%s: ssh ended before %s: %q", s.name, what, seen)
		case <-deadline:
			return seen, fmt.Errorf("%s: no %s after %v: %q", s.name, what, timeout, seen)
		case <-ctx.Done():
			return seen, ctx.Err()
		}
	}
	return seen, nil
}

// pending returns the bytes already read and not yet taken, without
// waiting; used for error messages.
func (s *ptySession) pending() []byte {
	var out []byte
	for range cap(s.bytes) {
		select {
		case b := <-s.bytes:
			out = append(out, b)
		default:
			return out
		}
	}
	return out
}

// settle drops what arrives within 200 ms: the rest of the marker line.
func (s *ptySession) settle() { drainFor(s.bytes, 200*time.Millisecond) }

// drainFor drops what arrives on bytes for d.
func drainFor(bytes <-chan byte, d time.Duration) {
	t := time.After(d)
	for {
		select {
		case <-bytes:
		case <-t:
			return
		}
	}
}

// waitEchoReady waits until the remote `cat` runs on a raw terminal
// without echo, so each byte sent comes back exactly once, from cat, and
// not from a line discipline. ssh itself puts the local PTY into raw mode
// before it prints any remote output, so once the marker arrives local
// echo is off too.
func (s *ptySession) waitEchoReady(ctx context.Context) error {
	_, err := s.waitOutput(ctx, echoReady, 30*time.Second, func(seen []byte) bool {
		return bytes.Contains(seen, []byte(echoReady))
	})
	if err != nil {
		return err
	}
	s.settle()
	return nil
}

// openEchoSession starts `ssh -tt HOST 'stty raw -echo; …; exec cat'` and
// waits until the remote side echoes.
func openEchoSession(ctx context.Context, e *env, host string) (*ptySession, error) {
	s, err := startPTY(e, "ssh -tt "+host, "-tt", host, echoCommand)
	if err != nil {
		return nil, err
	}
	if err := s.waitEchoReady(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openJoinedSession opens the echo session on the four-eyes host as the
// owner, reads the session id from the waiting-room notice, joins it as
// the second person (`ssh -tt GW join ID` on a PTY of its own), and waits
// until the target, dialled only after the join, echoes at the owner. The
// joiner's PTY is read all along by startPTY's goroutine, as a person's
// terminal would be: every byte the owner gets back goes to it too.
func openJoinedSession(ctx context.Context, e *env) (owner, joiner *ptySession, err error) {
	owner, err = startPTY(e, "owner ssh -tt "+hostTandemProd, "-tt", hostTandemProd, echoCommand)
	if err != nil {
		return nil, nil, err
	}
	seen, err := owner.waitOutput(ctx, "waiting-room notice with the session id", 30*time.Second, func(seen []byte) bool {
		_, ok := parseJoinHint(seen)
		return ok
	})
	if err != nil {
		owner.close()
		return nil, nil, err
	}
	id, _ := parseJoinHint(seen)
	joiner, err = startPTY(e, personJoiner+" ssh -tt "+hostJoiner+" join "+id, "-tt", hostJoiner, "join", id)
	if err != nil {
		owner.close()
		return nil, nil, err
	}
	if err := owner.waitEchoReady(ctx); err != nil {
		// What the joiner's terminal showed says why a join failed.
		err = fmt.Errorf("%w; joiner's terminal: %q", err, joiner.pending())
		joiner.close()
		owner.close()
		return nil, nil, err
	}
	return owner, joiner, nil
}

// roundTrip sends one byte and returns the time until it is read back.
func (s *ptySession) roundTrip(b byte) (time.Duration, error) {
	return echoOnce(s.master, s.bytes, s.done, b)
}

// echoOnce writes b to w and returns the time until it arrives on bytes.
func echoOnce(w io.Writer, bytes <-chan byte, done <-chan struct{}, b byte) (time.Duration, error) {
	start := time.Now()
	if _, err := w.Write([]byte{b}); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	select {
	case got := <-bytes:
		d := time.Since(start)
		if got != b {
			return d, fmt.Errorf("sent %q, got %q back", b, got)
		}
		return d, nil
	case <-done:
		return 0, errors.New("the client ended")
	case <-time.After(10 * time.Second):
		return 0, errors.New("no echo within 10s")
	}
}

// close ends ssh (SIGKILL to its process group, by its PID) and the PTY.
func (s *ptySession) close() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
	_ = s.master.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// echoPath is one measured session of (b).
type echoPath struct {
	name string
	s    interface {
		roundTrip(byte) (time.Duration, error)
	}
	out *[]time.Duration
}

// runEcho measures (b): n one-byte round trips on a direct session, on one
// through the gateway (user-name mode) with its owner alone, and on one
// through the gateway with a second person joined, interleaved byte by
// byte with the order rotated every round, after warm rounds that are not
// counted. If the joined session cannot be set up, the other two are still
// measured and the error is returned with their results.
func runEcho(ctx context.Context, e *env, n, warm int, logf func(string, ...any)) (echoResult, error) {
	var res echoResult
	direct, err := openEchoSession(ctx, e, hostDirect)
	if err != nil {
		return res, fmt.Errorf("direct: %w", err)
	}
	defer direct.close()
	tandem, err := openEchoSession(ctx, e, hostTandem)
	if err != nil {
		return res, fmt.Errorf("tandem: %w", err)
	}
	defer tandem.close()
	paths := []echoPath{{"direct", direct, &res.Direct}, {"tandem", tandem, &res.Tandem}}
	goDirect, err := openGoEcho(ctx, e, "Go client, direct", e.targetPort, "root", nil)
	if err != nil {
		return res, err
	}
	defer goDirect.close()
	goTandem, err := openGoEcho(ctx, e, "Go client, tandem", e.gwPort, "root%"+gwHostTest, nil)
	if err != nil {
		return res, err
	}
	defer goTandem.close()
	relay, err := startBareRelay(ctx, e)
	if err != nil {
		return res, err
	}
	defer relay.close()
	goBare, err := openGoEcho(ctx, e, "Go client, bare x/crypto relay", relay.port, "root", ssh.FixedHostKey(relay.hostKey))
	if err != nil {
		return res, err
	}
	defer goBare.close()
	paths = append(paths, echoPath{"Go client, direct", goDirect, &res.GoDirect}, echoPath{"Go client, tandem", goTandem, &res.GoTandem},
		echoPath{"Go client, bare x/crypto relay", goBare, &res.GoBare})
	owner, joiner, joinErr := openJoinedSession(ctx, e)
	if joinErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		joinErr = fmt.Errorf("second person joined: %w", joinErr)
		logf("  (b) %v; measuring without it", joinErr)
	} else {
		// Deferred in this order, the joiner's ssh ends before the owner's.
		defer owner.close()
		defer joiner.close()
		paths = append(paths, echoPath{"tandem, second person joined", owner, &res.Joined})
	}

	for i := range warm + n {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b := byte('a' + i%26)
		for k := range paths {
			p := paths[(i+k)%len(paths)]
			d, err := p.s.roundTrip(b)
			if err != nil {
				return res, fmt.Errorf("%s, round trip %d: %w", p.name, i, err)
			}
			if i >= warm {
				*p.out = append(*p.out, d)
			}
		}
	}
	logf("  (b) %d round trips per path done (%d paths)", n, len(paths))
	return res, joinErr
}
