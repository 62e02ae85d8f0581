package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/bench/internal/stats"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// attackResult is (h) for one flood: a person's logins during it, and what
// the flood cost the gateway.
type attackResult struct {
	Kind        string
	Logins      []time.Duration // the person's logins during the flood
	Failed      int             // of the person's logins
	FirstErr    string          // why the first failed login failed
	Attempts    int64           // flood connections or requests made
	GatewayCPU  time.Duration   // during the flood
	RSSBefore   int64           // KiB
	RSSMax      int64           // KiB, sampled every 100 ms
	Duration    time.Duration
	PerAttempt  string // what one attempt is
	FloodErrors int64  // attempts that ended in an error (the expected refusal)
}

// attackKinds are the floods of (h), each from addresses of its own in
// 127.0.0.0/8 (the person logs in from 127.0.0.1).
var attackKinds = []struct {
	name, per string
	workers   int
	run       func(ctx context.Context, e *env, worker int, a *attackCounters)
}{
	{"failed logins: unregistered keys", "refused connection", 8, floodFailedLogin},
	{"silent connections held until the gateway drops them", "connection (held or refused)", 300, floodSilent},
	{"env requests on fresh channels of one person's connections", "request", 4, floodEnv},
}

type attackCounters struct {
	attempts, errs atomic.Int64
	signer         ssh.Signer // the person's key (floodEnv)
}

// runAttack measures (h): the gateway is restarted with Tandem's default
// limits (docs/CONFIG.md: the benchmark's configuration lifts them for
// (d)); then, without a flood and during each flood of dur, the person
// logs in again and again (x/crypto: handshake, key, session, `true`,
// exit status), and the gateway's CPU time and RSS are read. The
// gateway is restarted with the benchmark's configuration at the end.
func runAttack(ctx context.Context, e *env, dur time.Duration, logf func(string, ...any)) ([]attackResult, error) {
	saved := e.gwConfig
	limited := filepath.Join(e.dir, "tandem-limits.yaml")
	c := gatewayConfig(e.dir, e.gwPort, e.targetPort, e.defaultPort, e.ownerPub, e.joinerPub, e.targetPub, e.keyType)
	c.Gateway.Limits = defaultLimitsConfig()
	if err := testenv.WriteConfig(limited, c); err != nil {
		return nil, err
	}
	e.gwConfig = limited
	defer func() {
		e.gwConfig = saved
		if err := e.restartGateway(context.Background()); err != nil {
			logf("(h) restart with the benchmark's configuration: %v", err)
		}
	}()
	if err := e.restartGateway(ctx); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)
	signer, err := e.ownerSigner()
	if err != nil {
		return nil, err
	}
	var out []attackResult
	base := attackResult{Kind: "none (baseline)"}
	base.Logins, base.Failed, base.FirstErr = logins(ctx, e, signer, dur)
	out = append(out, base)
	logf("(h) baseline: %d logins, p50 %v", len(base.Logins), stats.Percentile(base.Logins, 50))
	for i, k := range attackKinds {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		r := attackResult{Kind: k.name, PerAttempt: k.per, Duration: dur}
		before, err := usageOf(e.gw.pid())
		if err != nil {
			return out, err
		}
		r.RSSBefore, r.RSSMax = before.RSSKiB, before.RSSKiB
		fctx, stop := context.WithTimeout(ctx, dur)
		a := &attackCounters{signer: signer}
		var wg sync.WaitGroup
		for w := range k.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for fctx.Err() == nil {
					k.run(fctx, e, (i+1)<<16|w, a)
				}
			}()
		}
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for fctx.Err() == nil {
				if u, err := usageOf(e.gw.pid()); err == nil && u.RSSKiB > r.RSSMax {
					r.RSSMax = u.RSSKiB
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		time.Sleep(min(dur/5, time.Second)) // let the flood build up
		r.Logins, r.Failed, r.FirstErr = logins(fctx, e, signer, dur)
		<-fctx.Done()
		stop()
		wg.Wait()
		<-sampled
		after, err := usageOf(e.gw.pid())
		if err != nil {
			return out, err
		}
		r.GatewayCPU = after.CPU - before.CPU
		r.Attempts, r.FloodErrors = a.attempts.Load(), a.errs.Load()
		logf("(h) %s: %d attempts, %d logins (p50 %v), gateway CPU %v, RSS %d -> max %d KiB", k.name, r.Attempts,
			len(r.Logins), stats.Percentile(r.Logins, 50), r.GatewayCPU, r.RSSBefore, r.RSSMax)
		out = append(out, r)
		// The flood's connections are closed; let the gateway notice
		// before the next one.
		time.Sleep(time.Second)
	}
	return out, nil
}

// defaultLimitsConfig is gateway.limits with every field at its default
// (zero values are filled when the configuration is loaded).
func defaultLimitsConfig() config.Limits { return config.Limits{} }

