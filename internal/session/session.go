// Package session runs one interactive session: the target's PTY stream
// fanned out to every participant, the four-eyes state machine (M6), the
// rules for external participants (M7) and input attribution for recording
// and audit (M9).
//
// The package knows nothing about SSH. A participant is a Terminal (an
// io.Reader of keystrokes, an io.Writer for screen output, and Close); the
// target is an io.Reader of PTY output, an io.Writer for input and a resize
// callback. The gateway adapts SSH channels to these.
//
// # Life cycle
//
// On a four-eyes host a session starts Waiting: the owner sees a waiting-room
// notice and the gateway does not connect to the target (Wait blocks). When
// a qualified second person joins (a Peer who is neither the owner nor
// External) the session goes Live, Wait returns and the gateway calls Attach.
// If the last qualified second person leaves, the session is Paused: output
// keeps flowing to everybody (and to the recorder), but nobody's input
// reaches the target until another qualified person joins (Live again) or the
// grace period expires (Ended). Input is decided when it is read: the one
// chunk (at most keyReadMax bytes) that was read, recorded and handed to
// the target while Live still arrives if the target was slow to take it,
// as do the bytes the target's sshd holds already; what was typed behind
// it is decided on the paused session and discarded. Observers never count as the second person,
// so an observer coming or going never changes the state. Without four-eyes
// (Options.FourEyes false) the session is Live at once with the owner alone.
//
// # Participants
//
//   - Owner: started the session. Their window size is the target's window
//     size, whatever anyone else's terminal is: this is supervision, not pair
//     programming, and the owner is the one doing the work. The owner leaving
//     (their terminal reads EOF or fails) ends the session for everybody.
//   - Peer: may type; input is merged with the owner's and attributed to the
//     person who typed it (Hooks.OnInput).
//   - Observer: read-only; their keystrokes (other than the escape sequence)
//     are discarded. Ctrl-] q makes an observer leave, alone: watching
//     gives no say over the others' work.
//   - External (a flag on a Peer or Observer): never counts as the second
//     person, may join only while a qualified second person is present, and,
//     like everybody, may type only while the session is Live.
//
// Every participant receives the same output from the moment they join; a
// late joiner first gets the recent screen (see screenTail). Every
// participant sees one-line notices ("\r\n[tandem] ...\r\n") when someone
// joins or leaves and when the state changes.
//
// # Escape sequence
//
// The owner and every peer end the session for all with Ctrl-] q (bytes
// 0x1d 'q'): either of the four eyes may stop the work (M6). An observer who
// types it leaves the session alone (OnLeave reason "left", as on a hang-up)
// and cannot end it for the others. Ctrl-] ? shows help, Ctrl-] Ctrl-]
// sends one literal 0x1d. OpenSSH's own
// "~." is left alone (it only closes that participant's connection). Before
// the session is Live the owner's keystrokes are discarded except for the
// escape sequence, so the owner can leave the waiting room.
//
// # Slow participants
//
// Each participant has an output queue bounded by Options.BufferBytes,
// drained to the Terminal by a goroutine that runs only while the queue holds
// something (see outQueue). The target-output reader appends
// to the joiners' queues without ever blocking on them; a joiner whose queue
// would overflow is disconnected (Terminal.Close, Hooks.OnLeave reason
// "too slow") and the others are told. The owner's queue is different: when
// it is full the reader waits for it, so the target is paced to the owner's
// connection exactly as on a direct SSH session. Dropping the owner instead
// would end the session whenever a burst of output (cat of a large file)
// arrives faster over the target's link than the owner's link carries it.
// A stuck owner therefore stalls the output for all until their connection
// fails or someone ends the session (End, and the escape sequence of the
// owner or a peer, still work).
//
// Latency goes to whoever types. Short output (an echo, a prompt) is
// written to an idle owner by the output reader itself, without a hand-off
// to a drain goroutine; joiners who are only watching get their output
// batched within Options.WatchDelay (5 ms), so their writes do not compete
// with the typist's echo for the CPU; a joiner who typed last gets output
// at once.
//
// # Goroutines and hooks
//
// Memory per idle session is mostly goroutine stacks, so a Session keeps
// only the goroutines that must block in a Read: per participant one reader,
// for the target one output reader, and at most one timer goroutine (Waiting
// and Paused only). A participant's drain goroutine exists only while output
// is on its way to them. There is no input writer: a participant's reader
// writes the input it forwards to the target itself, under inMu, so input
// from several typists is never interleaved within a chunk and keeps its
// order; input typed after the session went Live but before Attach waits in
// its reader until Attach provides the target (or the session ends). Drain
// and timer goroutines end when the session ends. Readers block in Read (or
// in a Write to the target) and end when their source is closed: the gateway
// closes a participant's Terminal after Join (or, for the owner, Attach)
// returns, and closes the target after Attach returns — nothing else is
// needed. Nothing that ends the session waits for inMu, so a reader stuck in
// a Write to the target cannot keep Attach from returning.
//
// Hooks are called with the session's lock held, in the order the events
// happened, so audit and recording see a consistent sequence. They must be
// quick, must not call methods of the Session and must not keep the byte
// slices they are passed (the session reuses its read buffers). Quick means
// no wait for a disk or the network: while a hook runs, no participant gets
// output and nobody can join or leave. A hook that must write durably (an
// audit append waits for an fsync) queues the work in order and returns, as
// the gateway does with its audit queue (internal/gateway/auditqueue.go).
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"tandem.dev/tandem/internal/safetext"
)

