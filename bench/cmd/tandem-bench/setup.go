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
				start := time.Now()
				if err := e.runSSH(ctx, 30*time.Second, host, "true"); err != nil {
					return out, fmt.Errorf("set-up %s: %w", p.mode, err)
				}
				d := time.Since(start)
				if i < 0 {
					continue // warm run
				}
				if host == p.direct {
					res.Direct = append(res.Direct, d)
				} else {
					res.Tandem = append(res.Tandem, d)
				}
			}
		}
		logf("  (c) %s mode: %d set-ups per path done", p.mode, n)
		out = append(out, res)
	}
	return out, nil
}
