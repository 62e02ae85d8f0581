package demotarget

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// maxEnv bounds the number of "env" requests a session keeps, so a peer
// cannot grow memory without limit.
const maxEnv = 256

// session is one "session" channel: at most one program (exec, shell or
// subsystem) plus the requests that shape it (pty-req, env, window-change,
// signal).
type session struct {
	srv  *Server
	conn *ssh.ServerConn
	ch   ssh.Channel

	env []string
	pty *ptyRequest // set by pty-req before the program starts

	mu      sync.Mutex
	started bool
	proc    *os.Process // nil for sftp or until started
	exited  bool        // proc has been waited for; its pid may be reused
	ptmx    *os.File    // the PTY master while the program runs under a PTY
	next    *pending    // started, not yet wired to the channel
}

// serveSession accepts the channel and handles its requests until the
// channel is closed. Closing the channel (by either side) or cancelling
// ctx kills a program that is still running.
func (s *Server) serveSession(ctx context.Context, conn *ssh.ServerConn, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ss := &session{srv: s, conn: conn, ch: ch}
	for req := range reqs {
		ok := ss.handle(ctx, req)
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		if ok && isStart(req.Type) {
			ss.run(ctx)
		}
	}
}

func isStart(reqType string) bool {
	return reqType == "exec" || reqType == "shell" || reqType == "subsystem"
}

// pending holds what start prepared and run hands to the goroutines. The
// reply to the request is sent in between, so no output precedes it.
type pending struct {
	cmd     *exec.Cmd
	stdinW  *os.File // nil under a PTY
	stdoutR *os.File // the PTY master under a PTY
	stderrR *os.File // nil under a PTY
	sftp    *sftp.Server
}

// handle acts on one channel request and reports whether it succeeded.
func (ss *session) handle(ctx context.Context, req *ssh.Request) bool {
	switch req.Type {
	case "pty-req":
		p, err := parsePtyRequest(req.Payload)
		if err != nil || !ss.permits("permit-pty") {
			return false
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.started {
			return false
		}
		ss.pty = &p
		return true
	case "env":
		name, value, err := parseEnv(req.Payload)
		if err != nil || len(ss.env) >= maxEnv {
			return false
		}
		ss.env = append(ss.env, name+"="+value)
		return true
	case "window-change":
		w, err := parseWindowChange(req.Payload)
		if err != nil {
			return false
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.ptmx == nil {
			return false
		}
		return pty.Setsize(ss.ptmx, w.winsize()) == nil
	case "signal":
		name, err := parseSignal(req.Payload)
		if err != nil {
			return false
		}
		sig, ok := signalByName(name)
		if !ok {
			return false
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.proc == nil || ss.exited {
			return false
		}
		// The program leads its own process group (setsid).
		return syscall.Kill(-ss.proc.Pid, sig) == nil
	case "exec":
		cmd, err := parseString(req.Payload)
		if err != nil {
			return false
		}
		return ss.start(ctx, cmd, false, "")
	case "shell":
		if len(req.Payload) != 0 {
			return false
		}
		return ss.start(ctx, "", true, "")
	case "subsystem":
		name, err := parseString(req.Payload)
		if err != nil || name != "sftp" {
			return false
		}
		return ss.start(ctx, "", false, name)
	default:
		// x11-req, auth-agent-req@openssh.com, xon-xoff, unknown: refused.
		return false
	}
}

// permits reports whether the certificate carries the extension, as sshd
// requires e.g. permit-pty before it allocates a terminal.
func (ss *session) permits(ext string) bool {
	_, ok := ss.conn.Permissions.Extensions[ext]
	return ok
}

// start prepares and starts the program; run then wires it to the channel.
// It is split in two so that the reply to exec/shell/subsystem is sent
// before any output.
func (ss *session) start(ctx context.Context, command string, shell bool, subsystem string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return false
	}
	p, err := ss.prepare(ctx, command, shell, subsystem)
	if err != nil {
		ss.srv.log.Warn("demo target: cannot start session program", "user", ss.conn.User(), "err", err.Error())
		return false
	}
	ss.started = true
	ss.next = p
	return true
}

func (ss *session) prepare(ctx context.Context, command string, shell bool, subsystem string) (*pending, error) {
	dir := ss.srv.opts.Dir
	// force-command in the certificate replaces whatever the client asked
	// for, as in sshd; the original request is passed on.
	if force, ok := ss.conn.Permissions.CriticalOptions["force-command"]; ok {
		orig := command
		if subsystem != "" {
			orig = subsystem
		}
		ss.env = append(ss.env, "SSH_ORIGINAL_COMMAND="+orig)
		command, shell, subsystem = force, false, ""
	}
	if subsystem == "sftp" {
		srv, err := sftp.NewServer(ss.ch, sftp.WithServerWorkingDirectory(dir))
		if err != nil {
			return nil, fmt.Errorf("sftp server: %w", err)
		}
		return &pending{sftp: srv}, nil
	}

	var cmd *exec.Cmd
	if shell {
		cmd = exec.CommandContext(ctx, ss.srv.shell, "-i")
	} else {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", command)
	}
	cmd.Dir = dir
	cmd.Env = ss.environ()
	// Kill the whole session, not only the shell, so that pipes and the
	// PTY close and the copy goroutines end. exec calls Cancel only before
	// Wait has reaped the program, as killSession requires.
	cmd.Cancel = func() error { return killSession(cmd.Process.Pid) }

	if ss.pty != nil {
		ptmx, err := pty.StartWithAttrs(cmd, ss.pty.winsize(), &syscall.SysProcAttr{Setsid: true, Setctty: true})
		if err != nil {
			return nil, fmt.Errorf("start %s under a pty: %w", cmd.Path, err)
		}
		m, err := pollable(ptmx)
		if err != nil {
			_ = killSession(cmd.Process.Pid)
			_ = cmd.Wait()
			return nil, err
		}
		ss.proc, ss.ptmx = cmd.Process, m
		return &pending{cmd: cmd, stdoutR: m}, nil
	}

	// Like sshd, every session program leads a session (and process group)
	// of its own, so signals and teardown reach all of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var files []*os.File // every pipe end, closed on failure
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	// The child holds its ends now; ours would keep EOF from arriving.
	_ = inR.Close()
	_ = outW.Close()
	_ = errW.Close()
	ss.proc = cmd.Process
	return &pending{cmd: cmd, stdinW: inW, stdoutR: outR, stderrR: errR}, nil
}

// environ is a clean environment like sshd builds, rather than the demo
// process's own (which may hold secrets), plus what the client asked for.
func (ss *session) environ() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	user := ss.conn.User()
	env := []string{
		"PATH=" + path,
		"HOME=" + ss.srv.opts.Dir,
		"USER=" + user,
		"LOGNAME=" + user,
		"SHELL=" + ss.srv.shell,
		"TANDEM_DEMO_TARGET=1",
	}
	if lang := os.Getenv("LANG"); lang != "" {
		env = append(env, "LANG="+lang)
	}
	env = append(env, ss.env...)
	if ss.pty != nil && ss.pty.Term != "" {
		env = append(env, "TERM="+ss.pty.Term)
	}
	return env
}

// pollable returns a non-blocking, poller-managed copy of the PTY master
// and closes the original. creack/pty leaves the master in blocking mode,
// where Close cannot interrupt a pending Read; a goroutine reading it could
// then outlive Close. A descriptor that is already non-blocking when handed
// to os.NewFile stays so, even when pty.Setsize calls Fd on it.
func pollable(ptmx *os.File) (*os.File, error) {
	defer ptmx.Close()
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(int(ptmx.Fd()))
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "ptmx"), nil
}

