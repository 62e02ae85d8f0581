package config

import (
	"encoding/json"
	"sort"

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
// the changed fields only, as compact JSON values; the configuration holds
// no secrets (keys are public), so every field may be recorded.
type Change struct {
	Kind   ChangeKind
	Entity string // gateway, policy, tenant, person, role, host
	ID     string
	Old    map[string]string
	New    map[string]string
}

// Diff lists the changes that turn old into new, in a stable order.
func Diff(old, new *Config) []Change {
	var out []Change
	out = append(out, diffOne("gateway", "gateway", old.Gateway, new.Gateway)...)
	out = append(out, diffOne("policy", "policy", old.Policy, new.Policy)...)
	out = append(out, diffOne("retention", "retention", old.Retention, new.Retention)...)
	out = append(out, diffSet("tenant", byID(old.Tenants, func(t Tenant) string { return t.ID }), byID(new.Tenants, func(t Tenant) string { return t.ID }))...)
	out = append(out, diffSet("person", byID(old.Persons, func(p Person) string { return p.ID }), byID(new.Persons, func(p Person) string { return p.ID }))...)
	out = append(out, diffSet("role", byID(old.Roles, func(r Role) string { return r.ID }), byID(new.Roles, func(r Role) string { return r.ID }))...)
	out = append(out, diffSet("host", byID(old.Hosts, func(h Host) string { return h.Name }), byID(new.Hosts, func(h Host) string { return h.Name }))...)
	return out
}

func byID[T any](items []T, id func(T) string) map[string]any {
	m := make(map[string]any, len(items))
	for _, it := range items {
		m[id(it)] = it
	}
	return m
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
			out = append(out, Change{Kind: Created, Entity: entity, ID: id, New: fields(n)})
		case !inNew:
			out = append(out, Change{Kind: Deleted, Entity: entity, ID: id, Old: fields(o)})
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
	return []Change{c}
}

// fields flattens an entity to its top-level YAML fields, each rendered as
// compact JSON, so that two versions compare field by field.
func fields(v any) map[string]string {
	raw, err := yaml.Marshal(v)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return map[string]string{"error": err.Error()}
	}
	out := make(map[string]string, len(m))
	for k, val := range m {
		j, err := json.Marshal(val)
		if err != nil {
			j = []byte(err.Error())
		}
		out[k] = string(j)
	}
	return out
}
