package syslog

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

// TestShipPastAClosedSegmentWithDamagedCheckpoints: a segment is closed
// (tandem audit recover) because it is damaged, and its checkpoints.log
// may be what is damaged. The shipper sends what it can of it and goes on
// to the next segment, as it does for its records, instead of failing on
// the same checkpoint for ever while the collector falls behind.
func TestShipPastAClosedSegmentWithDamagedCheckpoints(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "audit2")
	witness := filepath.Join(f.dir, "witness")
	key, _, err := audit.GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	o := audit.Options{Dir: dir, Key: key, Keys: f.keys, CheckpointEvents: 7, WitnessFile: witness}
	l, err := audit.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := l.Append(context.Background(), audit.Event{Type: audit.SessionStart, Tenant: "nord", Person: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "checkpoints.log"), []byte("not a note\n\nat all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(o); err == nil {
		t.Fatalf("open with damaged checkpoints: %v", err)
	}
	if _, err := audit.Recover(audit.RecoverOptions{Dir: dir, Key: key, WitnessFile: witness, Keys: o.Keys, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	l, err = audit.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.opts.AuditDir, f.opts.Durable = dir, l.Size
	if err := os.MkdirAll(f.opts.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := (cursor{Segment: 1}).save(CursorPath(f.opts.StateDir, "central")); err != nil {
		t.Fatal(err)
	}
	s := run(t, f.opts)
	waitRecords(t, f.srv, 20) // the closed segment's, then the new one's log.segment
	if !testenv.WaitFor(5*time.Second, func() bool { return s.Status()[0].Segment == 2 && s.Status()[0].Depth == 0 }) {
		t.Fatalf("segment 2 not delivered: %+v", s.Status())
	}
}
