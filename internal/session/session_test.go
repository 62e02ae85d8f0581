package session

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var (
	bob   = Participant{Person: "bob", Mode: Peer}
	carol = Participant{Person: "carol", Mode: Peer}
	olga  = Participant{Person: "olga", Mode: Observer}
	eve   = Participant{Person: "eve", Mode: Peer, External: true}
)

func waitErr(t *testing.T, s *Session) chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Wait(context.Background()) }()
	return ch
}

func recv(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-t.Context().Done():
		t.Fatal("test ended")
	}
	return nil
}

// goLive makes a four-eyes session live with bob and attaches the target.
func goLive(t *testing.T, h *harness) *joiner {
	t.Helper()
	w := waitErr(t, h.s)
	b := h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.attach()
	if sz := <-h.sizes; sz != (Size{80, 24}) {
		t.Fatalf("first resize %v, want owner's 80x24", sz)
	}
	return b
}

func TestSecondJoinEndsWaiting(t *testing.T) {
	h := newHarness(t, true, nil)
	if r := h.timers.next(t); r.d != DefaultWaitTimeout {
		t.Fatalf("wait timer %v, want %v", r.d, DefaultWaitTimeout)
	}
	h.owner.screen.waitFor(t, "[tandem] db1 is a four-eyes host: waiting up to 10m0s")
	if h.s.State() != Waiting {
		t.Fatalf("state %s", h.s.State())
	}
	w := waitErr(t, h.s)
	h.joinLive(bob)
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	h.owner.screen.waitFor(t, "\r\n[tandem] bob joined as peer; the session is live\r\n")
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
	states, joins, _ := h.rec.snapshot()
	if !slices.Equal(states, []string{">waiting", "waiting>live"}) || !slices.Equal(joins, []string{"bob:peer"}) {
		t.Fatalf("states %v joins %v", states, joins)
	}
	info := h.s.Info()
	if info.ID != "s1" || info.Host != "db1" || info.Owner.Mode != Owner || info.State != Live || len(info.Participants) != 2 || info.Started.IsZero() {
		t.Fatalf("info %+v", info)
	}
}

func TestWaitTimeout(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	h.timers.next(t).ch <- h.s.o.Now()
	err := recv(t, w)
	const msg = "nobody joined within 10m0s; session closed"
	if err == nil || err.Error() != msg || !errors.Is(err, ErrEnded) {
		t.Fatalf("Wait = %v, want %q", err, msg)
	}
	h.owner.screen.waitFor(t, "[tandem] "+msg)
	if _, err := h.s.Join(bob, newTerm(true)); err == nil {
		t.Fatal("joined an ended session")
	}
}

