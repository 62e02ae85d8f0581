package gateway

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/sftpproxy"
)

// serveSFTP answers the client's SFTP subsystem itself and forwards each
// operation to the target, so that every open, read, write, rename and
// remove is recorded with paths, sizes and SHA-256 (M9).
func (c *clientConn) serveSFTP(ctx context.Context, l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, client *ssh.Client) (relay.Result, error) {
	target, closeTarget, err := dialTargetSFTP(client)
	if err != nil {
		return relay.Result{}, fmt.Errorf("%s refused the sftp subsystem: %v", l.host.Name, err)
	}
	defer closeTarget()
	_ = ss.start.Reply(true, nil)
	go ssh.DiscardRequests(reqs)
	readOnly := c.st.engine.SFTPReadOnly(c.person, l.host, l.login)
	// Serve closes the client channel when it is done; the exit status
	// must go out first, or OpenSSH reports the transfer as failed.
	// Errors of single operations reach the client as SFTP status codes;
	// the exit status reports what ended the session as a whole.
	end := &sftpEnd{ch: l.ch, failed: func() bool { return l.rec.Err() != nil || ctx.Err() != nil }}
	err = sftpproxy.Serve(ctx, end, target, l.rec.Op, sftpproxy.Options{ReadOnly: readOnly, Now: c.srv.now})
	_ = end.Close()
	status := end.status
	// The SFTP protocol stream in each direction: what session.end reports
	// as bytes_in and bytes_out, like for any other session. The files'
	// own sizes and hashes are in the recording, per operation.
	return relay.Result{ExitStatus: &status, Counts: relay.Counts{In: end.in.Load(), Out: end.out.Load()}}, err
}

// dialTargetSFTP opens the target's sftp subsystem on a session of its
// own and starts the SFTP client on it (sftpproxy.NewTargetClient, which
// takes the target's read and write limits). closeTarget ends the client
// and the session.
func dialTargetSFTP(client *ssh.Client) (target *sftp.Client, closeTarget func(), err error) {
	s, err := client.NewSession()
	if err != nil {
		return nil, nil, err
	}
	// The subsystem's stderr is not the person's business and must not
	// fill the session's buffer: x/crypto copies it away.
	s.Stderr = io.Discard
	wr, err := s.StdinPipe()
	if err == nil {
		var rd io.Reader
		if rd, err = s.StdoutPipe(); err == nil {
			if err = s.RequestSubsystem("sftp"); err == nil {
				if target, err = sftpproxy.NewTargetClient(rd, wr); err == nil {
					return target, func() { _ = target.Close(); _ = s.Close() }, nil
				}
			}
		}
	}
	_ = s.Close()
	return nil, nil, err
}

// sftpEnd is the client channel of an SFTP session whose Close sends the
// exit status, EOF and CLOSE in that order, once.
type sftpEnd struct {
	ch      ssh.Channel
	failed  func() bool // the recording failed: the session did not end well
	once    sync.Once
	status  uint32
	in, out atomic.Int64 // bytes from and to the client
}

func (e *sftpEnd) Read(p []byte) (int, error) {
	n, err := e.ch.Read(p)
	e.in.Add(int64(n))
	return n, err
}

func (e *sftpEnd) Write(p []byte) (int, error) {
	n, err := e.ch.Write(p)
	e.out.Add(int64(n))
	return n, err
}

func (e *sftpEnd) Close() error {
	e.once.Do(func() {
		if e.failed() {
			e.status = 1
		}
		endChannel(e.ch, e.status)
	})
	return nil
}
