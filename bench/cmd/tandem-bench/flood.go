package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// floodResult is the gateway's RSS around one hostile request stream sent
// before a session starts (M30): the requests a client sent until the
// gateway closed the channel, and VmRSS before and after.
type floodResult struct {
	Kind      string
	Sent      int
	Closed    bool
	Before    int64 // KiB
	After     int64 // KiB
	Took      time.Duration
	Requested int
}

// floodKinds are the streams of section (f): each request about 1 KiB
// (64 KiB for terminal modes), at most n of them.
var floodKinds = []struct {
	kind, typ string
	size      int
}{
	{"env allowed by env_allow (LC_*)", "env", 1 << 10},
	{"env refused", "env", 1 << 10},
	{"pty-req, terminal name 1 KiB", "pty-req", 1 << 10},
	{"pty-req, modes 64 KiB", "pty-req", 64 << 10},
	{"window-change", "window-change", 0},
	{"exec, 200 KiB command", "exec", 200 << 10},
}

// runFlood sends each kind of flood on its own connection as the owner,
// to the test host, and reads the gateway's VmRSS before and after.
// Each flood is bounded by n requests and 20 seconds.
func runFlood(ctx context.Context, e *env, n int, logf func(string, ...any)) ([]floodResult, error) {
	signer, err := e.ownerSigner()
	if err != nil {
		return nil, err
	}
	var out []floodResult
	for _, k := range floodKinds {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		c, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.gwPort), &ssh.ClientConfig{
			User: "root%" + gwHostTest, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), // loopback benchmark: the gateway's key is not what is measured
			Timeout:         10 * time.Second,
		})
		if err != nil {
			return out, fmt.Errorf("%s: %w", k.kind, err)
		}
		before, err := usageOf(e.gw.pid())
		if err != nil {
			c.Close()
			return out, err
		}
		r := floodResult{Kind: k.kind, Before: before.RSSKiB, Requested: n}
		if k.typ == "exec" {
			r.Requested = 1
		}
		start := time.Now()
		r.Sent, r.Closed = floodOne(c, k.typ, k.kind, k.size, r.Requested)
		r.Took = time.Since(start)
		time.Sleep(200 * time.Millisecond)
		after, err := usageOf(e.gw.pid())
		c.Close()
		if err != nil {
			return out, err
		}
		r.After = after.RSSKiB
		logf("(f) %s: %d requests, closed %v, RSS %d -> %d KiB", k.kind, r.Sent, r.Closed, r.Before, r.After)
		out = append(out, r)
	}
	return out, nil
}

// ownerSigner is the owner's key, for the x/crypto clients of (f) and (h).
func (e *env) ownerSigner() (ssh.Signer, error) {
	pem, err := os.ReadFile(e.key)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(pem)
}

// floodOne sends up to n requests of one type on a fresh session channel
// until the gateway closes it or 20 seconds pass.
func floodOne(c *ssh.Client, typ, kind string, size, n int) (int, bool) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return 0, true
	}
	closed := make(chan struct{})
	go func() { ssh.DiscardRequests(reqs); close(closed) }()
	pad := strings.Repeat("x", size)
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for ; sent < n && time.Now().Before(deadline); sent++ {
		var p []byte
		switch typ {
		case "env":
			name := fmt.Sprintf("LC_FLOOD%d", sent)
			if strings.Contains(kind, "refused") {
				name = fmt.Sprintf("FLOOD%d", sent)
			}
			p = ssh.Marshal(struct{ Name, Value string }{name, pad})
		case "pty-req":
			term, modes := pad, ""
			if strings.Contains(kind, "modes") {
				term, modes = "xterm", pad
			}
			p = ssh.Marshal(struct {
				Term                string
				Columns, Rows, W, H uint32
				Modes               string
			}{term, 80, 24, 0, 0, modes})
		case "window-change":
			p = ssh.Marshal(struct{ Columns, Rows, W, H uint32 }{80, 24, 0, 0})
		default:
			p = ssh.Marshal(struct{ Value string }{pad})
		}
		if _, err := ch.SendRequest(typ, typ == "exec", p); err != nil {
			break
		}
	}
	select {
	case <-closed:
		return sent, true
	case <-time.After(5 * time.Second):
		ch.Close()
		return sent, false
	}
}

func (r *report) floodDetail(b *strings.Builder) {
	if len(r.flood) == 0 {
		return
	}
	b.WriteString("### (f) Hostile requests before a session starts\n\n")
	b.WriteString("One x/crypto client per row, as the owner to the test host, sends the requests without waiting for replies until the gateway closes the channel (caps: 256 requests, 64 env, 32 KiB env, 256 B terminal name, 1 KiB modes, 128 KiB command). Gateway RSS from /proc/PID/status (VmRSS) before and 200 ms after.\n\n")
	b.WriteString("| flood | requests sent | channel closed | time | RSS before | RSS after | growth |\n|---|---|---|---|---|---|---|\n")
	for _, f := range r.flood {
		fmt.Fprintf(b, "| %s | %d of %d | %s | %s | %.1f MiB | %.1f MiB | %+.1f MiB |\n", f.Kind, f.Sent, f.Requested, yesNo(f.Closed),
			ms(f.Took), mib(f.Before), mib(f.After), mib(f.After-f.Before))
	}
	b.WriteString("\n")
}
