//go:build !tandem_testclock

package clock

import "time"

func now() time.Time { return time.Now() }

// Moveable reports whether this build lets tests move the clock.
const Moveable = false
