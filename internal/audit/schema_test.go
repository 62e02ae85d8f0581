package audit

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCatalog(t *testing.T) {
	c, err := catalog()
	if err != nil {
		t.Fatal(err)
	}
	mid := regexp.MustCompile(`^M[1-9][0-9]?$`)
	for _, s := range c {
		if s.When == "" || len(s.Measures) == 0 {
			t.Errorf("%s: says neither when it is written nor which measure it serves", s.Type)
		}
		for _, m := range s.Measures {
			if !mid.MatchString(m) {
				t.Errorf("%s: measure %q is no M-id", s.Type, m)
			}
		}
		seen := map[string]bool{}
		hasPerson := false
		for _, f := range s.Fields {
			if seen[f.Name] {
				t.Errorf("%s: field %s twice", s.Type, f.Name)
			}
			seen[f.Name] = true
			hasPerson = hasPerson || f.Name == "person" && !f.Attr
		}
		if hasPerson != (s.PersonDoc != "" && s.PersonRole != "") {
			t.Errorf("%s: the constructor sets person: %v, but the spec says who that is: %q %q", s.Type, hasPerson, s.PersonRole, s.PersonDoc)
		}
	}
}

// constants returns the values of the constants declared in file (of the
// given type, or untyped when typ is empty).
func constants(t *testing.T, file, typ string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			id, _ := vs.Type.(*ast.Ident)
			if (typ == "") != (id == nil) || id != nil && id.Name != typ {
				continue
			}
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func TestCatalogCoversEveryType(t *testing.T) {
	types := constants(t, "event.go", "Type")
	if len(types) < 30 {
		t.Fatalf("found only %d Type constants in event.go", len(types))
	}
	var listed []string
	for _, s := range Catalog() {
		listed = append(listed, string(s.Type))
	}
	for _, ty := range types {
		if n := strings.Count(" "+strings.Join(listed, " ")+" ", " "+ty+" "); n != 1 {
			t.Errorf("type %s is in the catalog %d times, want once", ty, n)
		}
	}
	if len(listed) != len(types) {
		t.Errorf("catalog lists %d types, event.go declares %d", len(listed), len(types))
	}
}

// TestKeyConstants: every key a constructor writes has its constant in
// attrs.go, and every constant is written by some constructor.
func TestKeyConstants(t *testing.T) {
	consts := constants(t, "attrs.go", "")
	written := map[string]bool{}
	for _, s := range Catalog() {
		for _, f := range s.Fields {
			if f.Attr {
				written[f.Name] = true
			}
		}
	}
	for _, k := range consts {
		if !written[k] {
			t.Errorf("attrs.go declares %q, which no constructor writes", k)
		}
		delete(written, k)
	}
	for k := range written {
		t.Errorf("a constructor writes %q, which attrs.go does not declare", k)
	}
}

// fill sets every field of v (a constructor's value) to something
// non-empty: pointers allocated, maps with one entry.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.Map:
		v.Set(reflect.ValueOf(map[string]string{"name": "x"}))
	case reflect.Slice:
		v.Set(reflect.ValueOf([]string{"a", "b"}))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	}
}

// TestConstructorsWriteTheCatalog fills every constructor completely and
// checks that it writes its type and exactly the catalogued fields.
func TestConstructorsWriteTheCatalog(t *testing.T) {
	for _, s := range Catalog() {
		if s.builder == nil {
			continue
		}
		v := reflect.New(reflect.TypeOf(s.builder)).Elem()
		fill(v)
		if f, ok := reflect.TypeOf(s.builder).FieldByName("State"); ok && f.Tag.Get("field") == "type" {
			v.FieldByName("State").SetString(string(s.Type))
		}
		e := v.Interface().(interface{ Event() Event }).Event()
		if e.Type != s.Type {
			t.Errorf("%s builds type %s, the catalog lists it for %s", s.Constructor, e.Type, s.Type)
		}
		want, wantField := map[string]bool{}, map[string]bool{}
		for _, f := range s.Fields {
			name := f.Name
			if f.Prefix {
				name += "name"
			}
			if !f.Attr {
				wantField[name] = true
				continue
			}
			want[name] = true
			if _, ok := e.Attrs[name]; !ok {
				t.Errorf("%s: %s is catalogued but not written", s.Type, name)
			}
		}
		for k := range e.Attrs {
			if !want[k] {
				t.Errorf("%s: writes %s, which the catalog does not list", s.Type, k)
			}
		}
		for name, val := range map[string]string{"person": e.Person, "source": e.Source, "session": e.Session, "tenant": e.Tenant,
			"host": e.Host, "login": e.Login, "request": e.Request} {
			if (val != "") != wantField[name] {
				t.Errorf("%s: Event field %s is %q, catalogued: %v", s.Type, name, val, wantField[name])
			}
		}
		if !e.Time.IsZero() != wantField["time"] {
			t.Errorf("%s: time set: %v, catalogued: %v", s.Type, !e.Time.IsZero(), wantField["time"])
		}
	}
}

