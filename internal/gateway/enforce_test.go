package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// goClient is an x/crypto client of the rig, for what OpenSSH cannot do:
// never reading a channel.
type goClient struct {
	*ssh.Client
	closed chan struct{} // closed when the connection has ended
}

func (r *rig) goClient(t *testing.T, user, keyFile string) *goClient {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // test only: the rig's key is not the point here
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	g := &goClient{Client: c, closed: make(chan struct{})}
	go func() { _ = c.Wait(); close(g.closed) }()
	t.Cleanup(func() { c.Close() })
	return g
}

// stall starts cmd and never reads its output, so the gateway's writes to
// this channel block once the window is full. The returned channel is
// closed when the gateway has closed the session channel.
func (g *goClient) stall(t *testing.T, cmd string) <-chan struct{} {
	t.Helper()
	ch, reqs, err := g.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { ssh.DiscardRequests(reqs); close(ended) }()
	ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{cmd}))
	if err != nil || !ok {
		t.Fatalf("exec %q: %v %v", cmd, ok, err)
	}
	return ended
}

// closedWithin reports whether the connection ended within d.
func (g *goClient) closedWithin(d time.Duration) bool {
	select {
	case <-g.closed:
		return true
	case <-time.After(d):
		return false
	}
}

// waitEvents waits until the sink holds n events of type typ.
func (r *rig) waitEvents(t *testing.T, typ audit.Type, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got := 0
		for _, e := range r.sink.Events() {
			if e.Type == typ {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d %s events: %v", n, typ, r.sink.Types())
}

// A client that stops reading must not hold back a lock, neither its own
// nor another person's (M5).
func TestLockDespiteStalledClient(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	carolKey, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub, "carol": carolPub})

	alice := r.goClient(t, "root%db1", aliceKey)
	alice.stall(t, "head -c 8000000 /dev/zero")
	carol := r.goClient(t, "root%db1", carolKey)
	carol.stall(t, "sleep 30") // quiet: nothing to read
	r.waitEvents(t, audit.SessionStart, 2)
	time.Sleep(300 * time.Millisecond) // let alice's output fill the window

	lock := func(person string) time.Duration {
		start := time.Now()
		if err := r.srv.lockPerson(context.Background(), person, "test", "stalled-client test", time.Time{}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if took := lock("carol"); took > time.Second {
		t.Errorf("locking carol took %v while alice's client stalls", took)
	}
	if !carol.closedWithin(time.Second) {
		t.Fatal("carol's connection still open 1 s after her lock, while alice's client stalls")
	}
	if took := lock("alice"); took > time.Second {
		t.Errorf("locking alice took %v", took)
	}
	if !alice.closedWithin(time.Second) {
		t.Fatal("alice's stalled connection still open 1 s after her lock")
	}
}

// A client that holds several stalled channels and then stops reading its
// TCP socket altogether (answering no keep-alive either) is cut off as
// fast: its connection is aborted, which the client's kernel sees even
// though nothing reads the socket.
func TestLockDespiteDeafClient(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	signer, err := testenv.ParsePrivateKeyFile(aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := testenv.DialAttacker(t.Context(), testenv.AttackerOpts{
		Addr: fmt.Sprintf("127.0.0.1:%d", r.port), User: "root%db1", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Sessions(4, testenv.SessionOpts{Exec: "head -c 8000000 /dev/zero"}); err != nil {
		t.Fatal(err)
	}
	r.waitEvents(t, audit.SessionStart, 4)
	alice.Freeze()
	time.Sleep(300 * time.Millisecond) // let the output fill every buffer on the way
	start := time.Now()
	if err := r.srv.lockPerson(context.Background(), "alice", "test", "deaf-client test", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("lock took %v", took)
	}
	if _, ok := alice.WaitClosed(time.Second); !ok {
		t.Fatal("alice's deaf connection with four stalled channels still open 1 s after her lock")
	}
	t.Logf("closed: %s", alice.HowClosed())
}

// reload applies the rig's configuration with old replaced by new.
func (r *rig) reload(t *testing.T, old, new string) {
	t.Helper()
	if !strings.Contains(r.yaml, old) {
		t.Fatalf("reload: %q not in the configuration", old)
	}
	r.yaml = strings.Replace(r.yaml, old, new, 1)
	cfg, err := config.Parse(filepath.Join(r.dir, "tandem.yaml"), []byte(r.yaml))
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, r.yaml)
	}
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}

// run executes cmd on a new channel of the connection and returns its
// exit status (-1: the channel or the command was refused).
func (g *goClient) run(cmd string) (int, string) {
	s, err := g.NewSession()
	if err != nil {
		return -1, err.Error()
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if ee, ok := err.(*ssh.ExitError); ok {
		return ee.ExitStatus(), string(out)
	}
	if err != nil {
		return -1, string(out) + err.Error()
	}
	return 0, string(out)
}

// An open connection decides every new channel on the configuration in
// force now (M2, M4, M6), like an OpenSSH ControlMaster would use it.
func TestReloadAppliesToOpenConnections(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})

	t.Run("host moved to production", func(t *testing.T) {
		c := r.goClient(t, "root%db1", aliceKey)
		if code, out := c.run("echo before"); code != 0 {
			t.Fatalf("before the reload: %d %s", code, out)
		}
		live := r.goClient(t, "root%db1", aliceKey)
		ended := live.stall(t, "sleep 30")
		r.reload(t, "{name: db1, address: "+fmt.Sprintf("%q", r.target.Addr)+", tenant: schule-nord, environment: test",
			"{name: db1, address: "+fmt.Sprintf("%q", r.target.Addr)+", tenant: schule-nord, environment: production")
		defer r.reload(t, "environment: production, host_key", "environment: test, host_key")
		if code, out := c.run("echo after"); code == 0 || !strings.Contains(out, "access request") {
			t.Fatalf("exec on a host now in production ran without a request: %d %q", code, out)
		}
		select {
		case <-ended:
		case <-time.After(time.Second):
			t.Fatal("a session without request on a host moved to production goes on 1 s after the reload")
		}
		deadline := time.Now().Add(2 * time.Second)
		for !r.sessionEnded(t, "production") {
			if time.Now().After(deadline) {
				t.Fatalf("session.end does not say why: %v", r.sink.Types())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("role removed", func(t *testing.T) {
		c := r.goClient(t, "root%db1", aliceKey)
		if code, out := c.run("echo before"); code != 0 {
			t.Fatalf("before the reload: %d %s", code, out)
		}
		r.reload(t, "roles: [admin]", "roles: [dev]")
		defer r.reload(t, "roles: [dev]", "roles: [admin]")
		if code, out := c.run("echo after"); code == 0 {
			t.Fatalf("a removed role still works on an open connection: %q", out)
		}
	})
	t.Run("key removed", func(t *testing.T) {
		c := r.goClient(t, "root%db1", aliceKey)
		c.stall(t, "sleep 30")
		_, otherPub := testenv.KeyPair(t, dir, "other", "ecdsa")
		r.reload(t, alicePub, otherPub)
		if !c.closedWithin(time.Second) {
			t.Fatal("a connection whose key was removed is still open 1 s after the reload")
		}
	})
}

// sessionEnded reports whether a session.end event mentions text.
func (r *rig) sessionEnded(t *testing.T, text string) bool {
	for _, e := range r.sink.Events() {
		if e.Type == audit.SessionEnd && strings.Contains(fmt.Sprint(e.Attrs), text) {
			return true
		}
	}
	return false
}

// One user name per person: alice's key with the user name bob is
// refused with a message; her own id and names that are no person's work.
func TestUserNameNamesAnotherPerson(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	_, bobPub := testenv.KeyPair(t, dir, "bob", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub, "bob": bobPub})
	signer, err := testenv.ParsePrivateKeyFile(aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(user string) error {
		a, err := testenv.DialAttacker(t.Context(), testenv.AttackerOpts{
			Addr: fmt.Sprintf("127.0.0.1:%d", r.port), User: user, Signer: signer})
		if err == nil {
			a.Close()
		}
		return err
	}
	if err := dial("bob"); err == nil || !strings.Contains(err.Error(), "is alice's, not bob's") {
		t.Errorf("alice's key as bob: want a refusal naming both, got %v", err)
	}
	for _, user := range []string{"alice", "root%db1", "admin"} {
		if err := dial(user); err != nil {
			t.Errorf("alice's key as %q: %v", user, err)
		}
	}
}
