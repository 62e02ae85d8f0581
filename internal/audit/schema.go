package audit

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Spec describes one event type: when it is written, which measures it
// serves, what its Person names, and its fields. The fields are derived
// from the constructor's struct tags (events.go), so the catalog and what
// the constructors write cannot disagree; docs/AUDIT.md is rendered from
// the catalog (WriteDoc).
type Spec struct {
	Type     Type
	When     string   // when it is written
	Measures []string // the measures it serves (M-ids of docs/MEASURES.md)
	// PersonRole is the part Event.Person plays ("owner", "approver" …),
	// PersonDoc says who that is; both empty when the type names no person.
	PersonRole, PersonDoc string
	// Constructor is the Go name of the typed constructor, empty for a
	// type this version does not write.
	Constructor string
	Fields      []Field

	builder any // the constructor's zero value
}

// Field is one field of an event type: an Event field or an attribute.
type Field struct {
	Name     string // the Event field's JSON name, or the attribute key
	Attr     bool   // an attribute (Event.Attrs), not an Event field
	Prefix   bool   // Name is a prefix: one key per entry, Name+<entry>
	Doc      string // what it means
	Role     string // the part a person named here plays, if any
	Optional bool   // left out when empty or not applicable
}

// Catalog returns every event type, in the order of docs/AUDIT.md.
func Catalog() []Spec {
	c, err := catalog()
	if err != nil {
		panic(err) // a schema error; TestCatalog finds it first
	}
	return slices.Clone(c)
}

// Lookup returns the spec of type t.
func Lookup(t Type) (Spec, bool) {
	c, _ := catalog()
	for _, s := range c {
		if s.Type == t {
			return s, true
		}
	}
	return Spec{}, false
}

// Names reports whether e names person p in any role: as its Person (the
// owner of a session, the approver of a request, the locked person …) or
// in an attribute that names a person (the joiner of a session, the
// requester of a request, the locker …). `tandem audit show --person`
// selects with it, so a person's joins and approvals are found too.
func (e Event) Names(p string) bool {
	if e.Person == p {
		return true
	}
	if len(e.Attrs) == 0 {
		return false
	}
	for _, k := range personKeys()[e.Type] {
		if e.Attrs[k] == p {
			return true
		}
	}
	return false
}

var (
	catalogOnce sync.Once
	catalogList []Spec
	catalogErr  error
	roleKeys    map[Type][]string
)

func catalog() ([]Spec, error) {
	catalogOnce.Do(func() {
		roleKeys = map[Type][]string{}
		for _, s := range specs {
			if s.builder != nil {
				t := reflect.TypeOf(s.builder)
				s.Constructor = t.Name()
				if err := fieldsOf(t, "", "", false, &s.Fields); err != nil {
					catalogErr = fmt.Errorf("audit: %s: %w", s.Type, err)
					return
				}
				sortFields(s.Fields)
			}
			for _, f := range s.Fields {
				if f.Attr && f.Role != "" {
					roleKeys[s.Type] = append(roleKeys[s.Type], f.Name)
				}
			}
			catalogList = append(catalogList, s)
		}
	})
	return catalogList, catalogErr
}

func personKeys() map[Type][]string {
	_, _ = catalog()
	return roleKeys
}

// eventFields are the Event fields a constructor may set, in the order
// the catalog lists them, with what they mean unless a tag says better.
var eventFields = []struct{ name, doc string }{
	{"time", "when it happened (UTC); the log sets it when the writer leaves it empty"},
	{"person", ""}, // per type: Spec.PersonDoc
	{"source", "the client's address (operational data with a shorter retention, M14)"},
	{"session", "the session id (also the name of its recording)"},
	{"tenant", "the host's tenant"},
	{"host", "the target host, as the client named it"},
	{"login", "the login on the target"},
	{"request", "the access request that covers the work (M8)"},
}

func eventFieldIndex(name string) int {
	return slices.IndexFunc(eventFields, func(f struct{ name, doc string }) bool { return f.name == name })
}

// sortFields puts the Event fields first, in their usual order, then the
// attributes as the constructor declares them.
func sortFields(fs []Field) {
	slices.SortStableFunc(fs, func(a, b Field) int {
		switch {
		case !a.Attr && !b.Attr:
			return eventFieldIndex(a.Name) - eventFieldIndex(b.Name)
		case !a.Attr:
			return -1
		case !b.Attr:
			return 1
		}
		return 0
	})
}

// tag reads a constructor field's tag: kind is "field", "attr" or "" (an
// embedded struct without a tag, or no tag at all).
func tag(sf reflect.StructField) (kind, name string, omitempty bool) {
	if v, ok := sf.Tag.Lookup("field"); ok {
		return "field", v, false
	}
	if v, ok := sf.Tag.Lookup("attr"); ok {
		name, opt, _ := strings.Cut(v, ",")
		return "attr", name, opt == "omitempty"
	}
	return "", "", false
}

