package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem.dev/tandem/bench/internal/stats"
)

// cmpPath is one column of the side-by-side table: a host alias of the
// benchmark's ssh_config and, for a relay, the process whose memory (d)
// reads.
type cmpPath struct {
	label string
	host  string
	pid   func() int // nil for the direct path
}

// Column headings of the paths every comparison has.
const (
	colDirect = "direct OpenSSH"
	colTandem = "Tandem (recording on)"
)

// cmpPaths lists the columns: direct, Tandem, then each peer run.
func cmpPaths(e *env) []cmpPath {
	paths := []cmpPath{{label: colDirect, host: hostDirect}, {label: colTandem, host: hostTandem, pid: func() int { return e.gw.pid() }}}
	for _, p := range e.peers {
		paths = append(paths, cmpPath{label: p.spec.label(), host: p.spec.alias(), pid: p.p.pid})
	}
	return paths
}

// cmpRow is one measure of the side-by-side table, a cell per column
// label ("–" where the measure does not apply).
type cmpRow struct {
	measure string
	cells   map[string]string
}

// peerCompare is the side-by-side table of issue 22.
type peerCompare struct {
	columns []string
	rows    []cmpRow
	notes   []string
}

// rotated is paths turned by round, so that every path in turn goes
// first and a change in the machine's load hits all alike.
func rotated(paths []cmpPath, round int) []cmpPath {
	k := round % len(paths)
	return append(append([]cmpPath{}, paths[k:]...), paths[:k]...)
}

// runPeerCompare runs the selected sections among a, b, c, d, g once more
// with every path side by side (direct, Tandem, each peer), alternating
// within every round, at the sizes the run was given.
func runPeerCompare(ctx context.Context, e *env, o options, logf func(string, ...any)) (*peerCompare, error) {
	paths := cmpPaths(e)
	res := &peerCompare{}
	for _, p := range paths {
		res.columns = append(res.columns, p.label)
	}
	add := func(measure string, f func(p cmpPath) string) {
		row := cmpRow{measure: measure, cells: map[string]string{}}
		for _, p := range paths {
			row.cells[p.label] = f(p)
		}
		res.rows = append(res.rows, row)
	}
	if o.only["a"] {
		rates, err := cmpBulk(ctx, e, paths, o.size, o.reps, logf)
		if err != nil {
			return res, fmt.Errorf("(a): %w", err)
		}
		for _, dir := range []string{"up", "down"} {
			add(fmt.Sprintf("(a) bulk %s, %s, MiB/s, median of %d", dir, sizeText(o.size), o.reps), func(p cmpPath) string {
				return fmt.Sprintf("%.0f", stats.Median(rates[dir+" "+p.label]))
			})
		}
	}
	if o.only["g"] {
		rates, err := cmpSFTP(ctx, e, paths, o.sftpSize, o.sftpReps, logf)
		if err != nil {
			return res, fmt.Errorf("(g): %w", err)
		}
		for _, dir := range []string{"put", "get"} {
			add(fmt.Sprintf("(g) sftp %s, %s, `%s`, MiB/s, median of %d", dir, sizeText(o.sftpSize), sftpModes[0].Name, o.sftpReps), func(p cmpPath) string {
				return fmt.Sprintf("%.0f", stats.Median(rates[dir+" "+p.label]))
			})
		}
	}
	if o.only["b"] {
		rtt, err := cmpEcho(ctx, e, paths, o.rtt, logf)
		if err != nil {
			return res, fmt.Errorf("(b): %w", err)
		}
		for _, q := range []float64{50, 99} {
			add(fmt.Sprintf("(b) echo round trip p%.0f, owner alone, %d bytes", q, o.rtt), func(p cmpPath) string {
				return us(stats.Percentile(rtt[p.label], q))
			})
		}
	}
	if o.only["c"] {
		setup, err := cmpSetup(ctx, e, paths, o.setups, logf)
		if err != nil {
			return res, fmt.Errorf("(c): %w", err)
		}
		add(fmt.Sprintf("(c) set-up `ssh … true`, median of %d", o.setups), func(p cmpPath) string {
			return ms(stats.Percentile(setup[p.label], 50))
		})
	}
	if o.only["d"] && len(o.sessions) > 0 {
		n := o.sessions[0]
		kib, notes, err := cmpIdle(ctx, e, paths, n, o.batch, o.idleLimit, logf)
		res.notes = append(res.notes, notes...)
		if err != nil {
			return res, fmt.Errorf("(d): %w", err)
		}
		add(fmt.Sprintf("(d) relay RSS per idle PTY session at %d, KiB", n), func(p cmpPath) string {
			v, ok := kib[p.label]
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.1f", v)
		})
	}
	return res, nil
}

