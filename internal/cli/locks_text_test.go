package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/store"
)

// `tandem locks` shows a reason that someone typed escaped: it cannot
// clear the operator's screen, set the window title or reverse the line.
func TestLocksListingEscapesReason(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.WithKeyDir(filepath.Join(dir, "keys")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	reason := "x\x1b[2J\x1b]0;owned\x07\u009b1A\u202eevil\nforged line"
	if err := st.Lock(ctx, store.Lock{Person: "alice", By: "b\x1bob", Reason: reason, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	if err := listLocks(ctx, cmd, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.ContainsAny(got, "\x1b\x07\u009b\u202e") {
		t.Fatalf("raw control in %q", got)
	}
	if n := strings.Count(got, "\n"); n != 2 {
		t.Fatalf("%d lines, want a header and one lock: %q", n, got)
	}
	for _, want := range []string{`b\x1bob`, `x\x1b[2J\x1b]0;owned\x07\u009b1A\u202eevil\x0aforged line`} {
		if !strings.Contains(got, want) {
			t.Errorf("listing lacks %q:\n%s", want, got)
		}
	}
	// The store keeps what was typed.
	m, err := st.Locks(ctx, time.Now())
	if err != nil || m["alice"].Reason != reason {
		t.Fatalf("stored %q, %v", m["alice"].Reason, err)
	}
}
