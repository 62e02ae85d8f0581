package gateway

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestForwardSurvivesReload: a reload that leaves a forward's grant as it
// was leaves the forward running, and one that takes the destination out
// of the rule ends it. Enforcement decides a forward again with its
// destination: without it every forward read as one to "", which no rule
// allows, and any reload (a SIGHUP for an unrelated change) cut them all.
func TestForwardSurvivesReload(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	dest := echo.Addr().String()
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	r.reload(t, "logins: [root]}", fmt.Sprintf("logins: [root], forward: [%q]}", dest))

	c := r.goClient(t, "root%db1", aliceKey)
	fw, err := c.Dial("tcp", dest)
	if err != nil {
		t.Fatalf("forward to %s: %v", dest, err)
	}
	defer fw.Close()
	roundTrip := func(what string) error {
		_ = fw.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fw.Write([]byte(what)); err != nil {
			return err
		}
		buf := make([]byte, len(what))
		if _, err := io.ReadFull(fw, buf); err != nil {
			return err
		}
		if string(buf) != what {
			return fmt.Errorf("echo %q, want %q", buf, what)
		}
		return nil
	}
	if err := roundTrip("before"); err != nil {
		t.Fatalf("before any reload: %v", err)
	}

	r.reload(t, "tenants: [{id: schule-nord, name: Gesamtschule Nord}]", "tenants: [{id: schule-nord, name: Gesamtschule Nord-West}]")
	time.Sleep(200 * time.Millisecond)
	if err := roundTrip("after an unrelated reload"); err != nil {
		t.Fatalf("a reload that changed no grant ended the forward: %v", err)
	}

	r.reload(t, fmt.Sprintf(", forward: [%q]}", dest), "}")
	if err := roundTrip("after the grant went"); err == nil {
		t.Fatal("the forward goes on after its destination was taken out of the rule")
	}
}
