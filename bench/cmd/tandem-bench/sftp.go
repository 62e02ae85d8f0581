package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"tandem.dev/tandem/bench/internal/stats"
)

// sftpMode is one way of copying a file in (g): OpenSSH's sftp client
// with some flags, its scp (which speaks SFTP to the server since OpenSSH
// 9.0), or rsync over ssh (an exec session running `rsync --server`).
type sftpMode struct {
	Name string   // as printed in the report
	Tool string   // sftp, scp or rsync
	Args []string // extra flags of the tool
}

// sftpModes are the clients (g) measures: sftp with OpenSSH's defaults
// (32 KiB requests, 64 outstanding) and with the larger buffer of a tuned
// client, then scp and rsync, which the issue expects to follow SFTP.
// Not -B 262144: OpenSSH 9.2's sftp then builds write requests above the
// protocol's 256 KiB message limit and gives up ("Outbound message too
// long 262169"), against sshd as much as through the gateway; 255 KiB
// leaves room for the request's header. rsync gets --whole-file, as its
// destination never exists: the copy is the stream, not rsync's deltas.
var sftpModes = []sftpMode{
	{Name: "default", Tool: "sftp"},
	{Name: "-R 64 -B 261120", Tool: "sftp", Args: []string{"-R", "64", "-B", "261120"}},
	{Name: "default", Tool: "scp"},
	{Name: "--whole-file", Tool: "rsync", Args: []string{"--whole-file"}},
}

// recordsFileHashes reports whether the gateway records the SHA-256 of
// each file the mode copies: SFTP-based clients do (an SFTP session, one
// close record per file); rsync is an exec session, recorded as streams.
func (m sftpMode) recordsFileHashes() bool { return m.Tool != "rsync" }

// sftpRun is one timed copy of (g).
type sftpRun struct {
	mode      sftpMode
	path, dir string // dir: "put" or "get"
	elapsed   time.Duration
	gwCPU     time.Duration
}

// sftpResult summarises (g).
type sftpResult struct {
	Size     int64
	Reps     int
	Runs     []sftpRun
	Checked  int    // transfers whose content and recorded SHA-256 were checked
	Recorded string // what the check of the recordings found
}

// rate returns the median MiB/s of one mode (its key), path and direction.
func (r sftpResult) rate(mode, path, dir string) float64 {
	var xs []float64
	for _, t := range r.Runs {
		if t.mode.key() == mode && t.path == path && t.dir == dir && t.elapsed > 0 {
			xs = append(xs, float64(r.Size)/(1<<20)/t.elapsed.Seconds())
		}
	}
	return stats.Median(xs)
}

// runSFTP measures (g): `sftp -b` put and get of one file of size bytes,
// direct and through the gateway in user-name mode, alternating, reps
// times per client mode. The file is random (seeded) so that the content
// check means something; it lives in /dev/shm when there is one, so that
// the disk does not set the pace. Every transfer's result is hashed and
// compared with the source; at the end every SHA-256 the gateway recorded
// for these transfers is read back from the recordings and compared too.
func runSFTP(ctx context.Context, e *env, size int64, reps int, logf func(string, ...any)) (sftpResult, error) {
	res := sftpResult{Size: size, Reps: reps}
	base := e.dir
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "tandem-bench-sftp-")
	if err != nil {
		return res, fmt.Errorf("sftp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src.bin")
	want, err := writeRandomFile(src, size)
	if err != nil {
		return res, err
	}
	started := time.Now()
	timeout := 2*time.Minute + time.Duration(size/(2<<20))*time.Second
	for _, m := range sftpModes {
		for rep := range reps {
			for _, dirn := range []string{"put", "get"} {
				for _, path := range pathOrder(rep) {
					if err := ctx.Err(); err != nil {
						return res, err
					}
					host := map[string]string{"direct": hostDirect, "tandem": hostTandem}[path]
					dst := filepath.Join(dir, "dst.bin")
					t, err := copyOnce(ctx, e, host, m, dirn, src, dst, filepath.Join(dir, "batch"), timeout)
					if err != nil {
						return res, fmt.Errorf("%s %s %s %s: %w", m.Tool, m.Name, path, dirn, err)
					}
					got, err := fileSHA256(dst)
					_ = os.Remove(dst)
					if err != nil {
						return res, err
					}
					if got != want {
						return res, fmt.Errorf("%s %s %s %s: the copy has SHA-256 %s, the source %s", m.Tool, m.Name, path, dirn, got, want)
					}
					res.Checked++
					t.mode, t.path, t.dir = m, path, dirn
					res.Runs = append(res.Runs, t)
					logf("  (g) %-21s rep %d %-6s %s %7.1f MiB/s", m.key(), rep+1, path, dirn, float64(size)/(1<<20)/t.elapsed.Seconds())
				}
			}
		}
	}
	tandemRuns := 0
	for _, t := range res.Runs {
		if t.path == "tandem" && t.mode.recordsFileHashes() {
			tandemRuns++
		}
	}
	res.Recorded, err = checkRecordedHashes(ctx, e, started, size, want, tandemRuns)
	return res, err
}

// key names a mode in the report: the tool and its name.
func (m sftpMode) key() string { return m.Tool + " " + m.Name }

