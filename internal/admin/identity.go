package admin

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

func (c *call) whoami(args []string, out io.Writer) error {
	if err := noArgs(args); err != nil {
		return err
	}
	p := c.who.Person
	fmt.Fprintf(out, "%s (%s <%s>)\n", safetext.Line(p.ID), safetext.Line(p.Name), safetext.Line(p.Email))
	fmt.Fprintf(out, "roles: %s\n", safetext.Line(strings.Join(p.Roles, ", ")))
	if k := c.who.Key; k != nil {
		exp := c.eng.KeyExpiry(k)
		fmt.Fprintf(out, "key:   %s (%s), registered %s, expires %s\n", k.Fingerprint,
			k.PublicKey.Type(), k.Added.Format(time.DateOnly), exp.Format(time.DateOnly))
	}
	c.writeConnections(out)
	grants := c.eng.Grants(p)
	if len(grants) == 0 {
		fmt.Fprintln(out, "hosts: none")
		return nil
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].Host < grants[j].Host })
	fmt.Fprintln(out, "hosts:")
	tw := tsv(out)
	for _, g := range grants {
		four := ""
		if g.FourEyes {
			four = "four-eyes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", safetext.Line(g.Host), safetext.Line(g.Tenant), safetext.Line(g.Environment),
			safetext.Line(strings.Join(g.Logins, ",")), four)
	}
	return tw.Flush()
}

// writeConnections lists the caller's open connections to the gateway,
// with the caps they count against.
func (c *call) writeConnections(out io.Writer) {
	l := c.cfg.Gateway.Limits
	mine := c.gw.Connections(c.who)
	fmt.Fprintf(out, "connections: %d open (at most %d per person, %d per address, %d channels each)\n",
		len(mine), l.ConnectionsPerPerson, l.ConnectionsPerSource, l.ChannelsPerConnection)
	tw := tsv(out)
	for _, s := range mine {
		note := ""
		if s.This {
			note = "(this one)"
		}
		fmt.Fprintf(tw, "  from %s\tsince %s UTC\t%d channels\t%s\n", s.Source, s.Since.UTC().Format(time.DateTime), s.Channels, note)
	}
	_ = tw.Flush()
}

func (c *call) keys(args []string, out io.Writer) error {
	if err := noArgs(args); err != nil {
		return err
	}
	now := c.gw.Now()
	p := c.who.Person
	tw := tsv(out)
	fmt.Fprintln(tw, "FINGERPRINT\tTYPE\tADDED\tEXPIRES\tSTATUS")
	for i := range p.Keys {
		k := &p.Keys[i]
		exp := c.eng.KeyExpiry(k)
		status := "valid"
		switch d := c.eng.CheckPerson(p, k, now, ""); {
		case !exp.After(now):
			status = "expired"
		case d.Verdict == policy.Allow && len(d.Warnings) > 0:
			status = "expires soon: register a new key"
		}
		if k == c.who.Key {
			status += " (this login)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Fingerprint, k.PublicKey.Type(),
			k.Added.Format(time.DateOnly), exp.Format(time.DateOnly), status)
	}
	return tw.Flush()
}