// cmpBulk is (a) for every path: MiB/s by "dir label".
func cmpBulk(ctx context.Context, e *env, paths []cmpPath, size int64, reps int, logf func(string, ...any)) (map[string][]float64, error) {
	out := map[string][]float64{}
	src := filepath.Join(e.dir, "cmp-upload.bin")
	if err := os.WriteFile(src, nil, 0o600); err != nil {
		return out, err
	}
	defer os.Remove(src)
	if err := os.Truncate(src, size); err != nil {
		return out, err
	}
	timeout := 2*time.Minute + time.Duration(size/(5<<20))*time.Second
	err := eachTransfer(ctx, reps, []string{"up", "down"}, paths, func(rep int, dir string, p cmpPath) error {
		t, err := oneTransfer(ctx, e, p.host, dir, src, size, timeout)
		if err != nil {
			return err
		}
		r := float64(size) / (1 << 20) / t.elapsed.Seconds()
		out[dir+" "+p.label] = append(out[dir+" "+p.label], r)
		logf("  (a, peers) rep %d %-32s %-4s %7.1f MiB/s", rep+1, p.label, dir, r)
		return nil
	})
	return out, err
}

// eachTransfer calls f for every rep, direction and path, the paths
// rotated every rep, until ctx ends or f fails.
func eachTransfer(ctx context.Context, reps int, dirs []string, paths []cmpPath, f func(rep int, dir string, p cmpPath) error) error {
	for rep := range reps {
		for _, dir := range dirs {
			for _, p := range rotated(paths, rep) {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := f(rep, dir, p); err != nil {
					return fmt.Errorf("%s %s: %w", p.label, dir, err)
				}
			}
		}
	}
	return nil
}

// cmpSFTP is (g) for every path in sftp's default mode, every copy
// checked against the source: MiB/s by "dir label".
func cmpSFTP(ctx context.Context, e *env, paths []cmpPath, size int64, reps int, logf func(string, ...any)) (map[string][]float64, error) {
	out := map[string][]float64{}
	base := e.dir
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "tandem-bench-cmp-")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src.bin")
	want, err := writeRandomFile(src, size)
	if err != nil {
		return out, err
	}
	timeout := 2*time.Minute + time.Duration(size/(2<<20))*time.Second
	err = eachTransfer(ctx, reps, []string{"put", "get"}, paths, func(rep int, dirn string, p cmpPath) error {
		dst := filepath.Join(dir, "dst.bin")
		t, err := copyOnce(ctx, e, p.host, sftpModes[0], dirn, src, dst, filepath.Join(dir, "batch"), timeout)
		if err != nil {
			return err
		}
		got, err := fileSHA256(dst)
		_ = os.Remove(dst)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("the copy has SHA-256 %s, the source %s", got, want)
		}
		r := float64(size) / (1 << 20) / t.elapsed.Seconds()
		out[dirn+" "+p.label] = append(out[dirn+" "+p.label], r)
		logf("  (g, peers) rep %d %-32s %s %7.1f MiB/s", rep+1, p.label, dirn, r)
		return nil
	})
	return out, err
}

