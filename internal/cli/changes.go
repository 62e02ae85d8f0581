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
		ev := audit.ConfigChangeEvent{Kind: string(c.Kind), Entity: c.Entity, ID: c.ID,
			Trigger: "reload of " + new.Path, Digest: new.Digest(), Old: c.Old, New: c.New}
		if err := audit.OrRefuse(ctx, sink, ev.Event()); err != nil {
			return fmt.Errorf("audit config change: %w", err)
		}
	}
	return nil
}