func TestWaitContextEnds(t *testing.T) {
	h := newHarness(t, true, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v", err)
	}
	if h.s.State() != Ended {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestNoFourEyesLiveAtOnce(t *testing.T) {
	h := newHarness(t, false, nil)
	if err := h.s.Wait(context.Background()); err != nil || h.s.State() != Live {
		t.Fatalf("Wait = %v, state %s", err, h.s.State())
	}
	h.attach()
	<-h.sizes
	h.owner.typeKeys(t, "id\r")
	h.in.waitFor(t, "id\r")
	// Nobody joining or leaving ever pauses it.
	o := h.joinLive(olga)
	o.term.hangUp()
	o.wait(t)
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestOwnerInputBeforeLiveDropped(t *testing.T) {
	h := newHarness(t, true, nil)
	// The Ctrl-] is held until the next byte says what it is; that byte
	// comes once the session is live, and makes it plain input, typed
	// while the session waited: it is discarded too.
	h.owner.typeKeys(t, "secret\x1d")
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")
	goLive(t, h)
	h.owner.typeKeys(t, "ls\r")
	h.in.waitFor(t, "ls\r")
	if got := h.in.String(); got != "ls\r" {
		t.Fatalf("target got %q", got)
	}
	if strings.Contains(h.rec.inputOf("alice"), "secret") {
		t.Fatal("dropped input was recorded as typed")
	}
}

func TestInputMergedAndAttributed(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	o := h.joinLive(olga)
	h.owner.typeKeys(t, "A")
	h.in.waitFor(t, "A")
	b.term.typeKeys(t, "B")
	h.in.waitFor(t, "AB")
	o.term.typeKeys(t, "zzz")
	o.term.screen.waitFor(t, "you are observing; your input is not sent")
	h.owner.typeKeys(t, "C")
	h.in.waitFor(t, "ABC")
	if got := h.in.String(); got != "ABC" {
		t.Fatalf("target got %q", got)
	}
	if h.rec.inputOf("alice") != "AC" || h.rec.inputOf("bob") != "B" || h.rec.inputOf("olga") != "" {
		t.Fatalf("attribution alice=%q bob=%q olga=%q", h.rec.inputOf("alice"), h.rec.inputOf("bob"), h.rec.inputOf("olga"))
	}
	// Output reaches everybody and the recorder once.
	h.output("hello\r\n")
	for _, c := range []*capture{h.owner.screen, b.term.screen, o.term.screen} {
		c.waitFor(t, "hello\r\n")
	}
	h.rec.mu.Lock()
	rec := h.rec.output.String()
	h.rec.mu.Unlock()
	if rec != "hello\r\n" {
		t.Fatalf("recorded output %q", rec)
	}
}

func TestPauseAndResume(t *testing.T) {
	h := newHarness(t, true, nil)
	h.timers.next(t) // wait timer
	b := goLive(t, h)
	b.term.hangUp()
	if r := b.wait(t); r.err != nil || r.reason != ReasonLeft {
		t.Fatalf("Join = %+v", r)
	}
	h.owner.screen.waitFor(t, "[tandem] bob left; input paused until a second person joins (grace 5m0s)\r\n")
	if h.s.State() != Paused {
		t.Fatalf("state %s", h.s.State())
	}
	if r := h.timers.next(t); r.d != DefaultGrace {
		t.Fatalf("grace timer %v", r.d)
	}
	// Output keeps flowing while paused (and is recorded), input does not.
	h.output("still here\r\n")
	h.owner.screen.waitFor(t, "still here")
	h.owner.typeKeys(t, "x")
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")

	c := h.joinLive(carol)
	h.owner.screen.waitFor(t, "[tandem] carol joined as peer; input resumed")
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
	h.owner.typeKeys(t, "y")
	c.term.typeKeys(t, "z")
	h.in.waitFor(t, "yz")
	if got := h.in.String(); got != "yz" {
		t.Fatalf("target got %q", got)
	}
	states, _, leaves := h.rec.snapshot()
	if !slices.Equal(states, []string{">waiting", "waiting>live", "live>paused", "paused>live"}) {
		t.Fatalf("states %v", states)
	}
	if !slices.Equal(leaves, []string{"bob:left"}) {
		t.Fatalf("leaves %v", leaves)
	}
	h.rec.mu.Lock()
	rec := h.rec.output.String()
	h.rec.mu.Unlock()
	if rec != "still here\r\n" {
		t.Fatalf("recorded %q", rec)
	}
}

func TestGraceExpiryEnds(t *testing.T) {
	h := newHarness(t, true, nil)
	h.timers.next(t) // wait timer, stopped when bob joins
	b := goLive(t, h)
	b.term.Close() // connection lost
	if r := b.wait(t); r.reason != ReasonLost {
		t.Fatalf("Join = %+v", r)
	}
	h.owner.screen.waitFor(t, "bob left (connection lost); input paused")
	h.timers.next(t).ch <- h.s.o.Now()
	err := h.attachResult()
	const msg = "no second person rejoined within 5m0s; session closed"
	if err == nil || err.Error() != msg {
		t.Fatalf("Attach = %v", err)
	}
	h.owner.screen.waitFor(t, "[tandem] "+msg+"\r\n")
	if h.s.State() != Ended {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestStaleWaitTimerIgnored(t *testing.T) {
	h := newHarness(t, true, nil)
	wait := h.timers.next(t)
	goLive(t, h)
	wait.ch <- h.s.o.Now() // fires after bob joined: must not end anything
	h.owner.typeKeys(t, "k")
	h.in.waitFor(t, "k")
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestObserverLeavingChangesNothing(t *testing.T) {
	h := newHarness(t, true, nil)
	o := h.joinLive(olga)
	if h.s.State() != Waiting {
		t.Fatalf("an observer made the session %s", h.s.State())
	}
	o.term.hangUp()
	o.wait(t)
	h.owner.screen.waitFor(t, "[tandem] olga left\r\n")
	if h.s.State() != Waiting {
		t.Fatalf("state %s", h.s.State())
	}
	goLive(t, h)
	o2 := h.joinLive(Participant{Person: "oscar", Mode: Observer})
	o2.term.Close()
	o2.wait(t)
	h.owner.screen.waitFor(t, "oscar left (connection lost)")
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestJoinRefusals(t *testing.T) {
	h := newHarness(t, true, nil)
	cases := []struct {
		p    Participant
		want string
	}{
		{Participant{Person: "alice", Mode: Peer}, "you own session s1"},
		{Participant{Person: "bob", Mode: Owner}, "choose peer or observer"},
		{eve, "external participants may join only under supervision"},
		{Participant{Person: "eo", Mode: Observer, External: true}, "external participants"},
	}
	for _, c := range cases {
		if _, err := h.s.Join(c.p, newTerm(true)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Join(%+v) = %v, want %q", c.p, err, c.want)
		}
	}
	if h.s.State() != Waiting {
		t.Fatalf("state %s", h.s.State())
	}
}

func TestExternalSupervised(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	e := h.joinLive(eve)
	h.owner.screen.waitFor(t, "eve joined as peer (external)")
	e.term.typeKeys(t, "E")
	h.in.waitFor(t, "E")
	if h.rec.inputOf("eve") != "E" {
		t.Fatalf("eve's input not attributed")
	}
	// The qualified second person leaves: eve does not keep it live.
	b.term.hangUp()
	b.wait(t)
	h.owner.screen.waitFor(t, "bob left; input paused")
	if h.s.State() != Paused {
		t.Fatalf("state %s", h.s.State())
	}
	e.term.typeKeys(t, "F")
	e.term.screen.waitFor(t, "input is discarded until a second person is present")
	if _, err := h.s.Join(Participant{Person: "eric", Mode: Peer, External: true}, newTerm(true)); err == nil {
		t.Fatal("an external joined without a qualified second person present")
	}
	h.joinLive(carol)
	e.term.typeKeys(t, "G")
	h.in.waitFor(t, "EG")
	if got := h.in.String(); got != "EG" {
		t.Fatalf("target got %q", got)
	}
}

func TestSlowParticipantDropped(t *testing.T) {
	// No four-eyes here, so that the state does not depend on whether a
	// reading peer keeps within BufferBytes of the owner under -race.
	h := newHarness(t, false, nil)
	h.attach()
	<-h.sizes
	stuck := h.join(olga, false) // never reads its screen
	h.owner.screen.waitFor(t, "olga joined as observer")

	const total = 10 << 20
	chunk := strings.Repeat("#", 64<<10)
	for range total / len(chunk) {
		h.output(chunk)
	}
	if r := stuck.wait(t); r.reason != ReasonTooSlow {
		t.Fatalf("stuck Join = %+v", r)
	}
	<-stuck.term.closed
	h.owner.screen.waitFor(t, "[tandem] olga left (too slow)")
	h.owner.screen.waitUntil(t, "all output", func(s string) bool { return strings.Count(s, "#") == total })
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
	if ps := h.s.Participants(); len(ps) != 1 {
		t.Fatalf("participants %v", ps)
	}
}

func TestSlowOwnerPacesTarget(t *testing.T) {
	h := newHarness(t, false, func(o *Options) { o.BufferBytes = 1 << 10 })
	stuckOwner := newTerm(false)
	h.s = New(h.s.o, stuckOwner, Size{80, 24})
	h.terms = append(h.terms, stuckOwner)
	h.attach()
	<-h.sizes
	b := h.joinLive(bob)
	// The owner reads nothing: output is held back for everybody, but the
	// session stays up and can still be ended by anyone.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for range 8 {
			if _, err := h.outWr.Write([]byte(strings.Repeat("#", 1<<10))); err != nil {
				return
			}
		}
	}()
	b.term.screen.waitFor(t, "#")
	if h.s.State() != Live {
		t.Fatalf("state %s", h.s.State())
	}
	b.term.typeKeys(t, "\x1dq")
	if r := b.wait(t); r.reason != ReasonEnded {
		t.Fatalf("Join = %+v", r)
	}
	b.term.screen.waitFor(t, "session ended by bob")
	stuckOwner.Close() // the owner's connection finally fails
	if err := h.attachResult(); err == nil || err.Error() != "session ended by bob" {
		t.Fatalf("Attach = %v", err)
	}
	h.outWr.Close()
	<-wrote
}

func TestLateJoinerGetsScreen(t *testing.T) {
	h := newHarness(t, true, nil)
	goLive(t, h)
	h.output("\x1b[2Jprompt$ ls\r\nfile1  file2\r\nprompt$ ")
	h.owner.screen.waitFor(t, "file1  file2")
	o := h.joinLive(olga)
	got := o.term.screen.String()
	want := clearScreen + "\x1b[2Jprompt$ ls\r\nfile1  file2\r\nprompt$ "
	if !strings.HasPrefix(got, want) {
		t.Fatalf("late joiner got %q, want prefix %q", got, want)
	}
	if !strings.Contains(got, "the owner's window size 80x24 applies") {
		t.Fatalf("no window size notice: %q", got)
	}
	h.output("more")
	o.term.screen.waitFor(t, "more")
}

func TestEscapeEndsForAll(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	o := h.joinLive(olga)
	b.term.typeKeys(t, "a\x1d\x1db")
	h.in.waitFor(t, "a\x1db")
	o.term.typeKeys(t, "\x1d?")
	o.term.screen.waitFor(t, "\r\n[tandem] "+ObserverEscapeHelp+"\r\n")
	b.term.typeKeys(t, "\x1d?")
	b.term.screen.waitFor(t, "\r\n[tandem] "+EscapeHelp+"\r\n")
	b.term.typeKeys(t, "\x1dq")
	err := h.attachResult()
	if err == nil || err.Error() != "session ended by bob" || !errors.Is(err, ErrEnded) {
		t.Fatalf("Attach = %v", err)
	}
	for _, c := range []*capture{h.owner.screen, b.term.screen, o.term.screen} {
		c.waitFor(t, "\r\n[tandem] session ended by bob\r\n")
	}
	for _, j := range []*joiner{b, o} {
		if r := j.wait(t); r.reason != ReasonEnded {
			t.Fatalf("Join = %+v", r)
		}
	}
	states, _, leaves := h.rec.snapshot()
	if states[len(states)-1] != "live>ended" || !slices.Equal(leaves, []string{"bob:session ended", "olga:session ended"}) {
		t.Fatalf("states %v leaves %v", states, leaves)
	}
}

// TestObserverEscapeLeavesAlone: an observer's Ctrl-] q makes them leave;
// the session goes on for the others, in whatever state it was.
func TestObserverEscapeLeavesAlone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		live  bool
		state State
	}{
		{"waiting", false, Waiting},
		{"live", true, Live},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true, nil)
			var b *joiner
			if tc.live {
				b = goLive(t, h)
			}
			o := h.joinLive(olga)
			o.term.typeKeys(t, "x\x1dq")
			o.term.screen.waitFor(t, "\r\n[tandem] you left the session; observers cannot end it for the others\r\n")
			if r := o.wait(t); r.err != nil || r.reason != ReasonLeft {
				t.Fatalf("Join = %+v, want %q", r, ReasonLeft)
			}
			h.owner.screen.waitFor(t, "\r\n[tandem] olga left\r\n")
			if got := h.s.State(); got != tc.state {
				t.Fatalf("state %s, want %s", got, tc.state)
			}
			if ps := h.s.Participants(); slices.ContainsFunc(ps, func(p Participant) bool { return p.Person == "olga" }) {
				t.Fatalf("olga still listed: %v", ps)
			}
			_, _, leaves := h.rec.snapshot()
			if !slices.Equal(leaves, []string{"olga:left"}) {
				t.Fatalf("leaves %v", leaves)
			}
			if !tc.live {
				return
			}
			// The others go on working, and a peer's Ctrl-] q still ends
			// the session for all.
			b.term.screen.waitFor(t, "olga left")
			h.owner.typeKeys(t, "id\r")
			h.in.waitFor(t, "id\r")
			b.term.typeKeys(t, "\x1dq")
			if err := h.attachResult(); err == nil || err.Error() != "session ended by bob" {
				t.Fatalf("Attach = %v", err)
			}
		})
	}
}

