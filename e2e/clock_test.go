package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClockMovedByHours: the gateway's clock of decisions (days,
// validity, retention) may be moved, as the retention tests move it by
// days; socket deadlines stay on the real clock. Before, a clock behind
// the real one put every handshake's deadline in the past, and every
// connection ended before the version exchange ("kex_exchange_identification:
// Connection closed"): the retention test failed every afternoon.
func TestClockMovedByHours(t *testing.T) {
	t.Parallel()
	for _, offset := range []time.Duration{-6 * time.Hour, 6 * time.Hour} {
		t.Run(offset.String(), func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "clock-offset")
			writeTestFile(t, file, offset.String())
			e := newEnvGatewayEnv(t, []string{"TANDEM_TEST_CLOCK_FILE=" + file})
			r := e.Alice.SSH(t, sshArgs(e.routeArgs("root", "db1"), "echo CLOCK-OK")...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "CLOCK-OK") {
				e.failf(t, r, "a session with the gateway's clock moved by %v", offset)
			}
		})
	}
}