// transferCommand returns the command line of one copy of src to dst
// ("put", from here to the target) or back ("get") with m's tool, and the
// sftp batch file's text for sftp.
func transferCommand(e *env, host string, m sftpMode, dirn, src, dst, batch string) (prog string, args []string, batchText string) {
	from, to := src, host+":"+dst
	if dirn == "get" {
		from, to = host+":"+src, dst
	}
	switch m.Tool {
	case "scp":
		return "scp", append(append([]string{"-F", e.sshCfg, "-q"}, m.Args...), from, to), ""
	case "rsync":
		return "rsync", append(append([]string{"-e", "ssh -F " + e.sshCfg}, m.Args...), from, to), ""
	}
	return "sftp", append(append([]string{"-F", e.sshCfg, "-q", "-b", batch}, m.Args...), host), fmt.Sprintf("%s %s %s\n", dirn, src, dst)
}

// copyOnce runs one copy and times it from start to the end of the
// process (the connection's set-up included: ~60-130 ms, see (c)).
func copyOnce(ctx context.Context, e *env, host string, m sftpMode, dirn, src, dst, batch string, timeout time.Duration) (sftpRun, error) {
	var t sftpRun
	prog, args, batchText := transferCommand(e, host, m, dirn, src, dst, batch)
	if batchText != "" {
		if err := os.WriteFile(batch, []byte(batchText), 0o600); err != nil {
			return t, fmt.Errorf("batch file: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.command(ctx, prog, args...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	before, _ := usageOf(e.gw.pid())
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return t, fmt.Errorf("%s: %v: %s", prog, err, strings.TrimSpace(stderr.String()))
	}
	t.elapsed = time.Since(start)
	after, _ := usageOf(e.gw.pid())
	t.gwCPU = after.CPU - before.CPU
	return t, nil
}

// writeRandomFile writes size pseudo-random bytes (a fixed seed: the same
// file every run) and returns their SHA-256 in hex.
func writeRandomFile(path string, size int64) (string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{'t', 'a', 'n', 'd', 'e', 'm'})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		_, _ = rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		h.Write(buf[:n])
		left -= int64(n)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open copy: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sftpField is one key="value" of an SFTP operation's marker in an
// export; sessionIDCol the first column of `tandem recording list`,
// sftpKind its KIND column for an SFTP session.
var (
	sftpField    = regexp.MustCompile(`(\w+)="([^"]*)"`)
	sessionIDCol = regexp.MustCompile(`^(\S+)\s`)
	sftpKind     = regexp.MustCompile(`\ssftp\s`)
)

// checkRecordedHashes reads back what the gateway recorded for the SFTP
// sessions since started (`tandem recording list` and `export`, as the
// second person, who may read the benchmark's recordings) and checks that
// every transfer of size bytes has a close record with the SHA-256 of the
// source, want: as many reads and writes of the whole file as there were
// transfers through the gateway.
func checkRecordedHashes(ctx context.Context, e *env, started time.Time, size int64, want string, transfers int) (string, error) {
	since := time.Since(started) + time.Minute
	list, err := e.tandemOut(ctx, "recording", "list", "--config", e.gwConfig, "--as", personJoiner, "--since", since.Round(time.Second).String())
	if err != nil {
		return "", err
	}
	whole := strconv.FormatInt(size, 10)
	var reads, writes, sessions int
	for _, line := range strings.Split(list, "\n") {
		m := sessionIDCol.FindStringSubmatch(line)
		if m == nil || m[1] == "SESSION" || !sftpKind.MatchString(line) {
			continue
		}
		sessions++
		cast := filepath.Join(e.dir, "sftp.cast")
		if _, err := e.tandemOut(ctx, "recording", "export", m[1], "--config", e.gwConfig, "--as", personJoiner, "--out", cast); err != nil {
			return "", err
		}
		r, w, err := recordedCloses(cast, whole, want)
		_ = os.Remove(cast)
		if err != nil {
			return "", fmt.Errorf("session %s: %w", m[1], err)
		}
		reads += r
		writes += w
	}
	if reads+writes != transfers {
		return "", fmt.Errorf("the recordings of %d SFTP sessions hold %d whole-file reads and %d writes with the right SHA-256; %d transfers went through the gateway",
			sessions, reads, writes, transfers)
	}
	return fmt.Sprintf("%d SFTP sessions recorded, %d gets and %d puts of the whole file, each with the source's SHA-256", sessions, reads, writes), nil
}

// recordedCloses counts the close records in an exported recording that
// read or wrote the whole file (size bytes, as text) with SHA-256 want;
// a whole-file transfer with another hash is an error.
func recordedCloses(cast, size, want string) (reads, writes int, err error) {
	f, err := os.Open(cast)
	if err != nil {
		return 0, 0, fmt.Errorf("open export: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.ReplaceAll(sc.Text(), `\"`, `"`)
		if !strings.Contains(line, `op="close"`) {
			continue
		}
		kv := map[string]string{}
		for _, m := range sftpField.FindAllStringSubmatch(line, -1) {
			kv[m[1]] = m[2]
		}
		for _, d := range []struct {
			n   *int
			key string
		}{{&reads, "read"}, {&writes, "written"}} {
			if kv["bytes_"+d.key] != size {
				continue
			}
			if kv["sha256_"+d.key] != want {
				return reads, writes, fmt.Errorf("a close record has sha256_%s %s for %s bytes (sequential=%s); the file's is %s",
					d.key, kv["sha256_"+d.key], size, kv["sequential"], want)
			}
			*d.n++
		}
	}
	return reads, writes, sc.Err()
}