// TestConstructorsWriteTheOldShapes: what the constructors build is the
// event the gateway built by hand before (internal/gateway), so converting
// a call site changes nothing in the log.
func TestConstructorsWriteTheOldShapes(t *testing.T) {
	base := Target{Person: "alice", Session: "s1", Host: "db1", Tenant: "t1", Login: "root"}
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	status := uint32(0)
	fourEyes := true
	tests := []struct {
		got  Event
		want Event
	}{
		{SessionJoinEvent{Target: base, Participant: "bob", Mode: "peer"}.Event(),
			Event{Type: SessionJoin, Person: "alice", Session: "s1", Host: "db1", Tenant: "t1", Login: "root",
				Attrs: map[string]string{"participant": "bob", "mode": "peer", "external": "false"}}},
		{SessionStateEvent{State: SessionLive, Target: base, Reason: "bob joined"}.Event(),
			Event{Type: SessionLive, Person: "alice", Session: "s1", Host: "db1", Tenant: "t1", Login: "root",
				Attrs: map[string]string{"reason": "bob joined"}}},
		{SessionStartEvent{Target: Target{Person: "alice", Source: "127.0.0.1:1", Host: "db1", Login: "root"}, Action: "shell", Mode: "user", FourEyes: &fourEyes}.Event(),
			Event{Type: SessionStart, Person: "alice", Source: "127.0.0.1:1", Host: "db1", Login: "root",
				Attrs: map[string]string{"action": "shell", "mode": "user", "four_eyes": "true"}}},
		{SessionEndEvent{Target: base, ExecTraffic: &ExecTraffic{In: 3}, ExitStatus: &status, RecordingSummary: &RecordingSummary{
			Path: "/r", SHA256: "aa", FileSHA256: "bb",
			Stdin: &StreamDigest{Bytes: 3, SHA256: "cc"}, Stdout: &StreamDigest{Bytes: 0, SHA256: "dd"}, Stderr: &StreamDigest{SHA256: "dd", Bytes: 0},
		}}.Event(),
			Event{Type: SessionEnd, Person: "alice", Session: "s1", Host: "db1", Tenant: "t1", Login: "root", Attrs: map[string]string{
				"bytes_in": "3", "bytes_out": "0", "bytes_err": "0", "exit_status": "0",
				"recording": "/r", "recording_sha256": "aa", "recording_file_sha256": "bb",
				"stdin_bytes": "3", "stdin_sha256": "cc", "stdout_bytes": "0", "stdout_sha256": "dd", "stderr_bytes": "0", "stderr_sha256": "dd"}}},
		{RequestApproveEvent{RequestRef: RequestRef{Conn: Conn{Person: "bob", Source: "s"}, Request: "r1", Hosts: []string{"db1", "db2"}, Login: "deploy", Requester: "carol"},
			Comment: "ok", Approvals: 1, ValidUntil: at}.Event(),
			Event{Type: RequestApprove, Person: "bob", Request: "r1", Source: "s", Attrs: map[string]string{
				"hosts": "db1,db2", "login": "deploy", "requester": "carol", "comment": "ok", "approvals": "1", "tty": "false", "valid_until": "2025-03-01T09:00:00Z"}}},
		{RequestCreateEvent{RequestRef: RequestRef{Conn: Conn{Person: "carol"}, Request: "r1", Hosts: []string{"db1"}, Login: "deploy", Requester: "carol"},
			Duration: time.Hour, Reason: "JIRA-1"}.Event(),
			Event{Type: RequestCreate, Person: "carol", Request: "r1", Attrs: map[string]string{
				"hosts": "db1", "login": "deploy", "requester": "carol", "duration": "1h0m0s", "reason": "JIRA-1", "tty": "false"}}},
		{LockEvent{Time: at, Person: "dave", By: "bob", Reason: "left"}.Event(),
			Event{Time: at, Type: Lock, Person: "dave", Attrs: map[string]string{"by": "bob", "reason": "left"}}},
		{ConfigChangeEvent{Kind: "modify", Entity: "person", ID: "bob", Trigger: "reload of x", Digest: "d",
			Old: map[string]string{"name": "Bob"}, New: map[string]string{"name": "Robert"}}.Event(),
			Event{Type: ConfigChange, Attrs: map[string]string{"kind": "modify", "entity": "person", "id": "bob", "trigger": "reload of x",
				"digest": "d", "old.name": "Bob", "new.name": "Robert"}}},
		{AuthFailureEvent{Conn: Conn{Source: "1.2.3.4:5"}, Stage: "kex", Reason: "no key exchange in time", Timeout: true}.Event(),
			Event{Type: AuthFailure, Source: "1.2.3.4:5", Attrs: map[string]string{"stage": "kex", "attempts": "0", "reason": "no key exchange in time", "timeout": "true"}}},
		{SessionDeniedEvent{Target: Target{Person: "alice", Source: "s"}, Channel: "session", Reason: "locked", ConnectionClosed: &fourEyes}.Event(),
			Event{Type: SessionDenied, Person: "alice", Source: "s", Attrs: map[string]string{"channel": "session", "reason": "locked", "connection_closed": "true"}}},
		{GatewayStopEvent{}.Event(), Event{Type: GatewayStop}},
		{RecordingOpened(RecordingExport, Recording{Person: "alice", Session: "s1"}), Event{Type: RecordingExport, Person: "alice", Session: "s1"}},
		{RecordingOpened(RecordingRead, Recording{Person: "alice", Session: "s1"}), Event{Type: RecordingRead, Person: "alice", Session: "s1"}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.want.Type, tt.got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	join := SessionJoinEvent{Target: Target{Person: "alice", Session: "s1"}, Participant: "bob"}.Event()
	lock := LockEvent{Person: "dave", By: "bob"}.Event()
	approve := RequestApproveEvent{RequestRef: RequestRef{Conn: Conn{Person: "bob"}, Requester: "carol"}}.Event()
	// A key that names a person for one type names nothing for another:
	// config.change's id is an entity's id.
	change := ConfigChangeEvent{ID: "bob", New: map[string]string{"by": "bob"}}.Event()
	oldJoin := Event{Type: SessionJoin, Person: "alice", Attrs: map[string]string{"participant": "bob"}}
	tests := []struct {
		e      Event
		person string
		want   bool
	}{
		{join, "alice", true}, {join, "bob", true}, {join, "carol", false},
		{lock, "dave", true}, {lock, "bob", true},
		{approve, "bob", true}, {approve, "carol", true},
		{change, "bob", false},
		{oldJoin, "bob", true},
		{Event{Type: "no.such.type", Attrs: map[string]string{"participant": "bob"}}, "bob", false},
	}
	for _, tt := range tests {
		if got := tt.e.Names(tt.person); got != tt.want {
			t.Errorf("%s %v names %s: %v, want %v", tt.e.Type, tt.e.Attrs, tt.person, got, tt.want)
		}
	}
}

func TestAuditDocUpToDate(t *testing.T) {
	var b bytes.Buffer
	if err := WriteDoc(&b); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "AUDIT.md"))
	if err != nil || !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("docs/AUDIT.md is stale: run `%s` (err %v)", DocCommand, err)
	}
}

