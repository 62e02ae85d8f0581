package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"tandem.dev/tandem/bench/internal/stats"
)

// idleResult is (d) for one session count.
type idleResult struct {
	Want, Opened int
	OpenTime     time.Duration
	// The same count opened straight to the target, before the
	// gateway's run: the baseline of the opening time.
	DirectOpened   int
	DirectOpenTime time.Duration
	DirectNote     string
	// The whole machine's CPU time while each path opened its sessions.
	DirectMachine, OpenMachine machineCPU
	Before                     procUsage // fresh gateway, no sessions
	Open                       procUsage // right after the last session opened and a short settle
	AfterIdle                  procUsage // at the end of the idle window
	IdleWindow                 time.Duration
	Note                       string // why fewer than Want opened, if so
	// Rounds are the opening times of each alternating pair of openings,
	// the first one above and, for counts up to openManyCount, more after
	// the idle window (-open-rounds), so that the opening ratio is a median
	// of adjacent pairs and not one pair at the mercy of a busy moment.
	Rounds []openRound
}

// openRound is one pair of openings of the same count, direct and through
// the gateway, one right after the other.
type openRound struct {
	Direct, Tandem             time.Duration
	DirectOpened, TandemOpened int
}

// openRatio is the median over the rounds in which both paths opened every
// session of tandem/direct, and how many such rounds there were.
func (r idleResult) openRatio() (ratio float64, rounds int) {
	var xs []float64
	for _, x := range r.Rounds {
		if x.DirectOpened == r.Want && x.TandemOpened == r.Want && x.Direct > 0 {
			xs = append(xs, x.Tandem.Seconds()/x.Direct.Seconds())
		}
	}
	return stats.Median(xs), len(xs)
}

// perSessionKiB is the gateway's RSS growth per open session.
func (r idleResult) perSessionKiB(u procUsage) float64 {
	if r.Opened == 0 {
		return 0
	}
	return float64(u.RSSKiB-r.Before.RSSKiB) / float64(r.Opened)
}

// idleSession is one `ssh -tt` client of (d). Its stdin is a pipe this
// program holds open, so the session stays idle until the client is
// stopped.
type idleSession struct {
	p     *proc
	stdin io.WriteCloser
	ready chan struct{}
}

// idleReady is what each idle session prints once its shell runs.
const idleReady = "IDLE-READY"

// runIdle measures (d) for n sessions: on a freshly started gateway, open
// n idle PTY sessions through it (user-name mode) in batches, each batch
// waiting until every session of it prints a marker, read the gateway's
// RSS and CPU time, keep them idle for a window, read again, and stop the
// clients. Opening stops early at the time limit; the result says how far
// it got.
func runIdle(ctx context.Context, e *env, n, batch, rounds int, limit, window time.Duration, logf func(string, ...any)) (idleResult, error) {
	res := idleResult{Want: n, IdleWindow: window}
	if err := e.restartGateway(ctx); err != nil {
		return res, fmt.Errorf("restart gateway: %w", err)
	}
	// Let the fresh process finish starting (CA keys, store, audit log).
	time.Sleep(2 * time.Second)
	// The same count straight to the target first, for the opening time
	// (issue 22: all sessions running on the target within 1.1× the
	// direct time); those clients are stopped before the gateway's run.
	direct, err := openIdle(ctx, e, hostDirect, n, batch, limit, logf)
	res.DirectOpened, res.DirectOpenTime, res.DirectNote, res.DirectMachine = direct.opened, direct.elapsed, direct.note, direct.machine
	direct.stop(e, logf)
	if err != nil {
		return res, fmt.Errorf("direct: %w", err)
	}
	if res.Before, err = usageOf(e.gw.pid()); err != nil {
		return res, err
	}
	run, err := openIdle(ctx, e, hostTandem, n, batch, limit, logf)
	defer func() { run.stop(e, logf) }() // stopped earlier when more rounds follow; again does nothing
	if err != nil {
		return res, err
	}
	res.Opened, res.Note, res.OpenTime, res.OpenMachine = run.opened, run.note, run.elapsed, run.machine
	res.Rounds = append(res.Rounds, openRound{Direct: res.DirectOpenTime, Tandem: res.OpenTime, DirectOpened: res.DirectOpened, TandemOpened: res.Opened})
	time.Sleep(2 * time.Second)
	if res.Open, err = usageOf(e.gw.pid()); err != nil {
		return res, err
	}
	logf("  (d) %d sessions open; idle for %v", res.Opened, window)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if res.AfterIdle, err = usageOf(e.gw.pid()); err != nil {
		return res, err
	}
	if n > openManyCount || rounds <= 1 {
		return res, nil
	}
	run.stop(e, logf)
	for round := 1; round < rounds; round++ {
		x := openRound{}
		for _, path := range pathOrder(round) {
			host, elapsed, opened := hostDirect, &x.Direct, &x.DirectOpened
			if path == "tandem" {
				host, elapsed, opened = hostTandem, &x.Tandem, &x.TandemOpened
			}
			r, err := openIdle(ctx, e, host, n, batch, limit, logf)
			*elapsed, *opened = r.elapsed, r.opened
			r.stop(e, logf)
			if err != nil {
				return res, fmt.Errorf("opening round %d, %s: %w", round+1, path, err)
			}
		}
		logf("  (d) opening round %d: direct %.1f s, tandem %.1f s", round+1, x.Direct.Seconds(), x.Tandem.Seconds())
		res.Rounds = append(res.Rounds, x)
	}
	return res, nil
}

