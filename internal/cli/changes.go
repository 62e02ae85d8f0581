package cli

import (
	"context"
	"fmt"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// recordChanges writes one config.change event per created, modified or
// deleted entity (M12) before a reload takes effect. The acting person of
// a file reload is not known to the gateway; the trigger is recorded.
func recordChanges(ctx context.Context, sink audit.Sink, old, new *config.Config) error {
	for _, c := range config.Diff(old, new) {
		attrs := map[string]string{
			"kind": string(c.Kind), "entity": c.Entity, "id": c.ID,
			"trigger": "reload of " + new.Path, "digest": new.Digest(),
		}
		for k, v := range c.Old {
			attrs["old."+k] = v
		}
		for k, v := range c.New {
			attrs["new."+k] = v
		}
		if err := sink.Append(ctx, audit.Event{Type: audit.ConfigChange, Attrs: attrs}); err != nil {
			return fmt.Errorf("audit config change: %w", err)
		}
	}
	return nil
}
