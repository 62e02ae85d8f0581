package admin

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// ErrNoReload refuses `reload` where nothing can reload a gateway in
// process (the local CLI signals the running gateway instead).
var ErrNoReload = errors.New("reload the running gateway with tandem reload --by PERSON on the gateway host")

// reloadCmd has the gateway re-read its configuration file as the caller's
// change (M12): a person with the permission configure. The gateway
// records who reloaded and every change before the reload takes effect.
func (c *call) reloadCmd(args []string, out io.Writer) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if d := c.eng.MayConfigure(c.who.Person, c.who.Key, c.gw.Now(), c.lock()); d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	changes, err := c.gw.Reload(c.ctx, c.who)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "configuration reloaded: %d change(s), recorded as yours\n", len(changes))
	for _, ch := range changes {
		fmt.Fprintf(out, "  %s\n", safetext.Line(changeSummary(ch)))
	}
	return nil
}

// changeSummary is one change in a line: what happened to which entity,
// and for a modification the fields that changed (their values are in the
// audit log).
func changeSummary(ch config.Change) string {
	s := fmt.Sprintf("%s %s %s", ch.Kind, ch.Entity, ch.ID)
	if ch.Kind != config.Modified {
		return s
	}
	names := slices.Sorted(maps.Keys(ch.Old))
	for k := range ch.New {
		if _, ok := ch.Old[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return s + ": " + strings.Join(names, ", ")
}
