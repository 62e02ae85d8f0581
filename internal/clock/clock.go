// Package clock is the one source of the current time for Tandem's
// commands. Retention, request expiry, key ages and the audit log's event
// times all follow it, so a test can move every one of them together.
//
// A normal build reads the system clock and nothing else. Only a binary
// built with the build tag tandem_testclock (the end-to-end tests build
// one) lets the environment move it: TANDEM_TEST_CLOCK_FILE names a file
// holding an offset such as "96h" that is added to the system clock. A
// production binary has no such door: the tag is not in its build.
package clock

import "time"

// Now returns the current time.
func Now() time.Time { return now() }

// Since returns the time elapsed since t, by Now.
func Since(t time.Time) time.Duration { return Now().Sub(t) }
