package gateway

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/upstream"
)

// sharedLoop drives an interactive session from the owner's channel
// handler, in that one goroutine: it serves the owner's channel requests,
// watches the recording and the audit queue, waits for the session to go live, connects to the
// target (in a goroutine that lives only as long as the dial), attaches
// it, and serves the target's requests until the session is over.
//
// Why one loop: a gateway holds thousands of idle sessions, and each
// goroutine that only waits costs a stack (4–8 KiB). Separate goroutines
// for the owner's requests, the target's requests and the wait for the
// session's end were three of those per session.
type sharedLoop struct {
	c    *clientConn
	live *liveSession // an interactive one: live.sess is set
	up   *upstreamHolder
	ss   *sessionStart

	reqs      <-chan *ssh.Request // the owner's channel requests; nil once closed
	closed    chan struct{}       // closed when reqs is
	recFailed <-chan struct{}     // the recording failed
	auditFull <-chan struct{}     // the session's audit events pile up (auditqueue.go)

	client *upstream.Conn // set once connected

	// The target side, once connected: the session channel, its requests,
	// the connection's channels and global requests (nil when not there
	// or closed), the exit status seen so far, and how Attach ended.
	upCh      ssh.Channel
	upReqs    <-chan *ssh.Request
	chans     <-chan ssh.NewChannel
	greqs     <-chan *ssh.Request
	res       exitResult
	attachErr error
	finished  bool // the session's part with the target is over
}

// dialResult is what the dialling goroutine hands back.
type dialResult struct {
	client *upstream.Conn
	ch     ssh.Channel
	reqs   <-chan *ssh.Request
	err    error
}

// run returns the target's exit status or signal, or the error that
// ended the session before or while connecting.
func (l *sharedLoop) run(ctx context.Context) (exitResult, error) {
	ready, ctxDone := l.live.sess.Ready(), ctx.Done()
	var dialed chan dialResult
	var attached <-chan error
	for !l.finished || l.upReqs != nil {
		select {
		case r, ok := <-l.reqs:
			l.ownerRequest(r, ok)
		case <-l.recFailed:
			l.recFailed = nil
			l.live.end(l.live.recordingFailed())
		case <-l.auditFull:
			l.auditFull = nil
			l.c.srv.log.Error("audit log too slow: session ended", "session", l.live.id)
			l.live.end("the audit log is not keeping up, so the session cannot go on")
		case <-ctxDone:
			// The gateway stops: a session still waiting ends now; a live
			// one ends as its connection closes.
			ctxDone = nil
			_ = l.live.sess.Wait(ctx)
		case <-ready:
			ready = nil
			if err := l.live.sess.Wait(ctx); err != nil {
				return exitResult{}, nil // ended while waiting; everybody was told why
			}
			dialed = make(chan dialResult, 1)
			go func() { dialed <- l.connect(ctx) }()
		case d := <-dialed:
			dialed = nil
			if d.err != nil {
				if d.client != nil {
					d.client.Close()
				}
				return exitResult{}, d.err
			}
			attached = l.attach(d)
		case err := <-attached:
			attached = nil
			l.detach(err)
		case r, ok := <-l.upReqs:
			l.targetRequest(r, ok)
		case nch, ok := <-l.chans:
			if !ok {
				l.chans = nil // closed with the connection; upReqs follows
			}
			l.client.Refuse(nch, nil)
		case r, ok := <-l.greqs:
			if !ok {
				l.greqs = nil
			}
			l.client.Refuse(nil, r)
		}
	}
	return l.outcome(), nil
}

// attach takes the connected target and starts the session on it; the
// channel it returns reports the session's end.
func (l *sharedLoop) attach(d dialResult) <-chan error {
	l.client, l.upCh, l.upReqs = d.client, d.ch, d.reqs
	l.chans, l.greqs = d.client.Chans, d.client.Reqs
	l.up.set(l.upCh)
	upCh := l.upCh
	attached, err := l.live.sess.Start(upCh, upCh, func(sz session.Size) {
		_, _ = upCh.SendRequest("window-change", false, winchPayload(sz))
	})
	if err != nil {
		l.detach(err)
		return attached
	}
	// The session has a terminal: the target's sshd and the client's ssh
	// now send with Nagle's algorithm off, so the immediate
	// acknowledgements would only add system calls to every keystroke.
	// Not for a jump connection's outer leg: `ssh -J` forwards the inner
	// connection over a channel without a terminal, and keeps Nagle's
	// algorithm on there.
	l.client.Interactive()
	if l.c.outer == nil {
		l.c.ack.Interactive()
	}
	return attached
}

