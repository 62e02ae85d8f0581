package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// Markers put into every field that must never reach the disk in clear.
const (
	markSource  = "198.51.100.77:40022"
	markCommand = "MARKER-CMD-echo-91bc"
	markUser    = "MARKER-USR-22de"
)

var (
	day0 = time.Date(2030, 3, 1, 10, 0, 0, 0, time.UTC)
	day2 = day0.AddDate(0, 0, 2)
)

// dayClock is a clock the test moves between days; each reading advances
// it a millisecond, so every event has its own time.
type dayClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *dayClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *dayClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func sessionStart(tenant string) Event {
	return SessionStartEvent{
		Target:  Target{Person: "alice", Source: markSource, Session: "s-" + tenant, Tenant: tenant, Host: "db1", Login: "root"},
		Action:  "exec",
		Mode:    "user",
		Command: markCommand,
	}.Event()
}

func authFailure() Event {
	return AuthFailureEvent{Conn: Conn{Source: markSource}, Stage: "auth", Attempts: 1,
		ClientUser: ClientUser{User: markUser}}.Event()
}

// shredLog writes events of acme and globex on day 0 and day 2 and
// returns the options and the vault.
func shredLog(t *testing.T) (Options, *vault.Vault) {
	t.Helper()
	o := testOpts(t)
	clock := &dayClock{t: day0}
	o.Now = clock.Now
	l := mustOpen(t, o)
	for _, day := range []time.Time{day0, day2} {
		clock.set(day)
		for _, e := range []Event{sessionStart("acme"), sessionStart("globex"), authFailure()} {
			if err := l.Append(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if day == day0 {
			if _, err := l.Checkpoint(); err != nil { // a log.checkpoint record, too
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return o, o.Keys.(*vault.Vault)
}

func mustVerifyDeep(t *testing.T, o Options, keys KeyReader) *Report {
	t.Helper()
	rep, err := VerifyDeep(o.Dir, pubKey(t, o.Dir), o.WitnessFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// readKeys reads every record with keys, unreadable parts and all.
func readKeys(t *testing.T, dir string, keys KeyReader) []Record {
	t.Helper()
	var out []Record
	if err := ReadKeys(dir, keys, Filter{}, func(r Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCryptoShredding(t *testing.T) {
	o, v := shredLog(t)
	if rep := mustVerifyDeep(t, o, v); !rep.OK() || len(rep.Shredded) != 0 || len(rep.Warnings) != 0 {
		t.Fatalf("before shredding: %+v", rep)
	}
	if _, err := v.Shred(vault.Operational, "acme", day0); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, o); !rep.OK() {
		t.Fatalf("verify after shredding: %+v", rep)
	}
	rep := mustVerifyDeep(t, o, v)
	want := []PartCount{{Tenant: "acme", Class: vault.Operational, Day: vault.Day(day0), Parts: 1}}
	if !rep.OK() || !slices.Equal(rep.Shredded, want) || len(rep.Warnings) != 0 {
		t.Fatalf("deep verify after shredding: %+v", rep)
	}
	for _, r := range readKeys(t, o.Dir, v) {
		e := r.Event
		if e.Type != SessionStart {
			if len(r.Unreadable) != 0 {
				t.Errorf("record %d (%s) lost parts: %+v", r.Index, e.Type, r.Unreadable)
			}
			continue
		}
		shredded := e.Tenant == "acme" && e.Time.Before(day2)
		if e.Person != "alice" || e.Session != "s-"+e.Tenant || e.Host != "db1" || e.Attrs[KeyCommand] != markCommand {
			t.Errorf("record %d: admin or content fields missing: %+v", r.Index, e)
		}
		switch {
		case shredded && (e.Source != "" || len(r.Unreadable) != 1 || r.Unreadable[0] != (Unreadable{Class: vault.Operational, Day: vault.Day(day0), Key: r.Unreadable[0].Key, Reason: ReasonShredded, err: r.Unreadable[0].err})):
			t.Errorf("record %d (acme, day 0): source %q, unreadable %+v", r.Index, e.Source, r.Unreadable)
		case !shredded && (e.Source != markSource || len(r.Unreadable) != 0):
			t.Errorf("record %d (%s, %s): source %q, unreadable %+v", r.Index, e.Tenant, e.Time, e.Source, r.Unreadable)
		}
	}
	// Without keys only the structure is known, and every part says so.
	for _, r := range readKeys(t, o.Dir, nil) {
		if r.Event.Person != "" || r.Event.Source != "" || r.Event.Attrs != nil || (len(r.Unreadable) == 0) != (r.Event.Type == GatewayStop) {
			t.Errorf("record %d read without keys: %+v %+v", r.Index, r.Event, r.Unreadable)
		}
	}
}

// crossKeys hands out another tenant's key whatever is asked for.
type crossKeys struct {
	v      *vault.Vault
	tenant string
}

func (c crossKeys) KeyByID(cl vault.Class, _, day, _ string) ([]byte, error) {
	_, k, err := c.v.Key(cl, c.tenant, mustDay(day))
	return k, err
}

func mustDay(s string) time.Time {
	d, err := vault.ParseDay(s)
	if err != nil {
		panic(err)
	}
	return d
}

// A tenant's parts never open with another tenant's key: neither handed
// over by the key source nor swapped on disk in the vault.
func TestPartsBoundToTenant(t *testing.T) {
	o, v := shredLog(t)
	for _, r := range readKeys(t, o.Dir, crossKeys{v, "globex"}) {
		if r.Event.Tenant != "acme" {
			continue
		}
		if r.Event.Person != "" || r.Event.Source != "" || r.Event.Attrs != nil || len(r.Unreadable) == 0 {
			t.Fatalf("acme record %d opened with globex's keys: %+v", r.Index, r.Event)
		}
		for _, u := range r.Unreadable {
			if u.Reason != ReasonCorrupt {
				t.Fatalf("acme record %d with globex's keys: %+v", r.Index, u)
			}
		}
	}
	if rep := mustVerifyDeep(t, o, crossKeys{v, "globex"}); rep.OK() {
		t.Fatal("deep verify accepted parts opened with another tenant's keys")
	}

	// Swap the key files of acme and globex for day 0 (admin class).
	dir := filepath.Join(filepath.Dir(o.Dir), "vault", "admin-keys")
	a, g := filepath.Join(dir, "acme", vault.Day(day0)+".key"), filepath.Join(dir, "globex", vault.Day(day0)+".key")
	ab, _ := os.ReadFile(a)
	gb, _ := os.ReadFile(g)
	if len(ab) == 0 || len(gb) == 0 {
		t.Fatal("no key files to swap")
	}
	writeParts(t, a, [][]byte{gb})
	writeParts(t, g, [][]byte{ab})
	fresh := keysFor(t, o.Dir) // no cached keys
	for _, r := range readKeys(t, o.Dir, fresh) {
		if (r.Event.Tenant == "acme" || r.Event.Tenant == "globex") && r.Event.Time.Before(day2) && r.Event.Person != "" {
			t.Fatalf("record %d opened with a swapped key file: %+v", r.Index, r.Event)
		}
	}
	if rep := mustVerifyDeep(t, o, fresh); rep.OK() {
		t.Fatal("deep verify accepted swapped key files")
	}
}

// No field of the markers reaches any file of the log in clear: records,
// leaves, checkpoints, keys, the witness.
func TestNoPlaintextOnDisk(t *testing.T) {
	o, _ := shredLog(t)
	files := 0
	for _, root := range []string{filepath.Dir(o.Dir)} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			for _, m := range []string{markSource, markCommand, markUser, "198.51.100.77", "alice", `"db1"`} {
				if bytes.Contains(b, []byte(m)) {
					t.Errorf("%s holds %q in clear", p, m)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 5 {
		t.Fatalf("only %d files looked at", files)
	}
}

// editRecord rewrites record i with edit (on its decoded JSON) and fixes
// the frame; with fixLeaf it recomputes the leaf hash too.
func editRecord(t *testing.T, o Options, i int, fixLeaf bool, edit func(w *wireV2)) {
	t.Helper()
	fr, lv := frames(t, o.Dir), leaves(t, o.Dir)
	var w wireV2
	if err := json.Unmarshal(payloadOf(fr[i]), &w); err != nil {
		t.Fatal(err)
	}
	edit(&w)
	b, err := json.Marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	fr[i] = refit(b)
	writeParts(t, filepath.Join(o.Dir, recordsFile), fr)
	if fixLeaf {
		lv[i] = mustLeafHash(t, b)
		writeParts(t, filepath.Join(o.Dir, leavesFile), lv)
	}
}

func TestPartTampering(t *testing.T) {
	const victim, donor = 0, 1 // acme's and globex's session.start of day 0
	tests := []struct {
		name    string
		fixLeaf bool
		edit    func(w *wireV2, donor wireV2)
		want    string // in a problem
	}{
		{"flip a byte of ct", false, func(w *wireV2, _ wireV2) {
			ct, _ := base64.StdEncoding.DecodeString(w.Parts[0].CT)
			ct[30] ^= 1
			w.Parts[0].CT = base64.StdEncoding.EncodeToString(ct)
		}, "record 0: part: ct does not match its ct_sha256"},
		{"change ct_sha256", false, func(w *wireV2, _ wireV2) {
			w.Parts[0].CTSHA256 = strings.Repeat("0", 64)
		}, "record 0: part: ct does not match its ct_sha256"},
		{"drop ct and change ct_sha256", false, func(w *wireV2, _ wireV2) {
			w.Parts[0].CT, w.Parts[0].CTSHA256 = "", strings.Repeat("0", 64)
		}, "record 0 does not match its leaf hash"},
		{"move a part from another record", false, func(w *wireV2, d wireV2) {
			w.Parts[2] = d.Parts[2]
		}, "record 0 does not match its leaf hash"},
		{"move a part and fix the leaf", true, func(w *wireV2, d wireV2) {
			w.Parts[2] = d.Parts[2]
		}, "a record in [0, "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, v := shredLog(t)
			var d wireV2
			if err := json.Unmarshal(payloadOf(frames(t, o.Dir)[donor]), &d); err != nil {
				t.Fatal(err)
			}
			editRecord(t, o, victim, tc.fixLeaf, func(w *wireV2) { tc.edit(w, d) })
			for _, rep := range []*Report{mustVerify(t, o), mustVerifyDeep(t, o, v)} {
				if rep.OK() || rep.FirstBad != victim || !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
					t.Errorf("FirstBad %d, problems:\n%s", rep.FirstBad, strings.Join(rep.Problems, "\n"))
				}
			}
			if tc.fixLeaf {
				// Deep verification names the moved part itself: it was
				// sealed for another record's type and time.
				rep := mustVerifyDeep(t, o, v)
				if !strings.Contains(strings.Join(rep.Problems, "\n"), "record 0: operational part") {
					t.Errorf("moved part not named: %s", strings.Join(rep.Problems, "\n"))
				}
			}
		})
	}
}