// Mode is how a participant takes part.
type Mode string

// The participant modes.
const (
	Owner    Mode = "owner"
	Peer     Mode = "peer"
	Observer Mode = "observer"
)

// Participant is one person in a session.
type Participant struct {
	Person   string
	Mode     Mode
	External bool // never the second person (M7)
}

// qualifiedSecond reports whether p counts as the second person of a
// four-eyes session owned by owner.
func (p Participant) qualifiedSecond(owner string) bool {
	return p.Mode == Peer && !p.External && p.Person != owner
}

// Terminal is one participant's connection. Close must unblock a pending
// Read and Write (an SSH channel's Close does).
type Terminal interface {
	io.Reader // keystrokes from the participant
	io.Writer // screen output to the participant (writes may block: a slow client)
	Close() error
}

// Size is a terminal window size in character cells.
type Size struct{ Cols, Rows uint32 }

// Hooks receive what the session does, for recording and audit. Any of them
// may be nil. They run with the session's lock held and must not block: see
// the package documentation for when they are called and what that means.
type Hooks struct {
	// OnInput is called for every chunk of input forwarded to the target,
	// with the person who typed it (recording, audit).
	OnInput func(person string, p []byte)
	// OnOutput sees every chunk of target output once, also while Paused
	// (recording).
	OnOutput func(p []byte)
	// OnState is called on every state change with a reason (audit:
	// session.waiting/live/paused/resumed/end). The first call, from New,
	// has from == "". Paused → Live is a resumption.
	OnState func(from, to State, reason string)
	// OnJoin / OnLeave: audit session.join (person, mode) / session.leave
	// (person, reason). Not called for the owner. When the session ends,
	// OnLeave is called for every remaining participant with reason
	// "session ended", before OnState(…, Ended, …).
	OnJoin  func(p Participant)
	OnLeave func(p Participant, reason string)
}

// Defaults for Options.
const (
	DefaultWaitTimeout = 10 * time.Minute
	DefaultGrace       = 5 * time.Minute
	DefaultBufferBytes = 1 << 20
	DefaultScreenBytes = 16 << 10
	// DefaultWatchDelay is well under what a person watching can tell
	// (a 60 Hz screen shows a frame every 16.7 ms).
	DefaultWatchDelay = 5 * time.Millisecond
)

// Options configure a session. Zero durations and sizes take the defaults.
type Options struct {
	ID    string
	Host  string
	Owner Participant // Mode is forced to Owner
	// Command is the command the owner's client asked the target to run
	// with a terminal ("" for a shell). It starts the moment the session
	// first goes Live, that is as the second person joins, so every
	// joiner's welcome names it: they cannot have seen it typed.
	Command     string
	FourEyes    bool // false: Live at once with the owner alone (test hosts)
	WaitTimeout time.Duration
	Grace       time.Duration
	BufferBytes int // per-participant output queue bound
	// ScreenBytes bounds the output tail replayed to a late joiner (after a
	// clear screen; only output since the last clear-screen is kept).
	ScreenBytes int
	// WatchDelay batches output for joiners who are not typing: their
	// screens are written at most this long after the output arrived,
	// several bytes of an echo in one write. The owner, and a joiner who
	// typed last, get output at once. Default DefaultWatchDelay; negative:
	// no batching.
	WatchDelay time.Duration
	Hooks      Hooks
	Now        func() time.Time
	After      func(d time.Duration) <-chan time.Time // injectable timer; default time.After
}

