package gateway

import (
	"bytes"

	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/testenv"
)

// flood is one kind of hostile request stream sent before a session
// starts.
type flood struct {
	name  string
	user  string // gateway user name: a target route or the gateway itself
	typ   string // request type
	n     int    // at most this many requests
	size  int    // about this many bytes each
	first bool   // the first request wants a reply, which must be false
	start bool   // a start request: refused with a message and exit status 1
}

func (f flood) payload(i int) []byte {
	pad := strings.Repeat("x", f.size)
	switch f.typ {
	case "env":
		name := fmt.Sprintf("LC_FLOOD%d", i) // allowed by the default env_allow (LC_*)
		if strings.HasPrefix(f.name, "refused") {
			name = fmt.Sprintf("FLOOD%d", i)
		}
		return ssh.Marshal(struct{ Name, Value string }{name, pad})
	case "pty-req":
		term, modes := "xterm", pad
		if strings.Contains(f.name, "term") {
			term, modes = pad, ""
		}
		return ssh.Marshal(struct {
			Term                string
			Columns, Rows, W, H uint32
			Modes               string
		}{term, 80, 24, 0, 0, modes})
	case "window-change":
		return ssh.Marshal(struct{ Columns, Rows, W, H uint32 }{80, 24, 0, 0})
	case "x11-req":
		return ssh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", pad, 0})
	default: // exec, subsystem
		return ssh.Marshal(struct{ Value string }{pad})
	}
}

// send runs the flood on a fresh channel of g until the gateway closes
// the channel, n requests are sent or 20 seconds pass. It returns the
// requests sent and the channel's exit status (-1 if none).
func (f flood) send(t *testing.T, g *goClient) (int, int) {
	t.Helper()
	ch, reqs, err := g.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	status := make(chan int, 1)
	go func() {
		code := -1
		for r := range reqs {
			if r.Type == "exit-status" && len(r.Payload) >= 4 {
				code = int(r.Payload[3])
			}
		}
		status <- code
	}()
	go func() { _, _ = ch.Read(make([]byte, 1)) }()
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for ; sent < f.n && time.Now().Before(deadline); sent++ {
		want := f.first && sent == 0 || f.start
		ok, err := ch.SendRequest(f.typ, want, f.payload(sent))
		if err != nil {
			break
		}
		if want && ok && !f.start {
			t.Errorf("%s: the gateway accepted an oversized %s", f.name, f.typ)
		}
	}
	select {
	case code := <-status:
		return sent, code
	case <-time.After(10 * time.Second):
		t.Errorf("%s: the gateway kept the channel open after %d requests", f.name, sent)
		ch.Close()
		return sent, <-status
	}
}

