package gateway

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/sftpproxy"
)

// serveSFTP relays the client's SFTP subsystem to the target's packet by
// packet, so that every open, read, write, rename and remove is recorded
// with paths, sizes and SHA-256 (M9).
func (c *clientConn) serveSFTP(ctx context.Context, l *liveSession, reqs <-chan *ssh.Request, ss *sessionStart, client *ssh.Client) (relay.Result, error) {
	sub, err := dialTargetSFTP(client)
	var target *sftpproxy.Target
	if err == nil {
		target, err = sftpproxy.Handshake(sub)
	}
	if err != nil {
		return relay.Result{}, fmt.Errorf("%s refused the sftp subsystem: %v", l.host.Name, err)
	}
	defer target.Close()
	_ = ss.start.Reply(true, nil)
	go ssh.DiscardRequests(reqs)
	// Serve closes the client channel when it is done; the exit status
	// must go out first, or OpenSSH reports the transfer as failed.
	// Errors of single operations reach the client as SFTP status codes;
	// the exit status reports what ended the session as a whole.
	end := &sftpEnd{ch: l.ch, failed: func() bool { return l.rec.Err() != nil || ctx.Err() != nil }}
	err = sftpproxy.Serve(ctx, end, target, l.rec.Op, sftpproxy.Options{ReadOnly: l.readOnly, Now: c.srv.now})
	_ = end.Close()
	status := end.status
	// The SFTP protocol stream in each direction: what session.end reports
	// as bytes_in and bytes_out, like for any other session. The files'
	// own sizes and hashes are in the recording, per operation.
	return relay.Result{ExitStatus: &status, Counts: relay.Counts{In: end.in.Load(), Out: end.out.Load()}}, err
}

// dialTargetSFTP opens the target's sftp subsystem on a session of its
// own; sftpproxy speaks SFTP on it directly.
func dialTargetSFTP(client *ssh.Client) (*targetSFTP, error) {
	s, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	// The subsystem's stderr is not the person's business and must not
	// fill the session's buffer: x/crypto copies it away.
	s.Stderr = io.Discard
	wr, err := s.StdinPipe()
	if err == nil {
		var rd io.Reader
		if rd, err = s.StdoutPipe(); err == nil {
			if err = s.RequestSubsystem("sftp"); err == nil {
				return &targetSFTP{Reader: rd, WriteCloser: wr, s: s, conn: client}, nil
			}
		}
	}
	_ = s.Close()
	return nil, err
}

// targetSFTP is the target's sftp subsystem as Serve sees it: reads from
// its stdout, writes to its stdin. Close ends the session and the
// connection to the target (which serves this session alone): closing
// the session only sends a message, and a target that does not answer it
// would leave Serve's reader blocked.
type targetSFTP struct {
	io.Reader
	io.WriteCloser
	s    *ssh.Session
	conn *ssh.Client
	once sync.Once
}

func (t *targetSFTP) Close() error {
	t.once.Do(func() {
		_ = t.WriteCloser.Close()
		_ = t.s.Close()
		_ = t.conn.Close()
	})
	return nil
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
