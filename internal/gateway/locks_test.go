package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// lockedBuffer is a log destination safe for the watcher's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A stop that cuts the lock watcher short in the middle of its work (here:
// the audit log holds a lock event until the stop) is no error: it logs
// none, and the event stays queued for the next start. A failure while
// the gateway runs still is one.
func TestWatcherStopsQuietly(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.WithKeyDir(filepath.Join(dir, "keys")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Lock(context.Background(), store.Lock{Person: "alice", Reason: "test", By: "test", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sink := &holdSink{MemorySink: &audit.MemorySink{}}
	sink.hold(audit.Lock)
	var logged lockedBuffer
	srv := &Server{audit: sink, store: st, now: time.Now,
		log: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.auditLockEvents(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for sink.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if sink.waiting.Load() == 0 {
		t.Fatal("the watcher never appended the lock event")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not return after the stop")
	}
	if out := logged.String(); out != "" {
		t.Errorf("a stop was logged:\n%s", out)
	}
	if evs, err := st.PendingLockEvents(context.Background()); err != nil || len(evs) != 1 {
		t.Errorf("after the stop: %d lock events pending (%v), want the one cut short", len(evs), err)
	}

	srv.failed(context.Background(), "lock store", errors.New("disk gone"))
	if out := logged.String(); !strings.Contains(out, "level=ERROR") {
		t.Errorf("a failure while running was not logged as an error: %q", out)
	}
}
