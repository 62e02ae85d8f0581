package config

import (
	"bytes"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Marshal writes c as a configuration file that Parse reads back to the
// same configuration. It is for configurations built in code (tests, the
// benchmark), so that they are written from these types rather than by
// hand.
//
// A field at its zero value is left out, not written as 0, "" or "0s":
// Parse fills the default for a missing field but refuses an explicit
// zero where one is invalid, so a Config built in code states only what
// it sets. An empty but non-nil list is written as [] (an explicit "none",
// which Parse keeps instead of filling the default). The Line fields and
// the parsed forms of keys are not written; Parse derives them.
func Marshal(c *Config) ([]byte, error) {
	n, err := encodeSet(reflect.ValueOf(*c))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2) // the indentation docs/CONFIG.md and hand-written files use
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// marshalerType is the interface Duration and Date implement; values of
// such types are written by their own MarshalYAML.
var marshalerType = reflect.TypeFor[yaml.Marshaler]()

// encodeSet encodes v as a YAML node, leaving out the struct fields that
// are zero (recursively, also inside lists of structs).
func encodeSet(v reflect.Value) (*yaml.Node, error) {
	switch {
	case v.Kind() == reflect.Struct && !v.Type().Implements(marshalerType):
		m := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			inline := opts == "inline"
			if !f.IsExported() || (name == "" && !inline) || name == "-" || v.Field(i).IsZero() {
				continue
			}
			val, err := encodeSet(v.Field(i))
			if err != nil {
				return nil, err
			}
			if inline { // an embedded struct's keys belong to this mapping
				m.Content = append(m.Content, val.Content...)
				continue
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, val)
		}
		return m, nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			el, err := encodeSet(v.Index(i))
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, el)
		}
		return s, nil
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle // lists of names on one line: roles: [admin]
	}
	return &n, nil
}
