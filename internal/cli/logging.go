package cli

import (
	"io"
	"log/slog"

	"tandem.dev/tandem/internal/config"
)

// serveLogger is the gateway's operational log on w (stderr): text
// (key=value) or JSON lines per log.format, at log.level; --debug lowers
// the level to debug. Both handlers quote or escape control characters,
// so text a client sent (a user name, an algorithm list) cannot forge a
// line or reach a terminal that shows the log.
func serveLogger(w io.Writer, c config.Log, debug bool) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo // validated already; the default for a Config built in code
	}
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
