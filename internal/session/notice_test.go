package session

import (
	"strings"
	"testing"
)

// hostile is a reason as a person might type it: it sets the window title,
// clears the screen with a C1 CSI and reverses the rest of the line.
const hostile = "x\x1b]0;owned\x07\u009b2J\u202eevil"

// assertNoRawControls fails if a participant's screen shows a raw ESC, BEL,
// C1 control or bidi override.
func assertNoRawControls(t *testing.T, who, screen string) {
	t.Helper()
	if i := strings.IndexAny(screen, "\x1b\x07\u009b\u202e"); i >= 0 {
		t.Fatalf("%s's screen has a raw control at %d: %q", who, i, screen)
	}
}

func TestNoticesEscapeControls(t *testing.T) {
	h := newHarness(t, false, nil)
	h.attach()
	b := h.joinLive(bob)
	c := h.joinLive(carol)
	h.owner.screen.waitFor(t, "carol joined")

	h.s.Remove("carol", "carol was locked: "+hostile)
	want := `carol left (carol was locked: x\x1b]0;owned\x07\u009b2J\u202eevil)`
	h.owner.screen.waitFor(t, want)
	b.term.screen.waitFor(t, want)
	c.wait(t)

	h.s.End("", "alice was locked: "+hostile)
	want = `[tandem] session ended (alice was locked: x\x1b]0;owned\x07\u009b2J\u202eevil)`
	h.owner.screen.waitFor(t, want)
	b.term.screen.waitFor(t, want)
	assertNoRawControls(t, "alice", h.owner.screen.String())
	// A joiner's screen starts with the gateway's own clear-screen.
	assertNoRawControls(t, "bob", strings.TrimPrefix(b.term.screen.String(), "\x1b[H\x1b[2J"))
	h.closeAll()
	b.wait(t)
}