// run wires the started program to the channel in the background and
// tears the channel down in the order RFC 4254 §6.10 and real clients
// expect: all output, then exit-status (or exit-signal), then EOF, then close.
func (ss *session) run(ctx context.Context) {
	ss.mu.Lock()
	p := ss.next
	ss.next = nil
	ss.mu.Unlock()
	if p == nil {
		return
	}
	wg := &ss.srv.wg
	if p.sftp != nil {
		wg.Go(func() {
			status := uint32(0)
			if err := p.sftp.Serve(); err != nil {
				status = 1
			}
			ss.finish(ssh.Marshal(exitStatusMsg{Status: status}), "exit-status")
		})
		return
	}

	// closeOut closes the output side. Under a PTY it is also the file
	// that window-change resizes, so the close is serialised with that:
	// an ioctl on a closed (and perhaps reused) descriptor number would
	// hit the wrong file.
	closeOut := func() {
		ss.mu.Lock()
		if ss.ptmx == p.stdoutR {
			ss.ptmx = nil
		}
		_ = p.stdoutR.Close()
		ss.mu.Unlock()
	}

	if p.stdinW != nil {
		wg.Go(func() {
			_, _ = io.Copy(p.stdinW, ss.ch)
			_ = p.stdinW.Close() // the client's EOF becomes the program's EOF
		})
	} else {
		wg.Go(func() {
			// Under a PTY the client's EOF is not passed on, as in sshd.
			_, _ = io.Copy(p.stdoutR, ss.ch)
		})
	}

	copied := make(chan struct{})
	// A shutdown, or a peer that closed the channel, must not leave the
	// copy goroutines blocked on a program that keeps its output open:
	// closing our read ends lets them return (the program is killed too).
	wg.Go(func() {
		select {
		case <-ctx.Done():
			closeOut()
			if p.stderrR != nil {
				_ = p.stderrR.Close()
			}
		case <-copied:
		}
	})

	wg.Go(func() {
		var copies sync.WaitGroup
		copies.Go(func() {
			_, _ = io.Copy(ss.ch, p.stdoutR)
			// A program still writing gets EPIPE/SIGPIPE, as under sshd.
			closeOut()
		})
		if p.stderrR != nil {
			copies.Go(func() {
				_, _ = io.Copy(ss.ch.Stderr(), p.stderrR)
				_ = p.stderrR.Close()
			})
		}
		copies.Wait()
		close(copied)
		_ = p.cmd.Wait()

		ss.mu.Lock()
		ss.exited = true
		ss.mu.Unlock()
		if p.stdinW != nil {
			_ = p.stdinW.Close()
		}

		reqType, payload := exitReport(p.cmd.ProcessState)
		ss.finish(payload, reqType)
	})
}

// finish sends the exit report, then EOF, then closes the channel. Errors
// are ignored: the peer may already be gone.
func (ss *session) finish(payload []byte, reqType string) {
	if reqType != "" {
		_, _ = ss.ch.SendRequest(reqType, false, payload)
	}
	_ = ss.ch.CloseWrite()
	_ = ss.ch.Close()
}

// exitReport builds the exit-status or exit-signal request for a finished
// process; an empty type means there is nothing to report.
func exitReport(ps *os.ProcessState) (string, []byte) {
	if ps == nil {
		return "", nil
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return "exit-signal", ssh.Marshal(exitSignalMsg{
			Signal:     signalName(ws.Signal()),
			CoreDumped: ws.CoreDump(),
		})
	}
	return "exit-status", ssh.Marshal(exitStatusMsg{Status: uint32(ps.ExitCode())})
}
