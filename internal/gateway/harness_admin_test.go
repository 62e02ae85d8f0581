package gateway_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// runAcrossReload opens a session channel of person on dest, reloads the
// gateway with change, and only then sends command on that channel, as a
// client may up to a minute after the channel opened.
func runAcrossReload(t *testing.T, h *harness, person, dest, command string, change func(*harness)) (stdout, stderr string, status int) {
	t.Helper()
	c := h.client(t, person, dest)
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	h.reload(t, change)
	var out, errb buffer
	s.Stdout, s.Stderr = &out, &errb
	timer := time.AfterFunc(wait, func() { c.Close() })
	err = s.Run(command)
	timer.Stop()
	return out.String(), errb.String(), exitStatus(t, err)
}

// TestHarnessCommandDecidedWhenItArrives: a gateway command is decided on
// the configuration in force when its line arrives, not the one of when
// its channel opened: a reload takes bob's approve right away (his
// connection stays: he and his key remain), and the approve he then sends
// on a channel opened before is refused.
func TestHarnessCommandDecidedWhenItArrives(t *testing.T) {
	h := newHarness(t)
	id := makeRequest(t, h, "alice", "--hosts prod1 --login root --for 1h --reason restart-db-TICKET-1")
	out, stderr, st := runAcrossReload(t, h, "bob", "gw", "approve "+id, func(h *harness) {
		for i := range h.spec.persons {
			if h.spec.persons[i].id == "bob" {
				h.spec.persons[i].roles = []string{"dev"}
			}
		}
	})
	if st != 1 || !strings.Contains(stderr, "may not approve requests for prod1") {
		t.Fatalf("approve on a channel opened before the reload: status %d, stdout %q, stderr %q", st, out, stderr)
	}
}

// TestHarnessTargetDecidedWhenItArrives: the same for a command on a
// target: a reload takes dave's grant on web1 away, and the command he
// then sends on a channel opened before never reaches web1.
func TestHarnessTargetDecidedWhenItArrives(t *testing.T) {
	h := newHarness(t)
	out, stderr, st := runAcrossReload(t, h, "dave", "deploy%web1", "echo reached", func(h *harness) {
		h.spec.roles = strings.Replace(h.spec.roles, "names: [web1]", "names: [db1]", 1)
	})
	if accepted := h.targets["web1"].accepted(); st != 1 || strings.Contains(out, "reached") || len(accepted) != 0 {
		t.Fatalf("exec on a channel opened before the reload: status %d, stdout %q, stderr %q, web1 accepted %q", st, out, stderr, accepted)
	}
}

// TestHarnessRevokedBeforeRegistered: a session decided under a request
// that is revoked before it registers with the live sessions — the
// revocation ended none, and the watcher's look at the revoked request
// came before it too — ends when it registers and never reaches the
// target.
func TestHarnessRevokedBeforeRegistered(t *testing.T) {
	var (
		id      atomic.Value // the request's id, once known
		arrived = make(chan struct{})
		release = make(chan struct{})
		once    sync.Once
	)
	h := newHarness(t, withAuditHook(func(e audit.Event) {
		if want, _ := id.Load().(string); e.Type == audit.SessionStart && want != "" && e.Request == want {
			once.Do(func() { close(arrived); <-release })
		}
	}))
	req := makeRequest(t, h, "alice", "--hosts prod1 --login root --for 1h --reason restart-db-TICKET-1")
	if out, stderr, st := h.run(t, "bob", "gw", "approve "+req); st != 0 {
		t.Fatalf("approve: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	id.Store(req)
	type result struct {
		out, stderr string
		err         error
	}
	done := make(chan result, 1)
	go func() { // not h.run: no t.Fatal off the test's goroutine
		c, err := h.dial(t, "alice", "root%prod1")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			done <- result{err: err}
			return
		}
		var out, errb buffer
		s.Stdout, s.Stderr = &out, &errb
		err = s.Run("echo reached")
		done <- result{out.String(), errb.String(), err}
	}()
	<-arrived // decided under the request, its start about to be stored
	if out, stderr, st := h.run(t, "bob", "gw", "revoke "+req+" --reason work is done"); st != 0 || !strings.Contains(out, "0 live session(s) ended") {
		t.Fatalf("revoke: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	h.applied(t, ctx, "the revocation")
	time.Sleep(500 * time.Millisecond) // the watcher's look at requests follows its acknowledgement
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(wait):
		t.Fatal("the session under the revoked request did not end")
	}
	if r.err == nil || strings.Contains(r.out, "reached") {
		t.Fatalf("a session under a request revoked before it registered ran: %v, stdout %q, stderr %q", r.err, r.out, r.stderr)
	}
	t.Logf("ended: %v, stderr %q", r.err, r.stderr)
}
