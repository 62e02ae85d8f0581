package audit

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
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
	p("**Retention classes.** On disk (record format v2) only `index`, `tenant`, `time` and `type` are in\n")
	p("clear; every other field is encrypted in one part per retention class (column *class*: `admin`,\n")
	p("`operational`, `content`) under the vault's key of that tenant, class and day, so destroying the key\n")
	p("removes exactly those fields while the record and its proofs stay. The classes and their periods are\n")
	p("in docs/RETENTION.md; every field and its class in docs/RETENTION-FIELDS.md.\n\n")
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
		p("\n| field | in | class | meaning | person role |\n|---|---|---|---|---|\n")
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
			p("| `%s` | %s | %s | %s | %s |\n", name, in, classOf(f), cell(doc), role)
		}
	}
	return b.Flush()
}

// classOf is the retention class of a catalog field, "clear" for the
// fields a v2 record keeps in clear.
func classOf(f Field) string {
	c := FieldClass(f.Name)
	if f.Attr {
		c = ClassOf(f.Name)
	}
	if c == "" {
		return "clear"
	}
	return string(c)
}

// RetentionDocCommand regenerates docs/RETENTION-FIELDS.md, with
// docs/AUDIT.md.
const RetentionDocCommand = DocCommand

// WriteRetentionFields writes docs/RETENTION-FIELDS.md: every field of
// every event type with its retention class, from the catalog and
// attrs.go, grouped by class.
func WriteRetentionFields(w io.Writer) error {
	c, err := catalog()
	if err != nil {
		return err
	}
	type row struct {
		name, in, class string
		types           []string
	}
	rows := map[string]*row{}
	for _, name := range []string{"index", "tenant", "time", "type"} {
		rows["record "+name] = &row{name: name, in: "record", class: "clear", types: []string{"every type"}}
	}
	for _, s := range c {
		for _, f := range s.Fields {
			if classOf(f) == "clear" {
				continue // one of the record's rows above
			}
			in, name := "event", f.Name
			if f.Attr {
				in = "attrs"
			}
			if f.Prefix {
				name += "<field>"
			}
			r := rows[in+" "+name]
			if r == nil {
				r = &row{name: name, in: in, class: classOf(f)}
				rows[in+" "+name] = r
			}
			r.types = append(r.types, "`"+string(s.Type)+"`")
		}
	}
	order := map[string]int{"clear": 0, "admin": 1, "operational": 2, "content": 3}
	keys := slices.SortedFunc(maps.Keys(rows), func(a, b string) int {
		ra, rb := rows[a], rows[b]
		return cmp.Or(cmp.Compare(order[ra.class], order[rb.class]), cmp.Compare(ra.in, rb.in), cmp.Compare(ra.name, rb.name))
	})
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("# Audit fields and their retention classes\n\n")
	p("<!-- Generated from the catalog in internal/audit (events.go, attrs.go) by `%s`; do not edit. -->\n\n", RetentionDocCommand)
	p("Every field of an audit record has one retention class (docs/RETENTION.md says how long each class\n")
	p("is kept). `clear` fields stay readable for as long as the log exists: they carry its structure\n")
	p("(position, tenant, time, type), so verification and counts per type keep working after shredding.\n")
	p("Every other field is encrypted in its class's part of the record under the vault's key of that\n")
	p("tenant, class and day. Event fields are `admin` but `source`, which is `operational`; an attribute's\n")
	p("class is declared once, next to its key in internal/audit/attrs.go (`audit.ClassOf`); a new key is\n")
	p("`admin` until it is declared otherwise.\n\n")
	p("| class | field | in | event types |\n|---|---|---|---|\n")
	for _, k := range keys {
		r := rows[k]
		p("| %s | `%s` | %s | %s |\n", r.class, r.name, r.in, strings.Join(slices.Compact(r.types), ", "))
	}
	return b.Flush()
}

// anchor is the heading id GitHub gives "## `a.b`".
func anchor(t Type) string { return strings.ReplaceAll(string(t), ".", "") }

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