// idleRun is one batch-wise opening of idle sessions to one host.
type idleRun struct {
	sessions []*idleSession
	opened   int
	elapsed  time.Duration // until the last one printed its marker
	note     string        // why fewer than asked opened, if so
	machine  machineCPU    // the whole machine's CPU time meanwhile (zero if /proc/stat could not be read)
}

// openIdle opens n idle PTY sessions to host in batches, each batch
// waiting until every session of it prints a marker; it stops early at
// the time limit or when a client ends, and says so in the note.
func openIdle(ctx context.Context, e *env, host string, n, batch int, limit time.Duration, logf func(string, ...any)) (*idleRun, error) {
	r := &idleRun{}
	cpu0, cpuErr := readMachineCPU()
	start := time.Now()
	deadline := start.Add(limit)
	defer func() {
		r.elapsed = time.Since(start)
		if cpu1, err := readMachineCPU(); err == nil && cpuErr == nil {
			r.machine = cpu1.sub(cpu0)
		}
	}()
	for len(r.sessions) < n {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if time.Now().After(deadline) {
			r.note = fmt.Sprintf("stopped opening at the %v limit", limit)
			break
		}
		k := min(batch, n-len(r.sessions))
		var fresh []*idleSession
		for range k {
			s, err := startIdleSession(e, host)
			if err != nil {
				return r, err
			}
			fresh = append(fresh, s)
			r.sessions = append(r.sessions, s)
		}
		wait := time.After(min(90*time.Second, time.Until(deadline)+10*time.Second))
		failed := 0
	batchWait:
		for _, s := range fresh {
			select {
			case <-s.ready:
			case <-s.p.done:
				failed++
			case <-wait:
				break batchWait
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		r.opened = 0
		for _, s := range r.sessions {
			select {
			case <-s.ready:
				r.opened++
			default:
			}
		}
		if failed > 0 || r.opened < len(r.sessions) {
			r.note = fmt.Sprintf("only %d of %d sessions to %s opened (%d clients ended early); see %s",
				r.opened, len(r.sessions), host, failed, e.gwLog.Name())
			break
		}
		if len(r.sessions)%(batch*4) == 0 || len(r.sessions) == n {
			logf("  (d) %s: %d/%d sessions open after %v", host, len(r.sessions), n, time.Since(start).Round(time.Second))
		}
	}
	return r, nil
}

// stop ends the run's clients by PID.
func (r *idleRun) stop(e *env, logf func(string, ...any)) {
	ps := make([]*proc, 0, len(r.sessions))
	for _, s := range r.sessions {
		_ = s.stdin.Close()
		ps = append(ps, s.p)
	}
	if err := stopMany(ps, 15*time.Second); err != nil {
		logf("  (d) stopping clients: %v", err)
	}
	e.reg.forget(ps)
	r.sessions = nil
}

// startIdleSession starts `ssh -tt HOST 'echo MARK; exec cat'` with pipes
// on stdin and stdout; cat then waits on the remote PTY for input that
// never comes.
func startIdleSession(e *env, host string) (*idleSession, error) {
	cmd := e.ssh(context.Background(), "-tt", host, "echo "+idleReady+"; exec cat")
	cmd.Cancel = nil
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	cmd.Stderr = null
	p, err := e.reg.start("ssh idle", cmd)
	null.Close()
	if err != nil {
		return nil, err
	}
	s := &idleSession{p: p, stdin: stdin, ready: make(chan struct{})}
	// Reads until the marker, then drains until the client ends (EOF).
	go func() {
		r := bufio.NewReader(stdout)
		marked := false
		for range 1000 { // a shell prints the marker within a few lines
			line, err := r.ReadString('\n')
			if strings.Contains(line, idleReady) {
				close(s.ready)
				marked = true
				break
			}
			if err != nil {
				return
			}
		}
		if marked {
			_, _ = io.Copy(io.Discard, r)
		}
	}()
	return s, nil
}
