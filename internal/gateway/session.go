package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/relay"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/upstream"
)

// A session, whatever its kind (exec, sftp, interactive, forward), goes
// through the same steps, in this order:
//
//	begin     session.start (forward.start) in the audit log, then the recording
//	register  into the registry, where enforcement, `sessions` and `join` find it
//	run       the kind's own part: dial the target and relay
//	finish    the recording closes, session.end (forward.end), out of the registry
//
// begin fails closed: without the start event or without a recording the
// session is refused. Only what differs between the kinds lives in
// exec.go, sftp.go, interactive.go and forward.go.

// endGrace bounds how long a session ended from outside may take to say
// goodbye (its notice, exit status and CLOSE) before the gateway closes the
// client's whole connection instead. A client that does not read its
// channel cannot make enforcement wait longer than this (M5).
const endGrace = 300 * time.Millisecond

// Why begin refused a session. The messages are the ones a session
// channel's client reads; a forward says it in its channel rejection.
var (
	errNoAudit     = errors.New("the audit log is unavailable, so no session can start; tell the gateway's operators")
	errNoRecording = errors.New("the session cannot be recorded, so it cannot start; tell the gateway's operators")
	// errNoRecordingStorage: the shared recording storage is down, which
	// the person can wait out.
	errNoRecordingStorage = errors.New("the shared recording storage (PostgreSQL) is unavailable, so the session cannot be recorded and cannot start; try again when it is back")
)

// liveSession is one session from its start event to its end event. In the
// registry meanwhile, it is what the gateway may have to end from outside
// (a lock, a revoked or expired request, a reload that took the grant
// away, a failed recording or audit log) and what `ssh gw sessions` and
// `join` look up; it keeps what a later decision needs to ask the policy
// again.
type liveSession struct {
	id    string
	owner string       // the person who started it
	keyFP string       // the key the owner authenticated with
	host  *config.Host // as configured when it started
	login string

	action policy.Action
	pty    bool
	// forwardTo is the destination of a port forward ("host:port").
	forwardTo string
	// readOnly: an sftp session whose login only sftp_read_only rules
	// grant; decided with the session, so a reload can tell a read-write
	// session that may no longer write.
	readOnly bool
	// fourEyes: the session started with a second person required.
	fourEyes bool
	conn     *clientConn // the connection the session runs on
	ch       ssh.Channel // the client's channel; set before register
	eol      string

	// request is the access request the session runs under, if any, and
	// when it runs out.
	request      string
	requestUntil time.Time

	// startEv is the session's first audit event; tgt is what its later
	// events say (session.end, forward.end, a shared session's state and
	// joins). begin gives both the id.
	startEv audit.Event
	tgt     audit.Target
	rec     *record.Writer // set by begin
	kind    record.Kind

	// For interactive sessions: the participants and state (others may
	// join), and the queue their audit events go through; nil otherwise.
	sess   *session.Session
	events *auditQueue

	mu       sync.Mutex
	upstream io.Closer // the target connection, set once connected
	ended    bool
	reason   string            // why it was ended from outside
	joiner   map[string]string // person → fingerprint of the key they joined with
}

func newSessionID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// begin writes the session's start event and starts its recording. Both
// fail closed: without the start event the session is refused
// (errNoAudit); without a recording it is refused (errNoRecording) and
// its end event says why. The caller tells the client.
func (l *liveSession) begin(ctx context.Context, meta record.Meta) error {
	srv := l.conn.srv
	l.id = newSessionID()
	l.startEv.Session, l.tgt.Session = l.id, l.id
	if err := audit.OrRefuse(ctx, srv.audit, l.startEv); err != nil {
		srv.failed(ctx, "audit log unavailable: session refused", err)
		return errNoAudit
	}
	meta.SessionID, meta.Tenant, meta.Host, meta.Login, meta.Owner = l.id, l.host.Tenant, l.host.Name, l.login, l.owner
	if meta.Started.IsZero() {
		meta.Started = srv.now()
	}
	rec, err := srv.startRecording(meta)
	if err != nil {
		srv.log.Error("recording unavailable: session refused", "err", err)
		srv.record(l.endEvent(outcome{err: err}, nil))
		if errors.Is(err, record.ErrUnavailable) {
			return errNoRecordingStorage
		}
		return errNoRecording
	}
	l.rec, l.kind = rec, meta.Kind
	srv.metrics.SessionStarted(string(meta.Kind))
	return nil
}

// finish ends the session's record: the recording closes, and the end
// event carries o, why it was ended from outside (unless o says why
// already) and the recording's fingerprints. Then the session leaves the
// registry.
func (l *liveSession) finish(o outcome) {
	srv := l.conn.srv
	sum, recErr := l.rec.Close()
	srv.metrics.SessionEnded(string(l.kind), sum.Bytes)
	if o.reason == "" {
		o.reason = l.endReason()
	}
	end := l.endEvent(o, recordingSummary(l.kind, l.rec, sum, recErr))
	if l.events == nil {
		srv.record(end)
	} else {
		// session.end goes through the queue too, so it follows the
		// session's other events; the handler waits for them a bounded time.
		l.events.add(end)
		if !l.events.wait(auditDrainWait) {
			srv.log.Error("audit log slow: the session's last events are still queued", "session", l.id)
		}
	}
	srv.live.remove(l.id)
}

