package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tandem.dev/tandem/bench/internal/stats"
)

// transfer is one timed bulk transfer.
type transfer struct {
	path    string // "direct" or "tandem"
	dir     string // "up" or "down"
	elapsed time.Duration
	gwCPU   time.Duration // gateway CPU time spent during the transfer (tandem only)
}

// throughputResult summarises (a): MiB/s per path and direction.
type throughputResult struct {
	Size int64
	Reps int
	Runs []transfer
}

// rate returns the median MiB/s of the runs of one path and direction.
func (r throughputResult) rate(path, dir string) float64 {
	var xs []float64
	for _, t := range r.Runs {
		if t.path == path && t.dir == dir && t.elapsed > 0 {
			xs = append(xs, float64(r.Size)/(1<<20)/t.elapsed.Seconds())
		}
	}
	return stats.Median(xs)
}

// defaultSuffix marks the paths to the target with OpenSSH's default
// algorithms, where the gateway's upstream leg uses aes256-gcm and
// ecdh-sha2-nistp384 (the client leg and the direct path stay on the
// pinned ones).
const defaultSuffix = " (default target)"

// gwCPUPerGiB returns the gateway's median CPU seconds per GiB relayed
// on one Tandem path.
func (r throughputResult) gwCPUPerGiB(path, dir string) float64 {
	var xs []float64
	for _, t := range r.Runs {
		if t.path == path && t.dir == dir {
			xs = append(xs, t.gwCPU.Seconds()/(float64(r.Size)/(1<<30)))
		}
	}
	return stats.Median(xs)
}

// runThroughput measures (a): size bytes up (`wc -c` reads stdin, which
// also checks the count) and down (`head -c SIZE /dev/zero`) over exec,
// direct and through the gateway in user-name mode, alternating, reps
// times each. The upload reads a sparse file, which costs the client no
// disk time.
func runThroughput(ctx context.Context, e *env, size int64, reps int, logf func(string, ...any)) (throughputResult, error) {
	res := throughputResult{Size: size, Reps: reps}
	src := filepath.Join(e.dir, "upload.bin")
	f, err := os.OpenFile(src, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return res, fmt.Errorf("create upload file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return res, fmt.Errorf("size upload file: %w", err)
	}
	f.Close()
	defer os.Remove(src)

	// Bounded: even a 5 MiB/s link moves the largest transfer in time.
	timeout := 2*time.Minute + time.Duration(size/(5<<20))*time.Second
	hosts := map[string]string{"direct": hostDirect, "tandem": hostTandem,
		"direct" + defaultSuffix: hostDirectDefault, "tandem" + defaultSuffix: hostTandemDefault}
	for rep := range reps {
		order := pathOrder(rep)
		for _, dir := range []string{"up", "down"} {
			for _, path := range append(order, order[0]+defaultSuffix, order[1]+defaultSuffix) {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				t, err := oneTransfer(ctx, e, hosts[path], dir, src, size, timeout)
				if err != nil {
					return res, fmt.Errorf("%s %s: %w", path, dir, err)
				}
				t.path = path
				res.Runs = append(res.Runs, t)
				logf("  (a) rep %d %-23s %-4s %7.1f MiB/s", rep+1, path, dir, float64(size)/(1<<20)/t.elapsed.Seconds())
			}
		}
	}
	return res, nil
}

// oneTransfer runs one upload or download and times it from start to the
// end of the ssh process.
func oneTransfer(ctx context.Context, e *env, host, dir, src string, size int64, timeout time.Duration) (transfer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := transfer{dir: dir}
	cmd := e.ssh(ctx, host, "head -c "+strconv.FormatInt(size, 10)+" /dev/zero")
	var out strings.Builder
	var stderr strings.Builder
	if dir == "up" {
		in, err := os.Open(src)
		if err != nil {
			return t, fmt.Errorf("open upload file: %w", err)
		}
		defer in.Close()
		cmd = e.ssh(ctx, host, "wc -c")
		cmd.Stdin = in
		cmd.Stdout = &out
	} else {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return t, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		defer null.Close()
		cmd.Stdout = null
	}
	cmd.Stderr = &stderr
	before, _ := usageOf(e.gw.pid())
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return t, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	t.elapsed = time.Since(start)
	after, _ := usageOf(e.gw.pid())
	t.gwCPU = after.CPU - before.CPU
	if dir == "up" {
		if got := strings.TrimSpace(out.String()); got != strconv.FormatInt(size, 10) {
			return t, fmt.Errorf("target received %q bytes, want %d", got, size)
		}
	}
	return t, nil
}

// pathOrder is the order of the two paths in round rep: swapped every
// round, so that a change in the machine's load hits both alike.
func pathOrder(rep int) []string {
	if rep%2 == 1 {
		return []string{"tandem", "direct"}
	}
	return []string{"direct", "tandem"}
}
