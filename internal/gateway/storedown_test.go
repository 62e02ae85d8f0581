package gateway

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/store"
)

// While the state store does not answer, new sessions and joins are
// refused with a message that names it; the refusal lifts with the first
// poll it answers, and a store that stays silent (a poll still waiting)
// counts as down too.
func TestStoreRefusal(t *testing.T) {
	s := &Server{store: &store.Store{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if msg := s.sessionRefusal(); msg != "" {
		t.Fatalf("refused before the first poll: %s", msg)
	}
	s.storeBack()
	if msg := s.sessionRefusal(); msg != "" {
		t.Fatalf("refused while the store answers: %s", msg)
	}
	s.storeFailed(&store.UnavailableError{Err: errors.New("connection refused")})
	msg := s.sessionRefusal()
	for _, want := range []string{"state store", "PostgreSQL is unavailable", "no new session or join", "already running go on"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q lacks %q", msg, want)
		}
	}
	s.storeBack()
	if msg := s.storeRefusal(); msg != "" {
		t.Fatalf("still refused after the store answered: %s", msg)
	}
	long := time.Now().Add(-storeStale - time.Second)
	s.storeOK.Store(&long)
	if msg := s.storeRefusal(); !strings.Contains(msg, "has not answered") {
		t.Fatalf("a store silent for %v is not refused: %q", storeStale, msg)
	}
	if (&Server{}).storeRefusal() != "" {
		t.Error("a gateway without a store refuses for it")
	}
}
