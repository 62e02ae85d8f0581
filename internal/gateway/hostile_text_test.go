package gateway

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/testenv"
)

// Person-supplied text reaches other people's terminals only escaped: no
// raw ESC, BEL, C1 control or bidi override (issue 13).

// noRawControls fails if out holds a raw ESC, BEL, C1 CSI, RLO or any
// other C1 control.
func noRawControls(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r == 0x1b || r == 0x07 || (r >= 0x80 && r <= 0x9f) || r == 0x202e {
			t.Fatalf("%s shows a raw %U: %q", what, r, out)
		}
	}
}

// A lock reason reaches the locked person escaped: in the notice that ends
// their session and in the banner that refuses their next login.
func TestLockReasonEscapedForLockedPerson(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	const reason = "x\x1b]0;owned\x07\u009b2J\u202eevil"
	const shown = `x\x1b]0;owned\x07\u009b2J\u202eevil`

	alice := r.goClient(t, "root%db1", aliceKey)
	sess, err := alice.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sess.Stderr = &stderr
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("echo ready; sleep 30"); err != nil {
		t.Fatal(err)
	}
	if _, err := stdout.Read(make([]byte, 16)); err != nil {
		t.Fatalf("the session did not start: %v", err)
	}
	if err := r.srv.lockPerson(context.Background(), "alice", "test", reason, time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sess.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the locked session did not end")
	}
	out := stderr.String()
	if !strings.Contains(out, "alice was locked: "+shown) {
		t.Fatalf("the locked session's notice is %q", out)
	}
	noRawControls(t, "the lock notice", out)

	pem, err := os.ReadFile(aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	var banner string
	_, err = ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), &ssh.ClientConfig{
		User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // test only
		BannerCallback:  func(m string) error { banner += m; return nil },
		Timeout:         5 * time.Second,
	})
	if err == nil {
		t.Fatal("a locked person logged in")
	}
	if !strings.Contains(banner, "locked") {
		t.Fatalf("the refusal banner is %q", banner)
	}
	noRawControls(t, "the refusal banner", banner)
}
