//go:build tandem_testclock

package clock

import (
	"os"
	"strings"
	"sync"
	"time"
)

// Moveable reports whether this build lets tests move the clock.
const Moveable = true

// EnvFile names the file whose content (a Go duration) is added to the
// system clock.
const EnvFile = "TANDEM_TEST_CLOCK_FILE"

// reread bounds how often the offset file is read: a test that moves the
// clock waits this long (or a little more) for every process to follow.
const reread = 50 * time.Millisecond

var (
	mu     sync.Mutex
	offset time.Duration
	read   time.Time
)

func now() time.Time {
	sys := time.Now()
	path := os.Getenv(EnvFile)
	if path == "" {
		return sys
	}
	mu.Lock()
	defer mu.Unlock()
	if sys.Sub(read) >= reread || sys.Before(read) {
		read = sys
		if b, err := os.ReadFile(path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
				offset = d
			}
		}
	}
	return sys.Add(offset)
}
