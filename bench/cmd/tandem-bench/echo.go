package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// echoResult holds (b): one-byte round trips per path.
type echoResult struct {
	Direct, Tandem []time.Duration
}

// ptySession is a real OpenSSH client running `ssh -tt HOST …` on a local
// PTY, with the remote side echoing every byte back.
type ptySession struct {
	cmd    *exec.Cmd
	master *os.File
	bytes  chan byte // bytes read from the PTY, in order
	done   chan struct{}
}

// echoReady is what the remote side prints once its terminal is raw.
const echoReady = "ECHO-READY"

// openEchoSession starts ssh on a fresh PTY and waits until the remote
// `cat` runs on a raw terminal without echo, so each byte sent comes back
// exactly once, from cat, and not from a line discipline. ssh itself puts
// the local PTY into raw mode before it prints any remote output, so once
// the marker arrives local echo is off too.
func openEchoSession(ctx context.Context, e *env, host string) (*ptySession, error) {
	cmd := exec.Command("ssh", "-F", e.sshCfg, "-tt", host, "stty raw -echo; echo "+echoReady+"; exec cat")
	// pty.Start makes the child a session leader (Setsid) with the PTY as
	// its controlling terminal; its PID is then its process group id too.
	master, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		return nil, fmt.Errorf("start ssh on a pty: %w", err)
	}
	s := &ptySession{cmd: cmd, master: master, bytes: make(chan byte, 1<<16), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			for _, b := range buf[:n] {
				select {
				case s.bytes <- b:
				default: // nobody reads that much; drop rather than block
				}
			}
			if err != nil {
				return // EIO once ssh has ended and the PTY is closed
			}
		}
	}()
	var seen []byte
	deadline := time.After(30 * time.Second)
	for !bytes.Contains(seen, []byte(echoReady)) {
		select {
		case b := <-s.bytes:
			seen = append(seen, b)
		case <-s.done:
			s.close()
			return nil, fmt.Errorf("ssh -tt %s ended before the remote side was ready: %q", host, seen)
		case <-deadline:
			s.close()
			return nil, fmt.Errorf("ssh -tt %s: no %q after 30s: %q", host, echoReady, seen)
		case <-ctx.Done():
			s.close()
			return nil, ctx.Err()
		}
	}
	// Drop the rest of the marker line.
	settle := time.After(200 * time.Millisecond)
	for {
		select {
		case <-s.bytes:
			continue
		case <-settle:
		}
		break
	}
	return s, nil
}

// roundTrip sends one byte and returns the time until it is read back.
func (s *ptySession) roundTrip(b byte) (time.Duration, error) {
	start := time.Now()
	if _, err := s.master.Write([]byte{b}); err != nil {
		return 0, fmt.Errorf("write to pty: %w", err)
	}
	select {
	case got := <-s.bytes:
		d := time.Since(start)
		if got != b {
			return d, fmt.Errorf("sent %q, got %q back", b, got)
		}
		return d, nil
	case <-s.done:
		return 0, errors.New("ssh ended")
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

// runEcho measures (b): n one-byte round trips on a direct session and on
// one through the gateway (user-name mode), interleaved byte by byte with
// the order swapped every time, after warm rounds that are not counted.
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

	for i := range warm + n {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b := byte('a' + i%26)
		first, second := direct, tandem
		if i%2 == 1 {
			first, second = tandem, direct
		}
		d1, err := first.roundTrip(b)
		if err != nil {
			return res, fmt.Errorf("round trip %d: %w", i, err)
		}
		d2, err := second.roundTrip(b)
		if err != nil {
			return res, fmt.Errorf("round trip %d: %w", i, err)
		}
		if i < warm {
			continue
		}
		dd, dt := d1, d2
		if first == tandem {
			dd, dt = d2, d1
		}
		res.Direct = append(res.Direct, dd)
		res.Tandem = append(res.Tandem, dt)
	}
	logf("  (b) %d round trips per path done", n)
	return res, nil
}
