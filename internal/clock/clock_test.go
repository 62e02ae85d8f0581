package clock

import (
	"testing"
	"time"
)

// TestNowFollowsTheSystemClock: without the test tag (and without the
// variable) Now is the system clock.
func TestNowFollowsTheSystemClock(t *testing.T) {
	before := time.Now()
	got := Now()
	after := time.Now()
	if !Moveable && (got.Before(before) || got.After(after)) {
		t.Fatalf("Now() = %v, not between %v and %v", got, before, after)
	}
}