func heapInuse() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Floods of requests before a session starts keep the gateway's memory
// bounded and are audited once per channel, while another person's
// session works (M19, M30). Before the caps, 100k allowed env requests of
// 1 KiB grew the gateway by about 100 MiB per channel.
func TestStartRequestFloodsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("sends some 100 MB over loopback")
	}
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	bobKey, bobPub := testenv.KeyPair(t, dir, "bob", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub, "bob": bobPub})

	honest := r.goClient(t, "root%db1", aliceKey)
	honestRun := func() error {
		s, err := honest.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		_ = s.Setenv("LANG", "C.UTF-8")
		out, err := s.Output("echo honest-$LANG")
		if err != nil || !bytes.Contains(out, []byte("honest-C.UTF-8")) {
			return fmt.Errorf("honest session: %q %v", out, err)
		}
		return nil
	}
	if err := honestRun(); err != nil {
		t.Fatal(err)
	}
	base := heapInuse()

	// bob has no grant on db1: the floods come from a person who may
	// reach nothing, before any policy decision.
	floods := []flood{
		{name: "allowed env", user: "root%db1", typ: "env", n: 100_000, size: 1 << 10},
		{name: "refused env", user: "root%db1", typ: "env", n: 100_000, size: 1 << 10},
		{name: "allowed env to the gateway", user: "bob", typ: "env", n: 100_000, size: 1 << 10},
		{name: "big env values", user: "root%db1", typ: "env", n: 1000, size: 30 << 10},
		{name: "pty term", user: "root%db1", typ: "pty-req", n: 100_000, size: 1 << 10, first: true},
		{name: "pty modes", user: "root%db1", typ: "pty-req", n: 100_000, size: 64 << 10, first: true},
		{name: "window-change", user: "root%db1", typ: "window-change", n: 100_000},
		{name: "x11-req", user: "root%db1", typ: "x11-req", n: 100_000, size: 1 << 10},
		{name: "exec command", user: "root%db1", typ: "exec", n: 1, size: 200 << 10, start: true},
		{name: "exec command to the gateway", user: "bob", typ: "exec", n: 1, size: 200 << 10, start: true},
		{name: "subsystem name", user: "root%db1", typ: "subsystem", n: 1, size: 100, start: true},
	}
	var keep []*goClient // the flood connections stay open while the heap is measured
	for _, f := range floods {
		before := countType(r.sink.Events(), audit.ChannelLimited)
		forwards := countType(r.sink.Events(), audit.ForwardDenied)
		g := r.goClient(t, f.user, bobKey)
		keep = append(keep, g)
		done := make(chan error, 1)
		go func() { done <- honestRun() }()
		sent, code := f.send(t, g)
		if err := <-done; err != nil {
			t.Errorf("%s: %v", f.name, err)
		}
		if !f.start && sent >= f.n {
			t.Errorf("%s: all %d requests went through without the channel being closed", f.name, sent)
		}
		if f.start && code != 1 {
			t.Errorf("%s: exit status %d, want 1", f.name, code)
		}
		if got := countType(r.sink.Events(), audit.ChannelLimited) - before; got != 1 {
			t.Errorf("%s: %d channel.limited events, want exactly 1", f.name, got)
		}
		if f.typ == "x11-req" {
			if got := countType(r.sink.Events(), audit.ForwardDenied) - forwards; got != 1 {
				t.Errorf("%s: %d forward.denied events, want 1", f.name, got)
			}
		}
		t.Logf("%s: %d requests sent, exit status %d", f.name, sent, code)
	}
	if err := honestRun(); err != nil {
		t.Fatal(err)
	}
	after := heapInuse()
	growth := int64(after) - int64(base)
	t.Logf("heap in use: %d KiB before, %d KiB after %d floods", base>>10, after>>10, len(floods))
	if growth > 20<<20 {
		t.Errorf("heap grew by %d MiB, want below 20 MiB", growth>>20)
	}
	for _, e := range r.sink.Events() {
		if e.Type == audit.ChannelLimited && (e.Person != "bob" || e.Attrs["limit"] == "" || e.Attrs["max"] == "") {
			t.Errorf("channel.limited event without person or limit: %+v", e)
		}
	}
	for _, g := range keep {
		g.Close()
	}
}

// A client whose env requests stay within the caps passes them all on.
func TestEnvWithinCapsReachesTarget(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	g := r.goClient(t, "root%db1", aliceKey)
	s, err := g.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range maxEnvRequests {
		if err := s.Setenv(fmt.Sprintf("LC_T%d", i), strings.Repeat("v", maxEnvBytes/maxEnvRequests-8)); err != nil {
			t.Fatalf("env %d refused: %v", i, err)
		}
	}
	if err := s.Setenv("LC_ONE_TOO_MANY", "x"); err == nil {
		t.Error("env request beyond the cap accepted")
	}
	out, err := s.Output(fmt.Sprintf("echo ${#LC_T%d}", maxEnvRequests-1))
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(maxEnvBytes/maxEnvRequests-8) {
		t.Fatalf("last env within the caps: %q %v", out, err)
	}
	if n := countType(r.sink.Events(), audit.ChannelLimited); n != 1 {
		t.Errorf("%d channel.limited events, want 1", n)
	}
}

func countType(evs []audit.Event, typ audit.Type) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}
