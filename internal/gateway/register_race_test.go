package gateway

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

// holdingRig is a rig whose audit sink can hold appends (holdSink); held
// appends are let go before the rig stops.
func holdingRig(t *testing.T, persons map[string]string) (*rig, *holdSink) {
	var sink *holdSink
	r := startRigSink(t, "", func(m audit.Sink) audit.Sink {
		sink = &holdSink{MemorySink: m.(*audit.MemorySink)}
		return sink
	}, nil, persons)
	t.Cleanup(func() {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if sink.release != nil {
			close(sink.release)
			sink.release = nil
		}
	})
	return r, sink
}

// TestReloadBeforeRegister: a reload that lands after a session was
// authorized but before it is in the registry (here: while its
// session.start waits for the audit log) found nothing to end; the
// session is decided again when it registers, as it is for a lock, so
// the command never runs under the grant the reload took away.
func TestReloadBeforeRegister(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r, sink := holdingRig(t, map[string]string{"alice": alicePub})
	c := r.goClient(t, "root%db1", aliceKey)
	sink.hold(audit.SessionStart)
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out := c.run("echo ran-$((6*7))")
		done <- result{code, out}
	}()
	waitUntil(t, 5*time.Second, "session.start held", func() bool { return sink.waiting.Load() == 1 })
	r.reload(t, "environment: test, host_key", "environment: production, host_key") // db1 now needs a request
	sink.releaseAll()
	res := <-done
	if strings.Contains(res.out, "ran-42") {
		t.Fatalf("the command ran under a grant a reload took away before it registered: %d %q", res.code, res.out)
	}
	t.Logf("exit %d: %q", res.code, res.out)
}

// TestRevokeBeforeRegister: a request revoked after a session under it
// was authorized but before it is in the registry: the revocation and
// the watcher's poll found nothing to end, so the session is decided
// again on the requests in the store when it registers.
func TestRevokeBeforeRegister(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	carolKey, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	r, sink := holdingRig(t, map[string]string{"alice": alicePub, "carol": carolPub})
	r.reload(t, "logins: [root]}]}", "logins: [root], approve: true}]}")
	gw := func(person, key, cmd string) string {
		t.Helper()
		code, out := r.goClient(t, person, key).run(cmd)
		if code != 0 {
			t.Fatalf("%s: %d %q", cmd, code, out)
		}
		return out
	}
	m := regexp.MustCompile(`ssh gw approve (\S+)`).FindStringSubmatch(gw("alice", aliceKey, "request --hosts prod1 --login root --for 1h --reason 'maintenance'"))
	if m == nil {
		t.Fatal("no request id")
	}
	gw("carol", carolKey, "approve "+m[1])
	c := r.goClient(t, "root%prod1", aliceKey)
	if code, out := c.run("true"); code != 0 {
		t.Fatalf("under the approved request: %d %q", code, out)
	}
	sink.hold(audit.SessionStart)
	done := make(chan string, 1)
	go func() {
		_, out := c.run("echo ran-$((6*7))")
		done <- out
	}()
	waitUntil(t, 5*time.Second, "session.start held", func() bool { return sink.waiting.Load() == 1 })
	gw("carol", carolKey, "revoke "+m[1]+" --reason 'done'")
	time.Sleep(500 * time.Millisecond) // the watcher's polls pass, finding nothing
	sink.releaseAll()
	if out := <-done; strings.Contains(out, "ran-42") {
		t.Fatalf("the command ran under a request revoked before it registered: %q", out)
	}
}