// Info describes a session for listings (`ssh gw sessions`).
type Info struct {
	ID           string
	Host         string
	Owner        Participant
	State        State
	Participants []Participant // owner first, then joiners in join order
	Started      time.Time
}

// ErrEnded is matched (errors.Is) by every error that reports that the
// session has ended.
var ErrEnded = errors.New("session ended")

// EndError reports why a session ended. Its message is the same line the
// session already showed every participant as a notice.
type EndError struct{ Msg string }

func (e *EndError) Error() string        { return e.Msg }
func (e *EndError) Is(target error) bool { return target == ErrEnded }

// Reasons passed to OnLeave and returned by Join.
const (
	ReasonLeft    = "left"            // the participant's terminal reached EOF
	ReasonLost    = "connection lost" // reading or writing the terminal failed
	ReasonTooSlow = "too slow"        // the output queue overflowed
	ReasonEnded   = "session ended"   // the session ended while they were in it
	noticePrefix  = "\r\n[tandem] "
	noticeSuffix  = "\r\n"
	// Target output is read into a buffer of outReadMin bytes while the
	// session is quiet, growing to outReadMax while output streams (see
	// readBuf); keystrokes, which come a few bytes at a time (a paste
	// rarely exceeds a few KiB per SSH packet), into keyReadMin..keyReadMax.
	outReadMin = 2 << 10
	outReadMax = 32 << 10
	keyReadMin = 512
	keyReadMax = 4 << 10
	// noticeSlack lets a notice exceed the output bound a little: notices
	// are rare and short, and a queue full of output should be dropped for
	// its output, not because a join happened at the wrong moment.
	noticeSlack = 64 << 10
	// commandShown is as much of the session's command as a joiner's
	// welcome shows: a command may be 128 KiB, four times that escaped.
	commandShown = 1 << 10
)

// member is one participant. Once it has left or the session has ended,
// q.done is closed when everything queued for it was written (or it was
// dropped and its queue killed).
type member struct {
	p      Participant
	t      Terminal
	q      *outQueue
	gone   bool   // left or dropped; guarded by Session.mu
	reason string // why it left; guarded by Session.mu
	warned bool   // told once that its input is not forwarded; reset on Live
}

// newMember returns p's member with an idle output queue to t. A failed
// write to t makes them leave, as "connection lost".
func (s *Session) newMember(p Participant, t Terminal) *member {
	m := &member{p: p, t: t}
	m.q = newOutQueue(s.o.BufferBytes, t, func() { s.leave(m, ReasonLost) })
	return m
}

// Session is one interactive session. Its methods are safe for concurrent use.
type Session struct {
	o       Options
	started time.Time

	// inMu orders attribution and writing of input across typists: a
	// reader holds it from the checks in forward until its Write to the
	// target has returned. Only forward takes it.
	inMu sync.Mutex

	mu        sync.Mutex
	state     State
	wasLive   bool
	owner     *member
	members   []*member // joiners, in join order
	tail      screenTail
	size      Size
	resize    func(Size)
	attached  bool
	in        io.Writer // the target's input, once Attach has set it
	endErr    *EndError
	timerStop chan struct{}

	resizeMu sync.Mutex // serialises resize callbacks in order

	liveCh   chan struct{} // closed when first Live or Ended
	attachCh chan struct{} // closed when Attach has set in
	typist   *member       // who sent input last; their output is not batched
	// result receives Attach's outcome once the session has ended; set by
	// Start. byTarget and targetErr say the target's output ended it.
	result    chan error
	byTarget  bool
	targetErr error
	endCh     chan struct{} // closed when Ended
}

// New starts a session for the owner's terminal. On a four-eyes host it
// starts Waiting, shows the owner the waiting-room notice and starts the
// wait timer; otherwise it is Live at once.
func New(o Options, owner Terminal, ownerSize Size) *Session {
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultBufferBytes
	}
	if o.WatchDelay == 0 {
		o.WatchDelay = DefaultWatchDelay
	}
	if o.ScreenBytes <= 0 {
		o.ScreenBytes = DefaultScreenBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	o.Owner.Mode = Owner
	h := &o.Hooks
	if h.OnInput == nil {
		h.OnInput = func(string, []byte) {}
	}
	if h.OnOutput == nil {
		h.OnOutput = func([]byte) {}
	}
	if h.OnState == nil {
		h.OnState = func(State, State, string) {}
	}
	if h.OnJoin == nil {
		h.OnJoin = func(Participant) {}
	}
	if h.OnLeave == nil {
		h.OnLeave = func(Participant, string) {}
	}
	s := &Session{
		o:        o,
		started:  o.Now(),
		size:     ownerSize,
		tail:     screenTail{limit: o.ScreenBytes},
		liveCh:   make(chan struct{}),
		attachCh: make(chan struct{}),
		endCh:    make(chan struct{}),
	}
	s.owner = s.newMember(o.Owner, owner)

	s.mu.Lock()
	if o.FourEyes {
		s.state = Waiting
		h.OnState("", Waiting, "four-eyes host: waiting for a second person")
		s.noticeLocked(s.owner, fmt.Sprintf("%s is a four-eyes host: waiting up to %v for a second person to join session %s (Ctrl-] q aborts)",
			o.Host, o.WaitTimeout, o.ID))
		s.startTimerLocked(o.WaitTimeout, WaitTimeout)
	} else {
		s.state = Live
		s.wasLive = true
		close(s.liveCh)
		h.OnState("", Live, "no four-eyes requirement")
	}
	s.mu.Unlock()

	go s.read(s.owner)
	return s
}

