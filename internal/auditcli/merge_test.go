package auditcli

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// TestMergeLogs: two nodes' events come out in time order with their
// node; an error from the caller stops the readers.
func TestMergeLogs(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(node string, at ...int) source {
		dir := filepath.Join(t.TempDir(), "audit")
		kekFile := filepath.Join(filepath.Dir(dir), "kek")
		if err := vault.GenerateFileKEK(kekFile); err != nil {
			t.Fatal(err)
		}
		kek, _ := vault.FileKEK(kekFile)
		v, err := vault.Open(filepath.Join(filepath.Dir(dir), "vault"), kek)
		if err != nil {
			t.Fatal(err)
		}
		k, _, _ := audit.GenerateSigningKey("tandem/audit/" + node)
		i := 0
		l, err := audit.Open(audit.Options{Dir: dir, Key: k, Keys: v, Origin: "tandem/audit/" + node, CheckpointEvery: time.Hour,
			Now: func() time.Time { return base }})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range at {
			i++
			e := audit.Event{Type: audit.Exec, Time: base.Add(time.Duration(s) * time.Second), Person: node, Tenant: "t1"}
			if err := l.Append(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return source{node: node, dir: dir, keys: v}
	}
	srcs := []source{mk("a", 1, 4, 6), mk("b", 2, 3, 7)}
	var got []string
	f := audit.Filter{Types: []audit.Type{audit.Exec}}
	if err := mergeLogs(srcs, f, func(nr nodeRecord) error {
		got = append(got, nr.node+nr.rec.Event.Time.Format(":05"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := "a:01 b:02 b:03 a:04 a:06 b:07"
	if s := join(got); s != want {
		t.Fatalf("merged: %s, want %s", s, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := mergeLogs(srcs, f, func(nodeRecord) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("stopped merge: %v after %d", err, n)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
