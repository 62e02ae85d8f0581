package syslog

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

// TestLoadCursorRefusesDamaged: a cursor the operator edited into
// something no shipper writes stops the start with a message that names
// the file, instead of seeking to a negative offset on every attempt (a
// collector that never gets anything, with only a seek error to show).
func TestLoadCursorRefusesDamaged(t *testing.T) {
	for name, text := range map[string]string{
		"garbage":              "not json",
		"empty":                "",
		"no segment":           `{}`,
		"segment zero":         `{"segment":0}`,
		"negative segment":     `{"segment":-1}`,
		"negative checkpoints": `{"segment":1,"next":{"index":0,"offset":0},"checkpoints":-5}`,
		"negative offset":      `{"segment":1,"next":{"index":3,"offset":-1},"checkpoints":0}`,
		"trailing garbage":     `{"segment":1}x`,
		"index too large":      `{"segment":1,"next":{"index":18446744073709551616}}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.cursor")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadCursor(path, 1)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("loadCursor(%q) = %v, want an error naming the damaged file", text, err)
			}
		})
	}
}

// FuzzLoadCursor: whatever the file holds, loadCursor either refuses it
// or returns a cursor the shipper can seek with, which saves and loads
// again unchanged.
func FuzzLoadCursor(f *testing.F) {
	for _, s := range []string{`{"segment":1,"next":{"index":4,"offset":812},"checkpoints":330}`, `{"segment":1}`,
		`{"segment":2,"checkpoints":-1}`, `{"segment":1,"next":{"offset":-9}}`, "garbage", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "c.cursor")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadCursor(path, 3)
		if err != nil {
			return
		}
		if c.Segment < 1 || c.Next.Offset < 0 || c.Checkpoints < 0 {
			t.Fatalf("loadCursor accepted %+v from %q", c, b)
		}
		if err := c.save(path); err != nil {
			t.Fatal(err)
		}
		again, err := loadCursor(path, 3)
		if err != nil || again != c {
			t.Fatalf("saved %+v, loaded %+v, %v", c, again, err)
		}
	})
}

// TestShipCursorBeyondTheLog: a cursor past the end of the log (the
// operator's edit, or a log restored from an older backup) is said in the
// log and the current segment is sent again from its start: duplicates
// the collector removes, nothing skipped.
func TestShipCursorBeyondTheLog(t *testing.T) {
	for name, cur := range map[string]cursor{
		"segment":     {Segment: 9},
		"index":       {Segment: 1, Next: audit.Position{Index: 1000}},
		"checkpoints": {Segment: 1, Checkpoints: 1 << 40},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.append(t, 20)
			logged := &testenv.SyncBuffer{}
			f.opts.Log = slog.New(slog.NewTextHandler(logged, nil))
			if err := os.MkdirAll(f.opts.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := cur.save(CursorPath(f.opts.StateDir, "central")); err != nil {
				t.Fatal(err)
			}
			run(t, f.opts)
			waitRecords(t, f.srv, f.log.Size())
			checkOnceInOrder(t, recordIndexes(f.srv.messages()), f.log.Size())
			if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(strings.Join(f.srv.messages(), "\n"), "[checkpoint@32473 ") }) {
				t.Fatal("no checkpoint message arrived")
			}
			if !strings.Contains(logged.String(), "beyond the log") {
				t.Errorf("nothing logged about the cursor:\n%s", logged.String())
			}
		})
	}
}

// A cursor is small JSON; keep the struct and its tags in step with the
// file format the docs describe.
func TestCursorFileFormat(t *testing.T) {
	b, _ := json.Marshal(cursor{Segment: 2, Next: audit.Position{Index: 5, Offset: 900}, Checkpoints: 77})
	if string(b) != `{"segment":2,"next":{"index":5,"offset":900},"checkpoints":77}` {
		t.Fatalf("cursor file: %s", b)
	}
}