// Wait blocks until the session is Live (nil) or ends first. The error then
// is an *EndError whose message was already shown to the owner as a notice
// (e.g. "nobody joined within 10m0s; session closed"). The gateway calls
// Wait before it connects to the target, so the target sees no login until
// the second person is there. If ctx is done first, a still-waiting session
// ends and ctx's error is returned (the caller should End a session that
// went live at that very moment).
func (s *Session) Wait(ctx context.Context) error {
	select {
	case <-s.liveCh: // checked first: a live session is never ended by a late cancel
	default:
		select {
		case <-s.liveCh:
		case <-ctx.Done():
			s.mu.Lock()
			if s.state == Waiting {
				s.endLocked("session closed: "+ctx.Err().Error(), "cancelled")
			}
			s.mu.Unlock()
			return fmt.Errorf("waiting for a second person: %w", ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.wasLive {
		return s.endErrLocked()
	}
	return nil
}

// Ready is closed when the session is first Live or ends while waiting;
// Wait then returns at once. It lets a caller that serves other events in
// one loop wait for the second person without a goroutine of its own.
func (s *Session) Ready() <-chan struct{} { return s.liveCh }

// Attach connects the target's PTY stream once Wait has succeeded: target
// output is read from out and fanned out, merged input is written to in, and
// resize is called at once with the owner's size and again whenever the
// owner's window changes. Attach returns when the session ends — the target
// closed its output (nil), or the session was ended otherwise (*EndError) —
// after the owner's terminal has been sent every byte of output queued for
// it, so the gateway can relay exit-status next. The caller then closes the
// target, which ends the goroutine reading out and fails a Write to in that
// may still be blocked (participants' input is written from their readers).
func (s *Session) Attach(out io.Reader, in io.Writer, resize func(Size)) error {
	done, err := s.Start(out, in, resize)
	if err != nil {
		return err
	}
	return <-done
}

// Start is Attach without the wait: it returns at once, and the channel
// receives, once, what Attach would have returned. It spares the caller a
// goroutine that only waits (an idle session holds thousands of them on a
// busy gateway). The error is non-nil, and no channel returned, when the
// session cannot be attached: it ended, never went live, or is attached
// already.
func (s *Session) Start(out io.Reader, in io.Writer, resize func(Size)) (<-chan error, error) {
	// resizeMu before mu, as in Resize, so the first size cannot overtake a
	// later window change.
	s.resizeMu.Lock()
	s.mu.Lock()
	switch {
	case s.state == Ended:
		err := s.endErrLocked()
		s.mu.Unlock()
		s.resizeMu.Unlock()
		return nil, err
	case !s.wasLive:
		s.mu.Unlock()
		s.resizeMu.Unlock()
		return nil, errors.New("session: attach before the session is live")
	case s.attached:
		s.mu.Unlock()
		s.resizeMu.Unlock()
		return nil, errors.New("session: already attached")
	}
	s.attached = true
	s.resize = resize
	// Set before anything can end the session, so endLocked reports to it.
	s.result = make(chan error, 1)
	done := s.result
	size := s.size
	s.mu.Unlock()
	resize(size)
	s.resizeMu.Unlock()

	// Input may flow now, after the first size: readers waiting in forward
	// write what they hold, in the order inMu lets them.
	s.mu.Lock()
	s.in = in
	close(s.attachCh)
	s.mu.Unlock()

	go func() { s.targetDone(s.readOutput(out)) }()
	return done, nil
}

// targetDone ends the session when the target's output ends: at EOF the
// target closed the session (Attach's result is nil), otherwise the read
// error is the result. A session that ended before keeps its own result.
func (s *Session) targetDone(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Ended {
		return
	}
	s.byTarget, s.targetErr = true, err
	if err == nil {
		// All output read so far is queued; ending now closes the queues
		// behind it, so it reaches the participants before the notice.
		s.endLocked("the target closed the session", reasonTargetClosed)
	} else {
		s.endLocked("lost the target: "+err.Error(), "target read error")
	}
}

// reportLocked hands the session's outcome to Start's channel once the
// owner's terminal has been sent everything queued for it. It runs when
// the session ends; the goroutine it starts lives only that long.
func (s *Session) reportLocked() {
	if s.result == nil {
		return
	}
	out := s.endErrLocked()
	if s.byTarget {
		out = s.targetErr
	}
	result, ownerDone := s.result, s.owner.q.done
	go func() {
		<-ownerDone
		result <- out
	}()
}

// readOutput copies target output to every participant's queue; it returns
// nil at EOF.
func (s *Session) readOutput(out io.Reader) error {
	rb := newReadBuf(outReadMin, outReadMax)
	for {
		buf := rb.next()
		n, err := out.Read(buf)
		if n > 0 {
			s.fanOut(buf[:n]) // copies: hooks, queues and tail keep no reference
		}
		rb.used(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read target output: %w", err)
		}
	}
}

func (s *Session) fanOut(p []byte) {
	// The owner paces the target, as on a direct connection: a large burst
	// (cat of a big file) must not cost the owner their session just because
	// the target's link is faster than theirs. Everybody else is dropped
	// when they fall behind (below), so only the owner can slow the stream.
	s.owner.q.waitRoom(len(p))
	s.mu.Lock()
	if s.state == Ended {
		s.mu.Unlock()
		return
	}
	s.o.Hooks.OnOutput(p)
	s.tail.add(p)
	var slow []*member
	for _, m := range s.members {
		// A joiner who is only watching gets output batched (WatchDelay),
		// so their writes do not compete with the typist's echo.
		delay := s.o.WatchDelay
		if m == s.typist {
			delay = 0
		}
		if !m.q.pushAfter(p, 0, delay) {
			slow = append(slow, m)
		}
	}
	for _, m := range slow {
		s.dropLocked(m, ReasonTooSlow)
	}
	// An echo or a prompt goes to an idle owner from this goroutine,
	// without a hand-off to a drainer. Bulk output is queued, so reading
	// the target overlaps writing to the owner.
	inline := false
	if len(p) > inlineMax {
		s.owner.q.push(p, -1)
	} else {
		inline = s.owner.q.claim(p)
	}
	s.mu.Unlock()
	if inline {
		s.owner.q.writeClaimed(p)
	}
}

// inlineMax is the largest output chunk written to the owner without the
// queue: keystroke echoes and short lines.
const inlineMax = 512

// Join adds a participant and returns when they leave or are dropped, or
// when the session ends, with the reason (ReasonLeft, ReasonLost,
// ReasonTooSlow, ReasonEnded). It refuses, with an error meant for the
// joiner's terminal, to add anyone to an ended session, the owner to their
// own session, an invalid mode, or an External while no qualified second
// person is present. The caller closes t after Join returns.
func (s *Session) Join(p Participant, t Terminal) (reason string, err error) {
	s.mu.Lock()
	switch {
	case s.state == Ended:
		s.mu.Unlock()
		return "", &EndError{Msg: fmt.Sprintf("session %s has ended", s.o.ID)}
	case p.Person == s.o.Owner.Person:
		s.mu.Unlock()
		return "", fmt.Errorf("you own session %s; the second person must be somebody else", s.o.ID)
	case p.Mode != Peer && p.Mode != Observer:
		s.mu.Unlock()
		return "", fmt.Errorf("cannot join session %s as %q: choose peer or observer", s.o.ID, p.Mode)
	case p.External && s.qualifiedCountLocked() == 0:
		s.mu.Unlock()
		return "", fmt.Errorf("session %s has no authorised second person present; external participants may join only under supervision", s.o.ID)
	}
	m := s.newMember(p, t)
	// The screen first, then the welcome line, then live output: all queued
	// under the lock, so nothing is lost or repeated in between.
	m.q.push(s.tail.replay(), -1)
	s.members = append(s.members, m)
	s.o.Hooks.OnJoin(p)
	ext := ""
	if p.External {
		ext = " (external)"
	}
	running := ""
	if c := s.o.Command; len(c) > commandShown {
		running = fmt.Sprintf("; running the command %s… (%d bytes, in full in the audit log)", c[:commandShown], len(c))
	} else if c != "" {
		running = "; running the command " + c
	}
	s.noticeLocked(m, fmt.Sprintf("joined session %s on %s as %s%s; owner %s%s; the owner's window size %dx%d applies; %s",
		s.o.ID, s.o.Host, p.Mode, ext, s.o.Owner.Person, running, s.size.Cols, s.size.Rows, escapeHelp(p)))
	msg := fmt.Sprintf("%s joined as %s%s", p.Person, p.Mode, ext)
	if s.o.FourEyes && p.qualifiedSecond(s.o.Owner.Person) && s.qualifiedCountLocked() == 1 {
		switch s.state {
		case Waiting:
			msg += "; the session is live"
		case Paused:
			msg += "; input resumed"
		}
		s.eventLocked(SecondJoined, p.Person+" joined")
	}
	s.broadcastLocked(msg, m)
	if s.state == Live {
		s.noticeLocked(m, "the session is live")
	} else {
		s.noticeLocked(m, "the session is "+string(s.state)+"; input is discarded until a second person is present")
	}
	s.mu.Unlock()

	go s.read(m)
	<-m.q.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.reason, nil
}

// Resize records a window change. Only the owner's size takes effect (it is
// passed to the attached target); others are ignored.
func (s *Session) Resize(person string, sz Size) {
	s.resizeMu.Lock() // held across the callback so window changes keep their order
	defer s.resizeMu.Unlock()
	s.mu.Lock()
	if person != s.o.Owner.Person || s.state == Ended {
		s.mu.Unlock()
		return
	}
	s.size = sz
	resize := s.resize
	s.mu.Unlock()
	if resize != nil {
		resize(sz)
	}
}

// End ends the session for everybody, with a notice "session ended by BY"
// (and the reason, if any) to every participant. Ending an ended session
// does nothing.
func (s *Session) End(by, reason string) {
	msg := "session ended"
	if by != "" {
		msg += " by " + by
	}
	if reason != "" {
		msg += " (" + reason + ")"
	}
	r := reason
	if r == "" {
		r = "ended by " + by
	}
	s.end(msg, r)
}

// State returns the current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// TakesInput reports whether input may reach the target now, that is
// whether the session is Live. Keystrokes are held to this in forward;
// the gateway asks it before it passes on what else a client sends to
// act on the target (a signal, a break, which the target's terminal
// reads as NUL or an interrupt), so that those, too, never reach it while
// the session lacks its second person.
func (s *Session) TakesInput() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == Live
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.endCh }

// Participants returns the owner and the current joiners, in join order.
func (s *Session) Participants() []Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.participantsLocked()
}

// Info describes the session for listings.
func (s *Session) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Info{
		ID:           s.o.ID,
		Host:         s.o.Host,
		Owner:        s.o.Owner,
		State:        s.state,
		Participants: s.participantsLocked(),
		Started:      s.started,
	}
}

