package cli

import (
	"bytes"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

// TestServeLogger checks both formats, the level, and that text a client
// sent cannot forge a line or smuggle a terminal escape into the log.
func TestServeLogger(t *testing.T) {
	hostile := "mallory\n" + `time=2026-01-01 level=INFO msg="forged"` + "\x1b[2J"
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		log := serveLogger(&b, config.Log{Format: format, Level: "warn"}, false)
		log.Info("dropped at warn")
		log.Warn("handshake failed", "user", hostile)
		out := b.String()
		if strings.Count(out, "\n") != 1 || strings.Contains(out, "\x1b") || strings.Contains(out, "dropped") {
			t.Errorf("%s: %q: want one escaped line at warn", format, out)
		}
		if format == "json" && !strings.HasPrefix(out, `{"time":`) {
			t.Errorf("json: %q", out)
		}
	}
	var b bytes.Buffer
	serveLogger(&b, config.Log{Format: "text", Level: "info"}, true).Debug("shown with --debug")
	if !strings.Contains(b.String(), "shown with --debug") {
		t.Errorf("--debug: %q", b.String())
	}
}
