package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// TestTakeReloadRequest: a fresh request names its person once; a bare
// signal, a stale request or a damaged file name nobody.
func TestTakeReloadRequest(t *testing.T) {
	now := time.Now().UTC()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name   string
		write  func(dir string)
		person string
	}{
		{"bare signal", func(string) {}, ""},
		{"fresh request", func(dir string) {
			must(t, writeJSONFile(reloadRequestPath(dir), reloadRequest{Person: "alice", Actor: "local:root", Time: now}))
		}, "alice"},
		{"stale request", func(dir string) {
			must(t, writeJSONFile(reloadRequestPath(dir), reloadRequest{Person: "alice", Actor: "local:root", Time: now.Add(-2 * requestMaxAge)}))
		}, ""},
		{"damaged file", func(dir string) { must(t, os.WriteFile(reloadRequestPath(dir), []byte("{"), 0o600)) }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.write(dir)
			by := takeReloadRequest(dir, now, log)
			if by.Person != c.person {
				t.Errorf("person %q, want %q", by.Person, c.person)
			}
			if _, err := os.Stat(reloadRequestPath(dir)); !os.IsNotExist(err) {
				t.Error("the request was not taken")
			}
			if again := takeReloadRequest(dir, now, log); again.Person != "" || again.Trigger != "signal" {
				t.Errorf("the next signal is %+v, want a bare signal", again)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRecordChanges: config.reload names who reloaded (unknown (signal)
// for a bare signal, a person not in force flagged), then each change
// carries the same by.
func TestRecordChanges(t *testing.T) {
	old, err := config.Load("../config/testdata/example.yaml")
	must(t, err)
	next, err := config.Load("../config/testdata/example.yaml")
	must(t, err)
	next.Recording.StreamCap++
	changes := config.Diff(old, next)
	known := old.Persons[0].ID
	for _, c := range []struct {
		by      reloadBy
		want    string
		unknown bool
	}{
		{reloadBy{Trigger: "signal"}, "unknown (signal)", false},
		{reloadBy{Person: known, Actor: "local:root", Trigger: "tandem reload"}, known, false},
		{reloadBy{Person: "mallory", Trigger: "tandem reload"}, "mallory", true},
	} {
		sink := &audit.MemorySink{}
		must(t, recordChanges(context.Background(), sink, old, next, changes, c.by))
		evs := sink.Events()
		if len(evs) != 2 || evs[0].Type != audit.ConfigReload || evs[1].Type != audit.ConfigChange {
			t.Fatalf("events %v", sink.Types())
		}
		r, ch := evs[0].Attrs, evs[1].Attrs
		if r["by"] != c.want || (r["by_unknown"] == "true") != c.unknown || r["changes"] != "1" || r["actor"] != c.by.Actor ||
			r["previous_digest"] != old.Digest() || ch["by"] != c.want || ch["entity"] != "recording" {
			t.Errorf("%+v: reload %v, change %v", c.by, r, ch)
		}
	}
	sink := &audit.MemorySink{}
	sink.SetErr(os.ErrPermission)
	if err := recordChanges(context.Background(), sink, old, next, changes, reloadBy{Trigger: "signal"}); err == nil {
		t.Error("a reload that cannot be recorded went on")
	}
}
