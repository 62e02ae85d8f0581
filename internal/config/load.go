package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a configuration file, located by line.
type Problem struct {
	File string
	// Line is 1-based; 0 when the problem has no place in the file.
	Line int
	Msg  string
}

// String formats the problem as file:line: reason, the form editors jump to.
func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// ValidationError lists every problem found in a configuration file. A file
// with any problem is refused whole.
type ValidationError struct {
	Problems []Problem
}

// Error returns one problem per line, in file order.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses the configuration file at path. Relative paths in
// the file (data_dir) are resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		abs, _ := filepath.Abs(path)
		return nil, fmt.Errorf("no configuration file at %s: name one with -c FILE, "+
			"or create one: `tandem demo` writes a working example (tandem-demo/tandem.yaml), docs/CONFIG.md describes every key: %w", abs, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration. name is the file name used in
// problem reports and becomes Config.Path; when it is non-empty, a relative
// data_dir is resolved against its directory. Parse returns either a
// complete Config or a *ValidationError listing every problem found.
func Parse(name string, data []byte) (*Config, error) {
	file := name
	if file == "" {
		file = "<config>"
	}
	r := &report{file: file}

	// First pass: the node tree, for syntax errors and for line numbers.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		r.yamlError(err)
		return nil, r.err()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		r.add(1, "the file is empty")
		return nil, r.err()
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		r.add(root.Line, "the top level must be a mapping (gateway:, tenants:, persons:, roles:, hosts:, policy:)")
		return nil, r.err()
	}

	// Second pass: typed decoding; unknown keys and wrong types are
	// reported here, each with its line. Decoding goes on after such an
	// error, so semantic checks below still see the rest of the file.
	c := &Config{Path: name, raw: bytes.Clone(data)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		r.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		r.add(extra.Line, "only one YAML document is allowed per file")
	}

	pos := &positions{root: root}
	fillLines(c, pos)
	applyDefaults(c, pos, r)
	validate(c, pos, r)
	if len(r.problems) > 0 {
		return nil, r.err()
	}
	c.byKey = indexKeys(c)
	return c, nil
}

// report collects problems for one file.
type report struct {
	file     string
	problems []Problem
}

func (r *report) add(line int, format string, args ...any) {
	r.problems = append(r.problems, Problem{File: r.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems in file order, or nil.
func (r *report) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	sort.SliceStable(r.problems, func(i, j int) bool { return r.problems[i].Line < r.problems[j].Line })
	return &ValidationError{Problems: r.problems}
}

var (
	// yaml v3 reports syntax errors as "yaml: line N: msg" (the line is
	// left out when it is the first) and decoding errors as "line N: msg".
	yamlLineRE     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type config\.(\w+)$`)
)

// yamlError turns an error of the yaml package into problems with lines.
func (r *report) yamlError(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			r.addYAML(e)
		}
		return
	}
	r.addYAML(err.Error())
}

func (r *report) addYAML(msg string) {
	line := 1 // the yaml package leaves the line out when it is the first
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			line = n
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		where := strings.ToLower(m[2])
		if where == "config" {
			where = "the top level"
		}
		msg = fmt.Sprintf("unknown key %q in %s", m[1], where)
	}
	r.add(line, "%s", msg)
}

// positions finds the lines of values in the parsed node tree. A nil
// *positions answers 0 everywhere, so validation also runs on a Config
// that was built in memory.
type positions struct {
	root *yaml.Node
}

// node follows a path of mapping keys (string) and sequence indexes (int)
// from the root. It returns the deepest node it reached and whether it
// reached the end of the path.
func (p *positions) node(path ...any) (*yaml.Node, bool) {
	if p == nil || p.root == nil {
		return nil, false
	}
	n := p.root
	for _, step := range path {
		next := child(n, step)
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

// line is the line of the value at path, or of its nearest ancestor that
// exists (so a missing key is reported at the entry that lacks it).
func (p *positions) line(path ...any) int {
	n, _ := p.node(path...)
	if n == nil {
		return 0
	}
	return n.Line
}

// has reports whether the value at path is present and not null.
func (p *positions) has(path ...any) bool {
	n, ok := p.node(path...)
	return ok && !(n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// decodes reports whether the value at path, if present, decodes into v.
// Checks use it to stay quiet about a value whose decoding error was
// already reported.
func (p *positions) decodes(v any, path ...any) bool {
	n, ok := p.node(path...)
	if !ok {
		return true
	}
	return n.Decode(v) == nil
}

func child(n *yaml.Node, step any) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch s := step.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == s {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
			return n.Content[s]
		}
	}
	return nil
}

// fillLines sets the Line fields from the node tree.
func fillLines(c *Config, pos *positions) {
	for i := range c.Tenants {
		c.Tenants[i].Line = pos.line("tenants", i)
	}
	for i := range c.Persons {
		p := &c.Persons[i]
		p.Line = pos.line("persons", i)
		for j := range p.Keys {
			p.Keys[j].Line = pos.line("persons", i, "keys", j)
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		r.Line = pos.line("roles", i)
		for j := range r.Allow {
			r.Allow[j].Line = pos.line("roles", i, "allow", j)
		}
	}
	for i := range c.Hosts {
		c.Hosts[i].Line = pos.line("hosts", i)
	}
}
