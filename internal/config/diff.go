package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ChangeKind is what happened to one entity between two configurations.
type ChangeKind string

const (
	Created  ChangeKind = "create"
	Modified ChangeKind = "modify"
	Deleted  ChangeKind = "delete"
)

// Change is one created, modified or deleted entity (M12). Old and New hold
// the changed fields only, as compact JSON values. The configuration holds
// no secrets today (keys are public, key files are named by path); a field
// tagged `secret:"true"` would be reported as SecretChanged, never with
// its value.
type Change struct {
	Kind   ChangeKind
	Entity string // a section (gateway, policy, audit, recording …) or an entity of a list (tenant, person, role, host)
	ID     string
	Old    map[string]string
	New    map[string]string
}

// SecretChanged stands for the value of a secret field in a Change.
const SecretChanged = `"(secret, changed)"`

// Diff lists the changes that turn old into new, in a stable order: the
// sections of Config in the order they are declared. It walks Config's
// fields, so a section added to Config is diffed without being named here
// (TestDiffCoversEverySection).
func Diff(old, new *Config) []Change {
	var out []Change
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	for i := 0; i < ov.NumField(); i++ {
		name, ok := yamlName(ov.Type().Field(i))
		if !ok {
			continue // Path and what Parse derives: not part of the file
		}
		out = append(out, diffSection(name, ov.Field(i), nv.Field(i))...)
	}
	return out
}

// diffSection diffs one top-level section: a list of entities by their id,
// anything else as one entity named after the section.
func diffSection(name string, o, n reflect.Value) []Change {
	if o.Kind() == reflect.Slice {
		entity := strings.ToLower(o.Type().Elem().Name())
		return diffSet(entity, byID(o), byID(n))
	}
	return diffOne(name, name, o.Interface(), n.Interface())
}

// yamlName is the name of f in the file, false for fields not in it.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || name == "" {
		return "", false
	}
	return name, true
}

// byID maps the entities of a list to their id: the field named id in the
// file, else the one named name (hosts).
func byID(list reflect.Value) map[string]any {
	m := make(map[string]any, list.Len())
	for i := 0; i < list.Len(); i++ {
		it := list.Index(i)
		m[entityID(it)] = it.Interface()
	}
	return m
}

func entityID(v reflect.Value) string {
	var name string
	for i := 0; i < v.NumField(); i++ {
		switch n, _ := yamlName(v.Type().Field(i)); n {
		case "id":
			return v.Field(i).String()
		case "name":
			name = v.Field(i).String()
		}
	}
	return name
}

func diffSet(entity string, old, new map[string]any) []Change {
	ids := map[string]bool{}
	for id := range old {
		ids[id] = true
	}
	for id := range new {
		ids[id] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	var out []Change
	for _, id := range sorted {
		o, inOld := old[id]
		n, inNew := new[id]
		switch {
		case !inOld:
			out = append(out, Change{Kind: Created, Entity: entity, ID: id, New: shown(fields(n))})
		case !inNew:
			out = append(out, Change{Kind: Deleted, Entity: entity, ID: id, Old: shown(fields(o))})
		default:
			out = append(out, diffOne(entity, id, o, n)...)
		}
	}
	return out
}

func diffOne(entity, id string, o, n any) []Change {
	of, nf := fields(o), fields(n)
	c := Change{Kind: Modified, Entity: entity, ID: id, Old: map[string]string{}, New: map[string]string{}}
	for k, v := range of {
		if nf[k] != v {
			c.Old[k] = v
			if nv, ok := nf[k]; ok {
				c.New[k] = nv
			}
		}
	}
	for k, v := range nf {
		if _, ok := of[k]; !ok {
			c.New[k] = v
		}
	}
	if len(c.Old) == 0 && len(c.New) == 0 {
		return nil
	}
	c.Old, c.New = shown(c.Old), shown(c.New)
	return []Change{c}
}

// secretPrefix marks a secret field's value inside the diff: its hash, so
// a change is seen, which shown replaces before anything leaves Diff.
const secretPrefix = "\x00secret:"

// shown replaces the values of secret fields by SecretChanged.
func shown(m map[string]string) map[string]string {
	for k, v := range m {
		if strings.HasPrefix(v, secretPrefix) {
			m[k] = SecretChanged
		}
	}
	return m
}

// fields flattens an entity to its top-level fields as written in the file,
// each rendered as compact JSON, so that two versions compare field by
// field. A value that is not a struct is one field named "value".
func fields(v any) map[string]string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Struct {
		return map[string]string{"value": render(v)}
	}
	out := make(map[string]string, rv.NumField())
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		name, ok := yamlName(f)
		if !ok {
			continue
		}
		val := render(rv.Field(i).Interface())
		if f.Tag.Get("secret") == "true" {
			sum := sha256.Sum256([]byte(val))
			val = secretPrefix + hex.EncodeToString(sum[:])
		}
		out[name] = val
	}
	return out
}

// render is v as compact JSON of its YAML form, so durations and dates
// read as in the file.
func render(v any) string {
	raw, err := yaml.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var m any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return err.Error()
	}
	j, err := json.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(j)
}
