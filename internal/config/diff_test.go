package config

import (
	"reflect"
	"strings"
	"testing"
)

// example loads testdata/example.yaml, fresh for each call.
func example(t *testing.T) *Config {
	t.Helper()
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDiffCoversEverySection: changing any top-level section of Config
// shows up in Diff under that section's name (or its entities' name), so a
// section added to Config can never be left out of the M12 record.
func TestDiffCoversEverySection(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	for i := 0; i < typ.NumField(); i++ {
		name, ok := yamlName(typ.Field(i))
		if !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			old, new := example(t), example(t)
			f := reflect.ValueOf(new).Elem().Field(i)
			if !mutate(f) {
				t.Fatalf("section %s (%s): the test cannot change it; teach mutate this kind", name, f.Type())
			}
			want := name
			if f.Kind() == reflect.Slice {
				want = strings.ToLower(f.Type().Elem().Name())
			}
			changes := Diff(old, new)
			for _, c := range changes {
				if c.Entity == want {
					return
				}
			}
			t.Errorf("a change of %s is not in the diff (entity %q): %+v", name, want, changes)
		})
	}
}

// mutate changes v in place: the first string or integer it finds, or a
// list by one more element (an entity with a new id).
func mutate(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
		return true
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
		return true
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if _, ok := yamlName(v.Type().Field(i)); ok && mutate(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice:
		e := reflect.New(v.Type().Elem()).Elem()
		if !mutate(e) {
			return false
		}
		v.Set(reflect.Append(v, e))
		return true
	}
	return false
}

// TestDiffAuditAndRecording: the audit: and recording: sections are
// diffed field by field, like gateway: and policy:.
func TestDiffAuditAndRecording(t *testing.T) {
	old, new := example(t), example(t)
	new.Audit.CheckpointEvents = old.Audit.CheckpointEvents + 5
	new.Recording.StreamCap = 4096
	got := map[string]Change{}
	for _, c := range Diff(old, new) {
		got[c.Entity] = c
	}
	a, r := got["audit"], got["recording"]
	if a.Kind != Modified || a.ID != "audit" || a.New["checkpoint_events"] == "" || a.Old["checkpoint_events"] == a.New["checkpoint_events"] {
		t.Errorf("audit change = %+v", a)
	}
	if r.Kind != Modified || r.New["stream_cap"] != "4096" || len(r.New) != 1 {
		t.Errorf("recording change = %+v", r)
	}
	if len(got) != 2 {
		t.Errorf("changes = %+v, want audit and recording only", got)
	}
}

// TestDiffHidesSecrets: a field tagged secret is reported as changed,
// never with its value, whether it changed or the entity came or went.
func TestDiffHidesSecrets(t *testing.T) {
	type vault struct {
		Path  string `yaml:"path"`
		Token string `yaml:"token" secret:"true"`
	}
	ch := diffOne("vault", "vault", vault{"a", "hunter2"}, vault{"a", "hunter3"})
	if len(ch) != 1 || ch[0].Old["token"] != SecretChanged || ch[0].New["token"] != SecretChanged {
		t.Fatalf("changes = %+v", ch)
	}
	if ch := diffOne("vault", "vault", vault{"a", "same"}, vault{"b", "same"}); len(ch) != 1 || ch[0].New["token"] != "" {
		t.Errorf("an unchanged secret is reported: %+v", ch)
	}
	set := diffSet("vault", map[string]any{}, map[string]any{"v": vault{"a", "hunter2"}})
	if len(set) != 1 || strings.Contains(set[0].New["token"], "hunter2") || set[0].New["token"] != SecretChanged {
		t.Errorf("created = %+v", set)
	}
}

// TestDiffEntities: entities of a list are matched by id (hosts by name),
// in id order.
func TestDiffEntities(t *testing.T) {
	old, new := example(t), example(t)
	new.Hosts[0].Address = "192.0.2.9:22"
	new.Persons = new.Persons[1:]
	var got []string
	for _, c := range Diff(old, new) {
		got = append(got, string(c.Kind)+" "+c.Entity+" "+c.ID)
	}
	want := []string{"delete person " + old.Persons[0].ID, "modify host " + old.Hosts[0].Name}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changes = %q, want %q", got, want)
	}
}
