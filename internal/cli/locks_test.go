package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"tandem.dev/tandem/internal/store"
)

func TestWaitAndReport(t *testing.T) {
	const warnLock = "warning: the gateway has not confirmed the lock within 10ms; " +
		"check that it is running (`tandem serve` logs)\n"
	tests := []struct {
		name   string
		change lockChange
		wait   bool
		acks   map[string]int64 // gateway: generation acknowledged, relative to the current one
		stdout string
		stderr string
	}{
		{"no wait", lockDone, false, map[string]int64{"gw1": -1}, "alice is locked\n", ""},
		{"applied", lockDone, true, map[string]int64{"gw1": 0},
			"alice is locked; the running gateway ended their sessions and connections\n", ""},
		{"applied by two", lockDone, true, map[string]int64{"gw1": 0, "gw2": 1},
			"alice is locked; the 2 running gateways ended their sessions and connections\n", ""},
		{"no gateway", lockDone, true, nil,
			"alice is locked; no gateway is running, so the lock applies as each gateway starts\n", ""},
		{"not confirmed", lockDone, true, map[string]int64{"gw1": 0, "gw2": -1}, "alice is locked\n", warnLock},
		{"unlock applied", unlockDone, true, map[string]int64{"gw1": 0},
			"alice is unlocked; the running gateway lifted the lock\n", ""},
		{"unlock, no gateway", unlockDone, true, nil,
			"alice is unlocked; no gateway is running, so the unlock applies as each gateway starts\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			st, err := store.Open(filepath.Join(dir, "state.db"), store.WithKeyDir(filepath.Join(dir, "keys")))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Lock(ctx, store.Lock{Person: "alice", Reason: "r", By: "test", Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
			gen, err := st.Generation(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for gw, d := range tt.acks {
				if err := st.AckGeneration(ctx, gw, gen+d, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut bytes.Buffer
			waitAndReport(ctx, &out, &errOut, st, "alice", tt.change, tt.wait, 10*time.Millisecond)
			if out.String() != tt.stdout || errOut.String() != tt.stderr {
				t.Errorf("stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), tt.stdout, tt.stderr)
			}
		})
	}
}