func (s *Session) participantsLocked() []Participant {
	ps := []Participant{s.o.Owner}
	for _, m := range s.members {
		ps = append(ps, m.p)
	}
	return ps
}

func (s *Session) allLocked() []*member {
	return append([]*member{s.owner}, s.members...)
}

func (s *Session) qualifiedCountLocked() int {
	n := 0
	for _, m := range s.members {
		if m.p.qualifiedSecond(s.o.Owner.Person) {
			n++
		}
	}
	return n
}

// read is a participant's keystroke loop. It runs until the terminal's Read
// fails (EOF included).
func (s *Session) read(m *member) {
	var f InputFilter
	rb := newReadBuf(keyReadMin, keyReadMax)
	for {
		buf := rb.next()
		n, err := m.t.Read(buf)
		if n > 0 {
			fwd, act := f.Filter(buf[:n])
			if f.pending && !s.TakesInput() {
				f.dropHeld() // typed while input is discarded
			}
			if len(fwd) > 0 {
				s.forward(m, fwd)
			}
			switch act {
			case ActEnd:
				if m.p.Mode == Observer {
					// The filter discards all further input, and the
					// gateway closes the terminal once Join returns.
					s.observerLeave(m)
					return
				}
				s.End(m.p.Person, "")
			case ActHelp:
				s.mu.Lock()
				s.noticeLocked(m, escapeHelp(m.p))
				s.mu.Unlock()
			}
		}
		rb.used(n) // forward is done with the bytes; queues copied them
		if err != nil {
			reason := ReasonLost
			if err == io.EOF {
				reason = ReasonLeft
			}
			s.leave(m, reason)
			return
		}
	}
}