// TestModeEscape: what Ctrl-] q does depends only on the mode of who types
// it: the owner and peers (externals too) end the session, observers leave.
func TestModeEscape(t *testing.T) {
	for _, tc := range []struct {
		p    Participant
		ends bool
	}{
		{bob, true},
		{eve, true},
		{olga, false},
		{Participant{Person: "eo", Mode: Observer, External: true}, false},
	} {
		t.Run(tc.p.Person, func(t *testing.T) {
			h := newHarness(t, true, nil)
			goLive(t, h)
			j := h.joinLive(tc.p)
			j.term.typeKeys(t, "\x1dq")
			r := j.wait(t)
			if tc.ends {
				if r.reason != ReasonEnded || h.attachResult() == nil {
					t.Fatalf("Join = %+v; want the session ended by %s", r, tc.p.Person)
				}
				return
			}
			if r.reason != ReasonLeft || h.s.State() != Live {
				t.Fatalf("Join = %+v, state %s; want %s left alone", r, h.s.State(), tc.p.Person)
			}
		})
	}
}

func TestOwnerAbortsWaitingRoom(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	h.owner.typeKeys(t, "\x1dq")
	if err := recv(t, w); err == nil || err.Error() != "session ended by alice" {
		t.Fatalf("Wait = %v", err)
	}
}