// detach hangs up on the target once the session is over; its requests
// end once it answers, and run returns then.
func (l *sharedLoop) detach(attachErr error) {
	l.attachErr, l.finished = attachErr, true
	l.up.set(nil)
	l.upCh.Close()
}

// targetRequest keeps the target's exit status or signal.
func (l *sharedLoop) targetRequest(r *ssh.Request, ok bool) {
	if !ok {
		l.upReqs = nil
		return
	}
	switch r.Type {
	case "exit-status":
		l.res.status = r.Payload
	case "exit-signal":
		l.res.signal = r.Payload
	}
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// outcome is the session's result once the target is done.
func (l *sharedLoop) outcome() exitResult {
	if l.attachErr != nil {
		// Ended by a participant, a lock or the grace period, and already
		// announced. The target's answer to our hang-up (an exit-signal HUP)
		// is not the session's outcome: the owner's client exits 1.
		return exitResult{}
	}
	return l.res
}

// connect dials the target and starts the PTY session on it. It runs in
// its own goroutine, so the owner's requests are served meanwhile.
func (l *sharedLoop) connect(ctx context.Context) dialResult {
	t := l.live.target()
	client, err := l.c.st.dialer.DialConn(ctx, t)
	if err != nil {
		return dialResult{err: err}
	}
	fail := func(err error) dialResult { return dialResult{client: client, err: err} }
	if !l.live.setUpstream(client) {
		return fail(fmt.Errorf("session ended before it started"))
	}
	upCh, upReqs, err := client.OpenChannel("session", nil)
	if err != nil {
		return fail(fmt.Errorf("%s refused the session: %v", t.Host.Name, err))
	}
	size := l.up.currentSize()
	if ok, err := upCh.SendRequest("pty-req", true, withSize(l.ss.pty, size)); err != nil || !ok {
		return fail(fmt.Errorf("%s refused a terminal", t.Host.Name))
	}
	for _, r := range l.ss.env {
		_, _ = upCh.SendRequest(r.Type, false, r.Payload)
	}
	if ok, err := upCh.SendRequest(l.ss.start.Type, true, l.ss.start.Payload); err != nil || !ok {
		return fail(fmt.Errorf("%s refused to start the %s", t.Host.Name, l.ss.start.Type))
	}
	return dialResult{client: client, ch: upCh, reqs: upReqs}
}

// ownerRequest serves one of the owner's channel requests: window changes
// resize the target (the owner's size wins); signals and breaks reach the
// target once it is connected, and only while the session is live. The requests end when the owner's channel closes: the
// owner has left.
func (l *sharedLoop) ownerRequest(r *ssh.Request, open bool) {
	if !open {
		l.reqs = nil
		close(l.closed)
		return
	}
	ok := false
	switch r.Type {
	case "window-change":
		if sz, valid := parseWinch(r.Payload); valid {
			l.up.setSize(sz)
			l.live.sess.Resize(l.live.owner, sz)
			ok = true
		}
	case "signal", "break":
		// Input by other means: refused, like keystrokes discarded,
		// while the session is not live (M6).
		ok = l.live.sess.TakesInput() && l.up.send(r.Type, r.Payload)
	}
	if r.WantReply {
		_ = r.Reply(ok, nil)
	}
}

// release closes the target connection and hands the owner's remaining
// requests, if the channel is still open, to a goroutine that refuses them
// until the channel closes (the caller closes it right after run), so a
// client's late window change cannot stall its connection.
func (l *sharedLoop) release() {
	if l.client != nil {
		l.client.Close()
	}
	if l.reqs == nil {
		return
	}
	reqs, closed := l.reqs, l.closed
	l.reqs = nil
	go func() {
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		close(closed)
	}()
}

// upstreamHolder lets the owner's request loop reach the target once it
// is connected.
type upstreamHolder struct {
	rec *record.Writer // the session's recording, for resizes

	mu   sync.Mutex
	ch   ssh.Channel
	size session.Size // the owner's latest window size
}

func (u *upstreamHolder) setSize(sz session.Size) {
	u.mu.Lock()
	u.size = sz
	u.mu.Unlock()
	_ = u.rec.Resize(int(sz.Cols), int(sz.Rows))
}

func (u *upstreamHolder) currentSize() session.Size {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.size
}

func (u *upstreamHolder) set(ch ssh.Channel) {
	u.mu.Lock()
	u.ch = ch
	u.mu.Unlock()
}

func (u *upstreamHolder) send(name string, payload []byte) bool {
	u.mu.Lock()
	ch := u.ch
	u.mu.Unlock()
	if ch == nil {
		return false
	}
	ok, err := ch.SendRequest(name, false, payload)
	return ok || err == nil
}
