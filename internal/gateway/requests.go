package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/store"
)

// Access requests (M8): non-interactive work on four-eyes hosts runs only
// inside a time-boxed, purpose-bound request that a second person approved.

// requestWindows reads the person's current access requests for the
// policy, which decides whether one covers an action. An unreadable store
// yields none: without a request nothing that needs one is allowed (fail
// closed).
func (s *Server) requestWindows(ctx context.Context, person string, now time.Time) []policy.RequestWindow {
	if s.store == nil {
		return nil
	}
	rs, err := s.store.ActiveRequests(ctx, person, now)
	if err != nil && !errors.Is(err, store.ErrForged) { // forged rows are left out, reported by the store
		s.failed(ctx, "request store unreadable", err)
		return nil
	}
	ws := make([]policy.RequestWindow, len(rs))
	for i, r := range rs {
		ws[i] = window(r)
	}
	return ws
}

// requestByID loads a request the policy named as covering an action.
func (s *Server) requestByID(ctx context.Context, id string) (*store.Request, error) {
	if s.store == nil {
		return nil, errNoStore
	}
	r, err := s.store.GetRequest(ctx, id)
	if err == nil && r == nil {
		err = fmt.Errorf("request %s vanished", id)
	}
	return r, err
}

func window(r store.Request) policy.RequestWindow {
	return policy.RequestWindow{ID: r.ID, Requester: r.Requester, Hosts: r.Hosts, Login: r.Login,
		From: r.ValidFrom, Until: r.ValidUntil, Approved: r.State == store.RequestApproved, TTY: r.TTY}
}
