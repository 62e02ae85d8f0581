package main

import (
	"context"
	"fmt"
	"time"
)

// setupPair is one comparison of (c): an OpenSSH baseline and Tandem.
type setupPair struct {
	Mode           string // "user-name" or "jump"
	Baseline       string // what the direct figure is
	Direct, Tandem []time.Duration
	// CPU time of all set-ups of each path, by process, and how many
	// set-ups it covers (zero when it could not be read).
	DirectCPU, TandemCPU setupCPU
}

// setupCPU is the CPU time set-ups cost, by process: the ssh client, the
// sshd processes that served them (the target's, and the OpenSSH jump
// host's for ssh -J) and the gateway.
type setupCPU struct {
	N                     int
	Client, SSHD, Gateway time.Duration
}

// add accounts one set-up.
func (c *setupCPU) add(client, sshd, gateway time.Duration) {
	c.N++
	c.Client += client
	c.SSHD += sshd
	c.Gateway += gateway
}

// per returns d per set-up in milliseconds.
func (c setupCPU) per(d time.Duration) float64 {
	if c.N == 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(c.N)
}

// serverCPU reads the gateway's CPU time and the CPU time of the sshds'
// ended sessions. Before reading, it waits (at most two seconds) until
// the sshds have waited for every session process, so that a set-up's
// sshd work is counted with that set-up.
func serverCPU(e *env) (gateway, sshd time.Duration, ok bool) {
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range e.sshds {
		for len(childrenOf(p.pid())) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		u, err := usageOf(p.pid())
		if err != nil {
			return 0, 0, false
		}
		sshd += u.ChildCPU
	}
	u, err := usageOf(e.gw.pid())
	if err != nil {
		return 0, 0, false
	}
	return u.CPU, sshd, true
}

// runSetup measures (c): the wall time of `ssh HOST true` on a fresh
// connection, for user-name mode against a direct login and for jump mode
// against `ssh -J` through a plain OpenSSH jump host, alternating within
// each pair and swapping the order every round. One warm run of each is
// not counted.
func runSetup(ctx context.Context, e *env, n int, logf func(string, ...any)) ([]setupPair, error) {
	pairs := []struct {
		mode, baseline, direct, tandem string
	}{
		{"user-name", "ssh target (direct)", hostDirect, hostTandem},
		{"jump", "ssh -J jumphost target (OpenSSH jump host)", hostDirectJump, hostTandemJump},
	}
	var out []setupPair
	for _, p := range pairs {
		res := setupPair{Mode: p.mode, Baseline: p.baseline}
		for i := -1; i < n; i++ {
			order := []string{p.direct, p.tandem}
			if i%2 != 0 {
				order = []string{p.tandem, p.direct}
			}
			for _, host := range order {
				if err := ctx.Err(); err != nil {
					return out, err
				}
				gw0, sshd0, ok0 := serverCPU(e)
				start := time.Now()
				client, err := e.runSSHCPU(ctx, 30*time.Second, host, "true")
				if err != nil {
					return out, fmt.Errorf("set-up %s: %w", p.mode, err)
				}
				d := time.Since(start)
				gw1, sshd1, ok1 := serverCPU(e)
				if i < 0 {
					continue // warm run
				}
				if host == p.direct {
					res.Direct = append(res.Direct, d)
					if ok0 && ok1 {
						res.DirectCPU.add(client, sshd1-sshd0, 0)
					}
				} else {
					res.Tandem = append(res.Tandem, d)
					if ok0 && ok1 {
						res.TandemCPU.add(client, sshd1-sshd0, gw1-gw0)
					}
				}
			}
		}
		logf("  (c) %s mode: %d set-ups per path done", p.mode, n)
		out = append(out, res)
	}
	return out, nil
}