// TestRetentionFieldsUpToDate: docs/RETENTION-FIELDS.md lists every field
// with the class the writer encrypts it under.
func TestRetentionFieldsUpToDate(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRetentionFields(&b); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "RETENTION-FIELDS.md"))
	if err != nil || !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("docs/RETENTION-FIELDS.md is stale: run `%s` (err %v)", RetentionDocCommand, err)
	}
	for _, want := range []string{"| operational | `source` | event |", "| content | `command` | attrs |", "| operational | `user` | attrs |", "| clear | `tenant` | record |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("RETENTION-FIELDS.md lacks %q", want)
		}
	}
}

func TestOrRefuse(t *testing.T) {
	var m MemorySink
	ev := CommandEvent{Conn: Conn{Person: "alice"}, Command: "whoami"}.Event()
	if err := OrRefuse(context.Background(), &m, ev); err != nil {
		t.Fatal(err)
	}
	disk := errors.New("disk full")
	m.SetErr(disk)
	err := OrRefuse(context.Background(), &m, ev)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, disk) {
		t.Fatalf("OrRefuse = %v, want ErrUnavailable wrapping the sink's error", err)
	}
	var logged bytes.Buffer
	BestEffort(context.Background(), &m, slog.New(slog.NewTextHandler(&logged, nil)), ev)
	if !strings.Contains(logged.String(), "type=command") || !strings.Contains(logged.String(), "disk full") {
		t.Fatalf("BestEffort logged %q", logged.String())
	}
	if got := m.Types(); !slices.Equal(got, []Type{Command}) {
		t.Fatalf("stored %v", got)
	}
}

// TestV1LogStillReads: a log written before the typed constructors
// (testdata/v1log, see its README) still verifies, and --person finds
// every person in it in every role.
func TestV1LogStillReads(t *testing.T) {
	dir := filepath.Join("testdata", "v1log")
	pub, err := os.ReadFile(filepath.Join(dir, "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDeep(dir, strings.TrimSpace(string(pub)), "", nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	persons := func(p string) []Type {
		var ts []Type
		if err := Read(dir, Filter{Person: p}, func(r Record) error { ts = append(ts, r.Event.Type); return nil }); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for p, want := range map[string][]Type{
		"bob":   {Command, SessionJoin, SessionLeave, RequestApprove, Lock},
		"carol": {RequestCreate, RequestApprove},
		"dave":  {Lock},
	} {
		if got := persons(p); !slices.Equal(got, want) {
			t.Errorf("--person %s: %v, want %v", p, got, want)
		}
	}
}
