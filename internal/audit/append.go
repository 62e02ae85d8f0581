package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// ErrUnavailable marks the error of OrRefuse: the audit log did not store
// the event, so the action it describes must not happen.
var ErrUnavailable = errors.New("the audit log is unavailable")

// OrRefuse appends e and returns nil once it is stored durably. Use it for
// every event that grants access or changes state — a login, a session or
// forward start, a gateway command, a request or approval, a read of a
// recording, a configuration change, the gateway's start: the caller
// carries out the action only after OrRefuse returned nil and refuses it
// otherwise (fail closed). The error wraps ErrUnavailable and the log's
// own error.
func OrRefuse(ctx context.Context, s Sink, e Event) error {
	if err := s.Append(ctx, e); err != nil {
		return fmt.Errorf("%w (%s not stored): %w", ErrUnavailable, e.Type, err)
	}
	return nil
}

// BestEffort appends e and logs a failure instead of returning it. Use it
// only where losing the event cannot let anything through: a refusal or
// failure that already denies (session.denied, auth.failure), the end of
// something that has ended anyway (session.end, gateway.stop), or a
// state change stored before (a revocation). A failed log ends every
// session regardless (`tandem serve` watches it).
func BestEffort(ctx context.Context, s Sink, log *slog.Logger, e Event) {
	if err := s.Append(ctx, e); err != nil {
		if log == nil {
			log = slog.Default()
		}
		log.Error("audit append failed", "type", string(e.Type), "err", err)
	}
}

// SinkFunc is a function that appends, as a Sink: for a writer whose
// append method has another name (the gateway commands' Gateway.Audit).
type SinkFunc func(ctx context.Context, e Event) error

// Append calls f.
func (f SinkFunc) Append(ctx context.Context, e Event) error { return f(ctx, e) }