// forward passes a participant's input on to the target if the session is
// Live and they may type; otherwise it is dropped, with a one-time notice.
// It writes to the target itself, holding inMu, so chunks from different
// typists are never interleaved and reach the target in the order they were
// attributed (OnInput, just before the Write). Input that arrives while the
// session is Live but the gateway has not attached the target yet waits
// here, in order, until Attach or the end of the session.
func (s *Session) forward(m *member, p []byte) {
	s.inMu.Lock()
	defer s.inMu.Unlock()
	for {
		s.mu.Lock()
		if s.state == Ended || m.gone {
			s.mu.Unlock()
			return
		}
		if m.p.Mode == Observer {
			if !m.warned {
				m.warned = true
				s.noticeLocked(m, "you are observing; your input is not sent ("+ObserverEscapeHelp+")")
			}
			s.mu.Unlock()
			return
		}
		if s.state != Live {
			if !m.warned {
				m.warned = true
				s.noticeLocked(m, "input is discarded until a second person is present (Ctrl-] q ends the session)")
			}
			s.mu.Unlock()
			return
		}
		in := s.in
		if in == nil {
			// Live, but the gateway is still connecting to the target. The
			// checks above are repeated once it is there: the session may
			// have been paused or ended meanwhile.
			s.mu.Unlock()
			select {
			case <-s.attachCh:
			case <-s.endCh:
			}
			continue
		}
		s.o.Hooks.OnInput(m.p.Person, p)
		s.typist = m
		s.mu.Unlock()
		// Without mu: the Write may block (a target not reading its input),
		// and ending the session, which needs mu, must still work; the
		// gateway then closes the target, which fails this Write.
		if _, err := in.Write(p); err != nil {
			s.end("the target stopped taking input", "target write error")
		}
		return
	}
}

