package audit

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// DocCommand regenerates docs/AUDIT.md from the catalog.
const DocCommand = "go generate ./internal/audit"

// WriteDoc writes docs/AUDIT.md: every event type, when it is written,
// the measures it serves and its fields, from the catalog.
func WriteDoc(w io.Writer) error {
	c, err := catalog()
	if err != nil {
		return err
	}
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("# Audit events\n\n")
	p("<!-- Generated from the catalog in internal/audit (catalog.go, events.go) by `%s`; do not edit. -->\n\n", DocCommand)
	p("Every event in the audit log (`data_dir/audit`, see `internal/audit`) is one JSON record with\n")
	p("the fields `time`, `type`, `person`, `session`, `tenant`, `host`, `login`, `source`, `request`\n")
	p("(empty ones left out) and `attrs`, a map of text values. This file lists every type, when it is\n")
	p("written, which measures of docs/MEASURES.md it serves, and its fields. Values are text: integers\n")
	p("in decimal, booleans `true`/`false`, times UTC RFC 3339, lists comma-separated. An event field\n")
	p("listed for a type stays empty where it does not apply (a refused session has no session id);\n")
	p("attributes marked \"if set\" are left out then.\n\n")
	p("Code builds events only with the typed constructors of `internal/audit` (`audit.SessionJoinEvent{…}.Event()`),\n")
	p("and appends them with `audit.OrRefuse` when the action must not happen without its event\n")
	p("(anything that grants access or changes state), or `audit.BestEffort` when losing the event lets\n")
	p("nothing through (a refusal, an end).\n\n")
	p("**Persons.** `person` names a different role per type (the owner of a session, the approver of a\n")
	p("request, the locked person); other persons an event involves have attributes of their own, marked\n")
	p("with their role below (`participant`: the joiner; `requester`; `by`: the locker). `tandem audit show\n")
	p("--person P` matches P in any of them, so it finds the sessions P joined and the locks P made.\n\n")
	p("## Overview\n\n| type | measures | when it is written |\n|---|---|---|\n")
	for _, s := range c {
		p("| [`%s`](#%s) | %s | %s |\n", s.Type, anchor(s.Type), strings.Join(s.Measures, ", "), cell(s.When))
	}
	for _, s := range c {
		p("\n## `%s`\n\n%s\n\n", s.Type, s.When)
		p("Measures: %s.", strings.Join(s.Measures, ", "))
		if s.Constructor != "" {
			p(" Constructor: `audit.%s`.", s.Constructor)
		}
		p("\n")
		if len(s.Fields) == 0 {
			continue
		}
		p("\n| field | in | meaning | person role |\n|---|---|---|---|\n")
		for _, f := range s.Fields {
			name, in, doc, role := f.Name, "event", f.Doc, f.Role
			if f.Name == "person" {
				doc, role = s.PersonDoc, s.PersonRole
			}
			if f.Attr {
				in = "attrs"
				if f.Optional {
					in = "attrs, if set"
				}
			}
			if f.Prefix {
				name += "<field>"
			}
			p("| `%s` | %s | %s | %s |\n", name, in, cell(doc), role)
		}
	}
	return b.Flush()
}

// anchor is the heading id GitHub gives "## `a.b`".
func anchor(t Type) string { return strings.ReplaceAll(string(t), ".", "") }

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
