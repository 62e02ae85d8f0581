package cli

import (
	"context"
	"fmt"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// reloadBy is who asked for a reload, and how.
type reloadBy struct {
	Person  string // the acting person; "" when nobody said (a bare SIGHUP)
	Actor   string // the local user who ran tandem reload
	Source  string // the connection of ssh gw reload
	Trigger string // signal, tandem reload, ssh gw reload
	// RequestID names tandem reload's request, which waits for the outcome.
	RequestID string
}

// unknownBy is who reloaded when a bare signal gives no name.
const unknownBy = "unknown (signal)"

// recordChanges writes who reloaded (config.reload) and then one
// config.change event per created, modified or deleted entity (M12), all
// before the reload takes effect. A person the configuration in force does
// not know is recorded as given, flagged.
func recordChanges(ctx context.Context, sink audit.Sink, old, new *config.Config, changes []config.Change, by reloadBy) error {
	who := by.Person
	if who == "" {
		who = unknownBy
	}
	trigger := fmt.Sprintf("reload of %s (%s)", new.Path, by.Trigger)
	ev := audit.ConfigReloadEvent{Source: by.Source, By: who, ByUnknown: by.Person != "" && old.Person(by.Person) == nil,
		Actor: by.Actor, Trigger: trigger, Digest: new.Digest(), PreviousDigest: old.Digest(), Changes: len(changes)}
	if err := audit.OrRefuse(ctx, sink, ev.Event()); err != nil {
		return fmt.Errorf("audit config reload: %w", err)
	}
	for _, c := range changes {
		ev := audit.ConfigChangeEvent{Kind: string(c.Kind), Entity: c.Entity, ID: c.ID,
			Trigger: trigger, By: who, Digest: new.Digest(), Old: c.Old, New: c.New}
		if err := audit.OrRefuse(ctx, sink, ev.Event()); err != nil {
			return fmt.Errorf("audit config change: %w", err)
		}
	}
	return nil
}