// outcome is how a session ended, for its end event.
type outcome struct {
	res    *relay.Result // byte counts and exit; nil when nothing was relayed (an interactive session, or none)
	err    error         // what failed
	reason string        // why it ended, in its participants' words or from outside
}

// endEvent is the session's end event: forward.end for a forward,
// session.end otherwise, with the recording's fingerprints sum (nil when
// there is no recording).
func (l *liveSession) endEvent(o outcome, sum *audit.RecordingSummary) audit.Event {
	var errText string
	if o.err != nil {
		errText = o.err.Error()
	}
	if l.action == policy.ActionForward {
		e := audit.ForwardEndEvent{Target: l.tgt, Destination: l.forwardTo, Reason: o.reason, Error: errText, RecordingSummary: sum}
		if o.res != nil {
			e.Traffic = &audit.Traffic{In: o.res.In, Out: o.res.Out}
		}
		return e.Event()
	}
	e := audit.SessionEndEvent{Target: l.tgt, Reason: o.reason, Error: errText, RecordingSummary: sum}
	if r := o.res; r != nil {
		e.ExecTraffic = &audit.ExecTraffic{In: r.In, Out: r.Out, Err: r.Err}
		switch {
		case o.err != nil: // the error says how it ended
		case r.ExitStatus != nil:
			e.ExitStatus = r.ExitStatus
		default:
			e.ExitSignal = r.ExitSignal
		}
	}
	return e.Event()
}

// target is what the upstream dialer needs for this session.
func (l *liveSession) target() upstream.Target {
	return upstream.Target{Host: l.host, Login: l.login, SessionID: l.id, Person: l.owner, PTY: l.pty,
		Forward: l.action == policy.ActionForward}
}

// watchRecording ends the session if its recording fails (fail closed):
// an unrecorded session must not go on. The watch ends when stop is
// called. (Interactive sessions watch in their own loop instead.)
func (l *liveSession) watchRecording() (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-l.rec.Failed():
			l.end(l.recordingFailed())
		case <-done:
		}
	}()
	return func() { close(done) }
}

// recordingFailed says why a session whose recording failed is ended.
func (l *liveSession) recordingFailed() string {
	if errors.Is(l.rec.Err(), record.ErrUnavailable) {
		return "the session recording failed (the shared recording storage is unavailable), so the session cannot go on"
	}
	return "the session recording failed, so the session cannot go on"
}

// end ends the session and returns at once: it never waits on the client
// (M5: nothing a client does can hold back enforcement). An interactive
// session ends for its participants now (their notice is queued) and its
// target connection closes. An exec, sftp or forward session says why on
// the client's stderr first and then closes its target connection and
// channel, from a short-lived goroutine, so the notice goes out before the
// relay winds the channel down. If that goroutine has not finished within
// endGrace (the client does not read, or its TCP window is shut), the
// target connection and the client's whole connection are closed, which
// ends the goroutine too.
//
// It reports whether it ended the session (false: it had ended already).
func (l *liveSession) end(msg string) bool {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false
	}
	l.ended, l.reason = true, msg
	up := l.upstream
	l.mu.Unlock()
	closeUp := func() {
		if up != nil {
			up.Close()
		}
	}
	if l.sess != nil {
		// Queues the notice for every participant; never blocks on one.
		l.sess.End("", msg)
		closeUp()
	}
	said := make(chan struct{})
	go func() {
		defer close(said)
		if l.sess == nil {
			fmt.Fprintf(l.ch.Stderr(), "%standem: %s%s", l.eol, safetext.Line(msg), l.eol)
			closeUp()
		} else {
			// The notice is queued, not written: closing the channel at
			// once would race it away. Wait until the owner's queue is
			// through, but less than endGrace, after which the transport
			// is closed anyway.
			t := time.NewTimer(endGrace * 2 / 3)
			select {
			case <-l.sess.OwnerFlushed():
			case <-t.C:
			}
			t.Stop()
		}
		_ = l.ch.Close()
	}()
	time.AfterFunc(endGrace, func() {
		select {
		case <-said:
		default:
			closeUp()
			l.conn.closeTransport()
		}
	})
	return true
}

// endReason is why the session was ended from outside; "" when it was not.
func (l *liveSession) endReason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

// setUpstream hands the session its target connection; false means the
// session was ended meanwhile and the caller must not go on.
func (l *liveSession) setUpstream(c io.Closer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.upstream = c
	return !l.ended
}

// involves reports whether person owns or takes part in the session.
func (l *liveSession) involves(person string) bool {
	if l.owner == person {
		return true
	}
	if l.sess != nil {
		for _, p := range l.sess.Participants() {
			if p.Person == person {
				return true
			}
		}
	}
	return false
}

// oust takes person out of the session: the owner's session ends; a
// joiner is removed and the session goes on (paused, if they were the
// second person). Never blocks on a client.
func (l *liveSession) oust(person, msg string) {
	if l.owner == person || l.sess == nil {
		l.end(msg)
		return
	}
	l.sess.Remove(person, msg)
}

// noteJoiner remembers the key a joiner authenticated with, so that a
// reload can decide their place in the session again (FIDO2, lock).
func (l *liveSession) noteJoiner(person, keyFP string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.joiner == nil {
		l.joiner = map[string]string{}
	}
	l.joiner[person] = keyFP
}

func (l *liveSession) joinerKeyFP(person string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.joiner[person]
}