func TestOwnerLeavingEndsForAll(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	h.owner.hangUp()
	if r := b.wait(t); r.reason != ReasonEnded {
		t.Fatalf("Join = %+v", r)
	}
	b.term.screen.waitFor(t, "[tandem] the owner alice left; session closed")
	if err := h.attachResult(); err == nil {
		t.Fatal("Attach returned nil")
	}
}

func TestTargetCloseDeliversAllOutput(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	h.output("last words")
	h.outWr.Close()
	if err := h.attachResult(); err != nil {
		t.Fatalf("Attach = %v", err)
	}
	// Attach returned only after the owner got everything; the owner saw
	// their shell end and gets no extra notice.
	h.owner.screen.waitFor(t, "last words")
	if got := h.owner.screen.String(); strings.Contains(got, "target closed") {
		t.Fatalf("owner was told the target closed: %q", tail(got))
	}
	if r := b.wait(t); r.reason != ReasonEnded {
		t.Fatalf("Join = %+v", r)
	}
	b.term.screen.waitFor(t, "last words\r\n[tandem] the target closed the session\r\n")
}

func TestResizeOwnerOnly(t *testing.T) {
	h := newHarness(t, true, nil)
	goLive(t, h)
	h.s.Resize("bob", Size{200, 60})
	h.s.Resize("alice", Size{120, 40})
	if sz := <-h.sizes; sz != (Size{120, 40}) {
		t.Fatalf("resize %v, want the owner's 120x40", sz)
	}
	if len(h.sizes) != 0 {
		t.Fatalf("extra resize %v", <-h.sizes)
	}
	o := h.joinLive(olga)
	if !strings.Contains(o.term.screen.String(), "window size 120x40") {
		t.Fatal("joiner not told the owner's size")
	}
}

func TestGoroutinesEndAfterEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		h := newHarness(t, true, nil)
		b := goLive(t, h)
		o := h.joinLive(olga)
		stuck := h.join(carol, false)
		h.owner.screen.waitFor(t, "carol joined")
		h.output("x")
		h.s.End("alice", "done")
		h.owner.screen.waitFor(t, "[tandem] session ended by alice (done)")
		if err := h.attachResult(); err == nil {
			t.Fatal("Attach = nil")
		}
		// The gateway closes what it owns once Attach/Join return; a
		// stuck participant's Join returns once its terminal is closed.
		h.closeAll()
		for _, j := range []*joiner{b, o, stuck} {
			j.wait(t)
		}
	}()
	waitGoroutines(t, base)
}

// TestOwnerAbortsWaitingRoomSplit: Ctrl-] q split over two reads ends a
// waiting session, though the Ctrl-] was typed while input was discarded.
func TestOwnerAbortsWaitingRoomSplit(t *testing.T) {
	h := newHarness(t, true, nil)
	w := waitErr(t, h.s)
	h.owner.typeKeys(t, "z\x1d")
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")
	h.owner.typeKeys(t, "q")
	if err := recv(t, w); err == nil || err.Error() != "session ended by alice" {
		t.Fatalf("Wait = %v", err)
	}
}

