package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/store"
)

// mayLock is the policy's verdict on the caller locking or unlocking
// others: a role with the permission lock, never an external (M7). The
// local operator holds the state key, and so may.
func (c *call) mayLock() error {
	p := c.who.Person
	if p == nil {
		return nil
	}
	if d := c.eng.MayLock(p, c.who.Key, c.gw.Now(), c.lock()); d.Verdict != policy.Allow {
		return errors.New(d.Message())
	}
	return nil
}

func (c *call) lockCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	fs.SetOutput(out)
	reason := fs.String("reason", "", "why (shown to the person and recorded)")
	dur := fs.Duration("for", 0, "lift the lock automatically after this long (default: until unlocked)")
	person, err := commandArgs(fs, args, "reason", "person")
	if err != nil {
		return err
	}
	if err := c.lockPerson(person, *reason, *dur); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is locked: new logins are refused and their sessions have ended\n", safetext.Line(person))
	return nil
}

// Lock locks person on behalf of who, with reason, for dur (0: until
// unlocked): `ssh gw lock` and `tandem lock`.
func Lock(ctx context.Context, gw Gateway, who Caller, person, reason string, dur time.Duration) error {
	return newCall(ctx, gw, who).lockPerson(person, reason, dur)
}

func (c *call) lockPerson(person, reason string, dur time.Duration) error {
	if err := c.mayLock(); err != nil {
		return err
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("--reason is required: it is shown to the person and recorded")
	}
	if c.cfg.Person(person) == nil {
		return fmt.Errorf("unknown person %q", person)
	}
	l := store.Lock{Person: person, Reason: reason, By: c.who.ID(), Created: c.gw.Now()}
	if dur > 0 {
		l.Until = l.Created.Add(dur)
	}
	return c.gw.Lock(c.ctx, l)
}

func (c *call) unlockCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	fs.SetOutput(out)
	person, err := commandArgs(fs, args, "", "person")
	if err != nil {
		return err
	}
	if err := c.unlock(person); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is unlocked\n", safetext.Line(person))
	return nil
}

// Unlock lifts person's lock on behalf of who: `ssh gw unlock` and
// `tandem unlock`.
func Unlock(ctx context.Context, gw Gateway, who Caller, person string) error {
	return newCall(ctx, gw, who).unlock(person)
}

func (c *call) unlock(person string) error {
	if err := c.mayLock(); err != nil {
		return err
	}
	removed, err := c.gw.Unlock(c.ctx, person, c.who.ID())
	if err != nil {
		return err
	}
	if !removed {
		return fmt.Errorf("%s was not locked", person)
	}
	return nil
}