// logins logs the person in again and again until ctx ends or dur
// passes, at most 200 times, each bounded by 10 s, and returns the
// durations of those that worked and the count of those that failed.
func logins(ctx context.Context, e *env, signer ssh.Signer, dur time.Duration) (ok []time.Duration, failed int, firstErr string) {
	end := time.Now().Add(dur)
	for i := 0; i < 200 && time.Now().Before(end) && ctx.Err() == nil; i++ {
		start := time.Now()
		if err := oneLogin(e, "127.0.0.1", signer, "root%"+gwHostTest, "true"); err != nil {
			if failed == 0 {
				firstErr = err.Error()
			}
			failed++
		} else {
			ok = append(ok, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ok, failed, firstErr
}

// oneLogin connects from src, authenticates with signer and, if cmd is
// not empty, runs it and waits for its exit.
func oneLogin(e *env, src string, signer ssh.Signer, user, cmd string) error {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.gwPort))
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, "gw", &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // loopback benchmark: the gateway's key is not what is measured
	})
	if err != nil {
		return err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	if cmd == "" {
		return nil
	}
	s, err := client.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(cmd)
}

// floodAddr is a source address of worker w in 127.(base).x.y.
func floodAddr(base, w int, n int64) string {
	return fmt.Sprintf("127.%d.%d.%d", base, (w+int(n))%250+1, int(n/250)%250+1)
}

var unregistered = sync.OnceValue(func() ssh.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		panic(err)
	}
	return s
})

// floodFailedLogin: one connection with a key nobody registered, under a
// user name that is nobody's.
func floodFailedLogin(ctx context.Context, e *env, w int, a *attackCounters) {
	n := a.attempts.Add(1)
	if err := oneLogin(e, floodAddr(3, w, n), unregistered(), "nobody", ""); err != nil {
		a.errs.Add(1)
	}
}

// floodSilent: one connection that never sends a byte, held until the
// gateway drops it (kex_timeout) or the flood ends.
func floodSilent(ctx context.Context, e *env, w int, a *attackCounters) {
	n := a.attempts.Add(1)
	conn, ok := floodDial(ctx, e, floodAddr(4, w, n), a)
	if !ok {
		return
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			a.failed()
			return
		}
	}
}

// floodDial connects from src; the connection is closed when ctx ends.
// A failure is counted and paced.
func floodDial(ctx context.Context, e *env, src string, a *attackCounters) (net.Conn, bool) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", e.gwPort))
	if err != nil {
		a.failed()
		return nil, false
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, true
}

// failed counts an attempt that ended as refused and waits a little, so
// that a refused flood does not turn into a busy loop.
func (a *attackCounters) failed() {
	a.errs.Add(1)
	time.Sleep(250 * time.Millisecond)
}

// floodEnv: the person's own connection (from an address of its own)
// opening channels and sending env requests until each is closed.
func floodEnv(ctx context.Context, e *env, w int, a *attackCounters) {
	conn, ok := floodDial(ctx, e, floodAddr(5, w, 0), a)
	if !ok {
		return
	}
	defer conn.Close()
	c, chans, reqs, err := ssh.NewClientConn(conn, "gw", &ssh.ClientConfig{
		User: "root%" + gwHostTest, Auth: []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // loopback benchmark
	})
	if err != nil {
		a.failed()
		return
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	for ctx.Err() == nil {
		sent, _ := floodOne(client, "env", "env refused", 1<<10, 1000)
		a.attempts.Add(int64(sent))
		if sent == 0 {
			a.failed()
			return
		}
	}
}

func (r *report) attackDetail(b *strings.Builder) {
	if len(r.attack) == 0 {
		return
	}
	b.WriteString("### (h) Cost under attack\n\n")
	b.WriteString("The gateway restarted with the default `gateway.limits`; each flood runs for the given time from addresses of its own in 127.0.0.0/8 " +
		"while the person logs in from 127.0.0.1 again and again (x/crypto client: handshake, key, session, `true`, exit status; 50 ms apart). " +
		"CPU is the gateway's over the whole flood, RSS sampled every 100 ms.\n\n")
	b.WriteString("| flood | logins (failed) | login p50 | login p99 | attempts | gateway CPU | CPU per attempt | RSS before | RSS max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, a := range r.attack {
		per, cpu, att := "–", "–", "–"
		if a.Attempts > 0 {
			per = fmt.Sprintf("%.0f µs per %s", float64(a.GatewayCPU.Microseconds())/float64(a.Attempts), a.PerAttempt)
			cpu = fmt.Sprintf("%.2f s of %v", a.GatewayCPU.Seconds(), a.Duration)
			att = fmt.Sprint(a.Attempts)
		}
		rss := "–"
		if a.RSSBefore > 0 {
			rss = fmt.Sprintf("%.1f MiB", mib(a.RSSMax))
		}
		before := "–"
		if a.RSSBefore > 0 {
			before = fmt.Sprintf("%.1f MiB", mib(a.RSSBefore))
		}
		fmt.Fprintf(b, "| %s | %d (%d) | %s | %s | %s | %s | %s | %s | %s |\n", a.Kind, len(a.Logins), a.Failed,
			ms(stats.Percentile(a.Logins, 50)), ms(stats.Percentile(a.Logins, 99)), att, cpu, per, before, rss)
	}
	for _, a := range r.attack {
		if a.FirstErr != "" {
			fmt.Fprintf(b, "\n%s: the first failed login: %s.\n", a.Kind, strings.ReplaceAll(a.FirstErr, "\n", " "))
		}
	}
	b.WriteString("\n")
}
