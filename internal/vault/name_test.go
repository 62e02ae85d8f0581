package vault

import (
	"testing"
	"time"
)

// TestDayAsFormat holds Day to time.Format's bytes, in and out of the
// years it writes itself, across time zones and day boundaries.
func TestDayAsFormat(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("east", 14*3600), time.FixedZone("west", -12*3600-1)}
	for _, y := range []int{-10000, -1, 0, 1, 9, 10, 99, 100, 999, 1000, 1969, 1970, 2030, 9999, 10000, 292277026} {
		for m := time.January; m <= time.December; m++ {
			for _, d := range []int{1, 9, 10, 28, 31} {
				for _, z := range zones {
					for _, clock := range []time.Duration{0, time.Nanosecond, 11*time.Hour + 59*time.Minute, 23*time.Hour + 59*time.Minute + 59*time.Second} {
						at := time.Date(y, m, d, 0, 0, 0, 0, z).Add(clock)
						if got, want := Day(at), at.UTC().Format(dayLayout); got != want {
							t.Fatalf("Day(%v) = %q, want %q", at, got, want)
						}
					}
				}
			}
		}
	}
}