// leave handles a participant going away by themselves.
func (s *Session) leave(m *member, reason string) {
	if m == s.owner {
		msg := "the owner " + m.p.Person + " left"
		if reason != ReasonLeft {
			msg += " (" + reason + ")"
		}
		s.end(msg+"; session closed", "owner "+reason)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.gone || s.state == Ended {
		return
	}
	m.q.kill()
	s.removeLocked(m, reason)
}

// observerLeave is an observer's Ctrl-] q: they leave, and only they. The
// notice still reaches them (the queue is closed, not killed), then Join
// returns ReasonLeft; the others see them leave as on a hang-up.
func (s *Session) observerLeave(m *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.gone || s.state == Ended {
		return
	}
	s.noticeLocked(m, "you left the session; observers cannot end it for the others")
	if m.gone { // the notice did not fit: dropped as too slow
		return
	}
	m.q.close()
	s.removeLocked(m, ReasonLeft)
}

// dropLocked disconnects a participant that fell too far behind.
func (s *Session) dropLocked(m *member, reason string) {
	if m.gone {
		return
	}
	m.q.kill()
	// Close unblocks a stuck Write of the drainer; it must not be called with
	// the lock held, as it may take a moment on a real connection.
	go m.t.Close()
	if m == s.owner {
		m.gone = true
		s.endLocked("the owner "+m.p.Person+" was disconnected ("+reason+"); session closed", "owner "+reason)
		return
	}
	s.removeLocked(m, reason)
}

// removeLocked takes a joiner out, tells the others and pauses the session
// if they were the last qualified second person.
func (s *Session) removeLocked(m *member, reason string) {
	m.gone = true
	m.reason = reason
	for i, x := range s.members {
		if x == m {
			s.members = append(s.members[:i:i], s.members[i+1:]...)
			break
		}
	}
	s.o.Hooks.OnLeave(m.p, reason)
	msg := m.p.Person + " left"
	if reason != ReasonLeft {
		msg += " (" + reason + ")"
	}
	if s.o.FourEyes && m.p.qualifiedSecond(s.o.Owner.Person) && s.qualifiedCountLocked() == 0 && s.state == Live {
		msg += fmt.Sprintf("; input paused until a second person joins (grace %v)", s.o.Grace)
		s.eventLocked(SecondLeft, m.p.Person+" "+reason)
	}
	s.broadcastLocked(msg, nil)
}

// eventLocked applies e and does what the new state needs: timers, hooks,
// waking Wait. It reports whether the state changed.
func (s *Session) eventLocked(e Event, reason string) bool {
	from := s.state
	to, changed := Next(from, e)
	if !changed {
		return false
	}
	s.state = to
	s.stopTimerLocked()
	switch to {
	case Live:
		if !s.wasLive {
			s.wasLive = true
			close(s.liveCh)
		}
		for _, m := range s.allLocked() {
			m.warned = false
		}
	case Paused:
		s.startTimerLocked(s.o.Grace, GraceExpired)
	case Ended:
		if !s.wasLive {
			close(s.liveCh)
		}
		close(s.endCh)
	}
	s.o.Hooks.OnState(from, to, reason)
	return true
}

// end ends the session: msg is the notice everybody sees (and the EndError
// message), reason goes to OnState.
func (s *Session) end(msg, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endLocked(msg, reason)
}

// reasonTargetClosed is the end reason when the target ended the session
// itself (the shell exited).
const reasonTargetClosed = "target closed"

// endLocked reports whether it ended the session (false: already ended).
func (s *Session) endLocked(msg, reason string) bool {
	if s.state == Ended {
		return false
	}
	s.endErr = &EndError{Msg: msg}
	for _, m := range s.allLocked() {
		// The owner sees their own shell end; telling them so as well
		// would only add a line to every scripted `ssh -t host cmd`.
		if !m.gone && !(m == s.owner && reason == reasonTargetClosed) {
			m.q.push(notice(msg), -1) // the last words; the queue closes next
		}
	}
	for _, m := range s.members {
		m.gone = true
		m.reason = ReasonEnded
		s.o.Hooks.OnLeave(m.p, ReasonEnded)
	}
	// Whatever is queued still reaches everybody; then the drainers stop
	// and the queues' done channels close.
	for _, m := range s.allLocked() {
		m.q.close()
	}
	s.members = nil
	s.eventLocked(EndEvent, reason)
	s.reportLocked()
	return true
}

// endErrLocked returns the end error as an error (nil while not ended).
func (s *Session) endErrLocked() error {
	if s.endErr == nil {
		return nil
	}
	return s.endErr
}

func (s *Session) startTimerLocked(d time.Duration, e Event) {
	s.stopTimerLocked()
	stop := make(chan struct{})
	s.timerStop = stop
	ch := s.o.After(d)
	go func() {
		select {
		case <-ch:
		case <-stop:
			return
		case <-s.endCh:
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.timerStop != stop {
			return // superseded while we were waking up
		}
		s.timerStop = nil
		switch e {
		case WaitTimeout:
			s.endLocked(fmt.Sprintf("nobody joined within %v; session closed", d), "wait timeout")
		case GraceExpired:
			s.endLocked(fmt.Sprintf("no second person rejoined within %v; session closed", d), "grace expired")
		}
	}()
}

func (s *Session) stopTimerLocked() {
	if s.timerStop != nil {
		close(s.timerStop)
		s.timerStop = nil
	}
}

// notice frames msg for a participant's terminal. Notices carry person
// ids and reasons that people typed (a lock reason), so the text is shown
// with its control and format characters escaped.
func notice(msg string) []byte {
	return []byte(noticePrefix + safetext.Line(msg) + noticeSuffix)
}

// noticeLocked queues a notice for one participant. A notice that does not
// fit is dropped with the participant, like any other output.
func (s *Session) noticeLocked(m *member, msg string) {
	if m.gone {
		return
	}
	if !m.q.push(notice(msg), noticeSlack) {
		s.dropLocked(m, ReasonTooSlow)
	}
}

// broadcastLocked queues a notice for every participant except skip.
func (s *Session) broadcastLocked(msg string, skip *member) {
	for _, m := range s.allLocked() {
		if m != skip {
			s.noticeLocked(m, msg)
		}
	}
}

// Remove takes person out of the session from outside (a lock, a reload
// that took away their right to join): every participant with that person
// id other than the owner is disconnected with reason, and the others are
// told; if that leaves no qualified second person, the session pauses. It
// never waits on a participant's connection. It reports whether anybody
// was removed. To take the owner out, end the session.
func (s *Session) Remove(person, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := false
	for _, m := range append([]*member(nil), s.members...) {
		if m.p.Person == person && !m.gone {
			s.dropLocked(m, reason)
			removed = true
		}
	}
	return removed
}

// OwnerFlushed is closed once the session has ended and everything queued
// for the owner (the last output, the closing notice) has been written to
// their Terminal, or their Terminal failed. The gateway waits for it,
// bounded, before it sends the owner's exit status and EOF: data after EOF
// would be lost, and an EOF sent while a write is in progress races with
// it.
func (s *Session) OwnerFlushed() <-chan struct{} { return s.owner.q.done }