// fieldsOf appends the catalog fields of constructor type t; prefix and
// parentDoc come from an enclosing attr group (stdin_ …), optional from an
// enclosing pointer.
func fieldsOf(t reflect.Type, prefix, parentDoc string, optional bool, out *[]Field) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		kind, name, omit := tag(sf)
		ft := sf.Type
		ptr := ft.Kind() == reflect.Pointer
		if ptr {
			ft = ft.Elem()
		}
		switch {
		case !sf.IsExported():
			return fmt.Errorf("%s.%s: unexported field", t.Name(), sf.Name)
		case kind == "field":
			if name == "type" {
				continue // the event's type itself
			}
			if eventFieldIndex(name) < 0 {
				return fmt.Errorf("%s.%s: no Event field %q", t.Name(), sf.Name, name)
			}
			if prefix != "" {
				return fmt.Errorf("%s.%s: an Event field inside an attribute group", t.Name(), sf.Name)
			}
			doc := sf.Tag.Get("doc")
			if doc == "" {
				doc = eventFields[eventFieldIndex(name)].doc
			}
			*out = append(*out, Field{Name: name, Doc: doc, Optional: true})
		case kind == "" && sf.Anonymous && ft.Kind() == reflect.Struct:
			if err := fieldsOf(ft, prefix, parentDoc, optional || ptr, out); err != nil {
				return err
			}
		case kind == "":
			return fmt.Errorf("%s.%s: no field or attr tag", t.Name(), sf.Name)
		default:
			doc := sf.Tag.Get("doc")
			if doc == "" {
				return fmt.Errorf("%s.%s: attribute %q has no doc", t.Name(), sf.Name, name)
			}
			if parentDoc != "" {
				doc = parentDoc + ": " + doc
			}
			f := Field{Name: prefix + name, Attr: true, Doc: doc, Role: sf.Tag.Get("role"), Optional: optional || omit || ptr}
			switch {
			case ft.Kind() == reflect.Struct && ft != timeType:
				if err := fieldsOf(ft, prefix+name, doc, f.Optional, out); err != nil {
					return err
				}
				continue
			case ft.Kind() == reflect.Map:
				if ft.Key().Kind() != reflect.String || ft.Elem().Kind() != reflect.String {
					return fmt.Errorf("%s.%s: only map[string]string", t.Name(), sf.Name)
				}
				f.Prefix, f.Optional = true, true
			case !formattable(ft):
				return fmt.Errorf("%s.%s: cannot write a %s", t.Name(), sf.Name, ft)
			}
			*out = append(*out, f)
		}
	}
	return nil
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
)

func formattable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return t == timeType
}

// build is every constructor's Event method: the values of b's tagged
// fields go into a new Event of type t (or b's own type field).
func build(t Type, b any) Event {
	e := Event{Type: t}
	put(&e, reflect.ValueOf(b), "")
	return e
}

func put(e *Event, v reflect.Value, prefix string) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		fv := v.Field(i)
		kind, name, omit := tag(sf)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		switch {
		case kind == "field":
			setField(e, name, fv)
		case kind == "" && sf.Anonymous:
			put(e, fv, prefix)
		case kind == "attr" && fv.Kind() == reflect.Struct && fv.Type() != timeType:
			put(e, fv, prefix+name)
		case kind == "attr" && fv.Kind() == reflect.Map:
			for _, k := range fv.MapKeys() {
				setAttr(e, prefix+name+k.String(), fv.MapIndex(k).String())
			}
		case kind == "attr":
			if s, empty := format(fv); !omit || !empty {
				setAttr(e, prefix+name, s)
			}
		}
	}
}

func setAttr(e *Event, k, v string) {
	if e.Attrs == nil {
		e.Attrs = map[string]string{}
	}
	e.Attrs[k] = v
}

func setField(e *Event, name string, v reflect.Value) {
	switch name {
	case "time":
		e.Time = v.Interface().(time.Time)
	case "type":
		if s := v.String(); s != "" {
			e.Type = Type(s)
		}
	case "person":
		e.Person = v.String()
	case "source":
		e.Source = v.String()
	case "session":
		e.Session = v.String()
	case "tenant":
		e.Tenant = v.String()
	case "host":
		e.Host = v.String()
	case "login":
		e.Login = v.String()
	case "request":
		e.Request = v.String()
	}
}

// format writes one value as text and says whether it is empty.
func format(v reflect.Value) (string, bool) {
	switch v.Type() {
	case timeType:
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return "", true
		}
		return t.UTC().Format(time.RFC3339), false
	case durationType:
		d := time.Duration(v.Int())
		return d.String(), d == 0
	}
	switch v.Kind() {
	case reflect.String:
		return v.String(), v.Len() == 0
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), !v.Bool()
	case reflect.Int, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), v.Int() == 0
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), v.Uint() == 0
	case reflect.Slice:
		return strings.Join(v.Interface().([]string), ","), v.Len() == 0
	}
	return fmt.Sprint(v.Interface()), false // not reached: fieldsOf refuses other types, and TestCatalog runs it
}