// TestSecondDroppedTooSlowPauses: an owner who floods output until the
// second person's queue overflows gets them dropped as too slow, and with
// that the session pauses in the same step: the owner's next keystroke
// is discarded.
func TestSecondDroppedTooSlowPauses(t *testing.T) {
	h := newHarness(t, true, func(o *Options) { o.BufferBytes = 4 << 10 })
	w := waitErr(t, h.s)
	stuck := h.join(bob, false) // never reads its screen
	if err := recv(t, w); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.attach()
	<-h.sizes
	chunk := strings.Repeat("#", 1<<10)
	for range 16 {
		h.output(chunk)
	}
	if r := stuck.wait(t); r.reason != ReasonTooSlow {
		t.Fatalf("stuck Join = %+v", r)
	}
	pausedDiscards(t, h, "rm -rf /srv\r")
}

// pausedDiscards checks that h's session is paused and that keys the
// owner types now are discarded, none reaching the target.
func pausedDiscards(t *testing.T, h *harness, keys string) {
	t.Helper()
	if st := h.s.State(); st != Paused {
		t.Fatalf("state %s, want paused", st)
	}
	h.owner.typeKeys(t, keys)
	h.owner.screen.waitFor(t, "input is discarded until a second person is present")
	if got := h.in.String(); got != "" {
		t.Fatalf("target got %q while paused", got)
	}
}

// TestRemovePausesAtOnce: taking the second person out from outside (a
// lock, a reload) pauses the session before Remove returns, so nothing
// the owner types afterwards reaches the target.
func TestRemovePausesAtOnce(t *testing.T) {
	h := newHarness(t, true, nil)
	b := goLive(t, h)
	if !h.s.Remove("bob", "bob was locked: key stolen") {
		t.Fatal("Remove found nobody")
	}
	pausedDiscards(t, h, "id\r")
	if r := b.wait(t); r.reason != "bob was locked: key stolen" {
		t.Fatalf("bob's Join = %+v", r)
	}
}

// TestJoinerToldTheCommand: a joiner's welcome names the session's
// command, which starts as they join; a long one is cut, so that the
// welcome stays a line and never costs the joiner their place.
func TestJoinerToldTheCommand(t *testing.T) {
	h := newHarness(t, true, func(o *Options) { o.Command = "make deploy" })
	h.joinLive(bob).term.screen.waitFor(t, "owner alice; running the command make deploy; the owner's window")

	long := strings.Repeat("\x01", 128<<10)
	h = newHarness(t, true, func(o *Options) { o.Command = long })
	b := h.joinLive(bob)
	b.term.screen.waitFor(t, "(131072 bytes, in full in the audit log)")
	if st := h.s.State(); st != Live {
		t.Fatalf("state %s after bob joined a session with a long command", st)
	}
}

// TestJoinedTwiceRemovedWhole: a person who joined twice is one second
// person: Remove (a lock, a reload) takes out both of their terminals,
// and the session pauses; neither keeps it live.
func TestJoinedTwiceRemovedWhole(t *testing.T) {
	h := newHarness(t, true, nil)
	b1 := goLive(t, h)
	b2 := h.joinLive(bob)
	if !h.s.Remove("bob", "bob was locked: gone") {
		t.Fatal("Remove found nobody")
	}
	for _, b := range []*joiner{b1, b2} {
		if r := b.wait(t); r.reason != "bob was locked: gone" {
			t.Fatalf("Join = %+v", r)
		}
	}
	if ps := h.s.Participants(); len(ps) != 1 {
		t.Fatalf("participants %v", ps)
	}
	pausedDiscards(t, h, "x")
}