// cmpEcho is (b), the owner alone, for every path: one session each,
// round trips interleaved byte by byte with the order rotated.
func cmpEcho(ctx context.Context, e *env, paths []cmpPath, n int, logf func(string, ...any)) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	sessions := map[string]*ptySession{}
	defer func() {
		for _, s := range sessions {
			s.close()
		}
	}()
	for _, p := range paths {
		s, err := openEchoSession(ctx, e, p.host)
		if err != nil {
			return out, fmt.Errorf("%s: %w", p.label, err)
		}
		sessions[p.label] = s
	}
	warm := min(50, max(5, n/20))
	for i := range warm + n {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		for _, p := range rotated(paths, i) {
			d, err := sessions[p.label].roundTrip(byte('a' + i%26))
			if err != nil {
				return out, fmt.Errorf("%s, round trip %d: %w", p.label, i, err)
			}
			if i >= warm {
				out[p.label] = append(out[p.label], d)
			}
		}
	}
	logf("  (b, peers) %d round trips per path done (%d paths)", n, len(paths))
	return out, nil
}

// cmpSetup is (c) in user-name mode for every path: `ssh HOST true` on a
// fresh connection, one warm run each not counted.
func cmpSetup(ctx context.Context, e *env, paths []cmpPath, n int, logf func(string, ...any)) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	for i := -1; i < n; i++ {
		for _, p := range rotated(paths, i+1) {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			start := time.Now()
			if err := e.runSSH(ctx, 30*time.Second, p.host, "true"); err != nil {
				return out, fmt.Errorf("%s: %w", p.label, err)
			}
			if i >= 0 {
				out[p.label] = append(out[p.label], time.Since(start))
			}
		}
	}
	logf("  (c, peers) %d set-ups per path done", n)
	return out, nil
}

// cmpIdle is (d) at one count for every relay: its RSS growth per idle
// PTY session, the relays one after the other (each run's clients
// stopped before the next). Only the relay's main process is read: a
// peer's helper processes (sshpiper's plugin) are not counted, which the
// notes say.
func cmpIdle(ctx context.Context, e *env, paths []cmpPath, n, batch int, limit time.Duration, logf func(string, ...any)) (map[string]float64, []string, error) {
	out := map[string]float64{}
	var notes []string
	for _, p := range paths {
		if p.pid == nil {
			continue
		}
		before, err := usageOf(p.pid())
		if err != nil {
			return out, notes, fmt.Errorf("%s: %w", p.label, err)
		}
		run, err := openIdle(ctx, e, p.host, n, batch, limit, logf)
		if err == nil {
			time.Sleep(2 * time.Second)
			var after procUsage
			if after, err = usageOf(p.pid()); err == nil && run.opened > 0 {
				out[p.label] = float64(after.RSSKiB-before.RSSKiB) / float64(run.opened)
			}
		}
		if run != nil {
			if run.note != "" {
				notes = append(notes, fmt.Sprintf("(d) %s: %d of %d sessions opened: %s", p.label, run.opened, n, run.note))
			}
			run.stop(e, logf)
		}
		if err != nil {
			return out, notes, fmt.Errorf("%s: %w", p.label, err)
		}
		logf("  (d, peers) %-32s %.1f KiB per session", p.label, out[p.label])
	}
	notes = append(notes, "(d) reads the main process of each relay only (sshpiper's plugin process is not counted); Tandem's gateway was not restarted before its run here.")
	return out, notes, nil
}

// markdown renders the side-by-side table: one column per path measured,
// so a peer not given has no column.
func (c *peerCompare) markdown() string {
	if c == nil || len(c.columns) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("### Side by side with other relays (issue 22)\n\n")
	b.WriteString("| measure | " + strings.Join(c.columns, " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|---:", len(c.columns)) + "|\n")
	for _, r := range c.rows {
		cells := make([]string, len(c.columns))
		for i, col := range c.columns {
			if cells[i] = r.cells[col]; cells[i] == "" {
				cells[i] = "–"
			}
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r.measure, strings.Join(cells, " | "))
	}
	b.WriteString("\nSame target sshd, same client and algorithms (" + benchCipher + ", " + benchKex + ") on every path; " +
		"peers configured from their documentation (bench/README.md).\n")
	for _, n := range c.notes {
		b.WriteString("\n- " + n)
	}
	if len(c.notes) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}
