// Command tandem-bench measures Tandem against plain OpenSSH on one
// machine (issue 8): it starts a private sshd target, a plain sshd as jump
// host and the gateway on 127.0.0.1, runs the real OpenSSH client directly
// and through the gateway in the same run, alternating, and prints a
// Markdown report with the ratios next to the project's targets.
//
// Sections (select with -only): a bulk throughput, b one-byte echo round
// trip in a PTY (the owner alone, and with a second person joined), c
// session set-up time, d concurrent idle PTY sessions (gateway memory and
// CPU), e the audit log's Go benchmarks, f floods of requests before a
// session starts (gateway RSS), g SFTP put and get with OpenSSH's sftp,
// h a person's logins during floods (cost under attack).
//
// Every process it starts is stopped by PID at the end, also on error or
// SIGINT/SIGTERM; every loop is bounded in count and time.
//
//	go build -o bin/tandem ./cmd/tandem
//	go run ./bench/cmd/tandem-bench -tandem bin/tandem -quick
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tandem.dev/tandem/internal/ca"
)

// options are the command-line settings.
type options struct {
	tandem     string
	repo       string
	goTool     string
	quick      bool
	only       map[string]bool
	size       int64
	reps       int
	sftpSize   int64
	sftpReps   int
	rtt        int
	setups     int
	sessions   []int
	batch      int
	openRounds int
	floods     int
	idleLimit  time.Duration
	idleWindow time.Duration
	keep       bool
	out        string
	pprof      string
	attackTime time.Duration
	keyType    ca.KeyType
	// The peers' binaries (sshpiperd, containerssh); "" leaves a peer out.
	sshpiper, containerssh string
}

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 && os.Args[1] == bareRelayArg {
		return serveBareRelay(os.Args[2:])
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}

	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-bench: temp dir:", err)
		return 1
	}
	reg := &procs{}
	defer func() {
		for _, err := range reg.stopAll() {
			logf("cleanup: %v", err)
		}
		if o.keep {
			logf("kept %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}()

	rep := &report{opts: o, started: time.Now(), machine: describeMachine(ctx, o.goTool)}
	needEnv := o.only["a"] || o.only["b"] || o.only["c"] || o.only["d"] || o.only["f"] || o.only["g"] || o.only["h"]
	var e *env
	if needEnv {
		logf("setting up sshd target, sshd jump host and gateway in %s", dir)
		e, err = newEnv(ctx, dir, o.tandem, o.pprof, o.keyType, reg, peerSpecs(o.sshpiper, o.containerssh))
		if err != nil {
			logf("set-up failed: %v", err)
			return 1
		}
		defer e.close()
	}
	failed := false
	section := func(name string, f func() error) {
		if !o.only[name] || ctx.Err() != nil {
			return
		}
		logf("(%s) start", name)
		if err := f(); err != nil {
			failed = true
			rep.errs = append(rep.errs, fmt.Sprintf("(%s) %v", name, err))
			logf("(%s) failed: %v", name, err)
		}
	}
	section("a", func() error {
		r, err := runThroughput(ctx, e, o.size, o.reps, logf)
		rep.throughput = &r
		return err
	})
	section("g", func() error {
		r, err := runSFTP(ctx, e, o.sftpSize, o.sftpReps, logf)
		rep.sftp = &r
		return err
	})
	section("b", func() error {
		warm := min(50, max(5, o.rtt/20))
		r, err := runEcho(ctx, e, o.rtt, warm, logf)
		rep.echo = &r
		return err
	})
	section("c", func() error {
		r, err := runSetup(ctx, e, o.setups, logf)
		rep.setup = r
		return err
	})
	section("d", func() error {
		for _, n := range o.sessions {
			r, err := runIdle(ctx, e, n, o.batch, o.openRounds, o.idleLimit, o.idleWindow, logf)
			if err != nil {
				return fmt.Errorf("%d sessions: %w", n, err)
			}
			rep.idle = append(rep.idle, r)
		}
		return nil
	})
	section("f", func() error {
		r, err := runFlood(ctx, e, o.floods, logf)
		rep.flood = r
		return err
	})
	section("h", func() error {
		r, err := runAttack(ctx, e, o.attackTime, logf)
		rep.attack = r
		return err
	})
	if e != nil && len(e.peers) > 0 && ctx.Err() == nil {
		logf("(peers) start: %d peer columns", len(e.peers))
		r, err := runPeerCompare(ctx, e, o, logf)
		rep.peers = r
		if err != nil {
			failed = true
			rep.errs = append(rep.errs, fmt.Sprintf("(peers) %v", err))
			logf("(peers) failed: %v", err)
		}
	}
	section("e", func() error {
		logf("(e) running the audit benchmarks (about 10-20s)")
		r, cmdline, err := runAudit(ctx, o.goTool, o.repo, o.quick)
		rep.audit, rep.auditCmd = r, cmdline
		return err
	})
	if ctx.Err() != nil {
		failed = true
		rep.errs = append(rep.errs, "interrupted")
	}

	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o600); err != nil {
			logf("write %s: %v", o.out, err)
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

// parseFlags reads the flags; -quick changes the defaults of the size
// flags that were not given.
func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("tandem-bench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.tandem, "tandem", "bin/tandem", "the tandem binary (build it with: go build -o bin/tandem ./cmd/tandem)")
	fs.StringVar(&o.repo, "repo", "", "Tandem's repository, for (e); default: the directory of go.mod above the working directory")
	fs.StringVar(&o.goTool, "go", "go", "the go tool, for (e)")
	fs.BoolVar(&o.quick, "quick", false, "smoke run in seconds: tiny sizes, 20 sessions, few iterations")
	only := fs.String("only", "a,b,c,d,e,f,g,h", "sections to run: a throughput, b echo round trip, c set-up, d idle sessions, e audit, f request floods, g sftp, h logins under attack")
	fs.IntVar(&o.floods, "floods", 100_000, "requests per flood, at most (f)")
	size := fs.Int64("size", 1<<30, "bytes per bulk transfer (a)")
	fs.IntVar(&o.reps, "reps", 3, "transfers per path and direction (a)")
	sftpSize := fs.Int64("sftp-size", 1<<30, "bytes of the file put and got (g); it is held in /dev/shm twice at most")
	fs.IntVar(&o.sftpReps, "sftp-reps", 2, "transfers per client mode, path and direction (g)")
	fs.IntVar(&o.rtt, "rtt", 2000, "one-byte round trips per path (b)")
	fs.IntVar(&o.setups, "setups", 30, "set-ups per path and mode (c)")
	sessions := fs.String("sessions", "200,1000", "idle session counts (d), comma-separated")
	fs.IntVar(&o.batch, "batch", 50, "idle sessions opened at once (d)")
	fs.IntVar(&o.openRounds, "open-rounds", 3, "alternating pairs of openings, direct and through the gateway, for the opening time of counts up to 200 (d); the ratio is their median")
	fs.DurationVar(&o.idleLimit, "idle-limit", 5*time.Minute, "time limit for opening the sessions of one count (d)")
	fs.DurationVar(&o.idleWindow, "idle-window", 30*time.Second, "how long the sessions stay idle while CPU is measured (d); the gateway's keep-alive interval is 15s")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs)")
	fs.DurationVar(&o.attackTime, "attack-time", 10*time.Second, "how long each flood of (h) runs")
	fs.StringVar(&o.pprof, "pprof", "", "start the gateway with --pprof on this loopback address (e.g. 127.0.0.1:6060), to profile it during a section")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	keyType := fs.String("key-type", string(ca.KeyP256), "the gateway's gateway.key_type: ecdsa-p256 (the default here: the type of the target's host key and the person's key, so every leg verifies the same signatures) or ecdsa-p384 (the gateway's own default)")
	fs.StringVar(&o.sshpiper, "sshpiper", "", "sshpiperd binary (its yaml plugin beside it, in plugins/): adds sshpiper as comparison columns for a, b, c, d, g")
	fs.StringVar(&o.containerssh, "containerssh", "", "containerssh binary: adds ContainerSSH (sshproxy backend) as comparison columns for a, b, c, d, g")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.keyType = ca.KeyType(*keyType)
	if err := o.keyType.Valid(); err != nil {
		return o, fmt.Errorf("-key-type: %w", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if o.quick {
		quickDefaults := map[string]func(){
			"size":        func() { *size = 16 << 20 },
			"reps":        func() { o.reps = 1 },
			"sftp-size":   func() { *sftpSize = 16 << 20 },
			"sftp-reps":   func() { o.sftpReps = 1 },
			"attack-time": func() { o.attackTime = time.Second },
			"rtt":         func() { o.rtt = 100 },
			"setups":      func() { o.setups = 5 },
			"sessions":    func() { *sessions = "20" },
			"batch":       func() { o.batch = 10 },
			"open-rounds": func() { o.openRounds = 1 },
			"idle-limit":  func() { o.idleLimit = time.Minute },
			"idle-window": func() { o.idleWindow = 2 * time.Second },
		}
		for name, set := range quickDefaults {
			if !given[name] {
				set()
			}
		}
	}
	o.size, o.sftpSize = *size, *sftpSize
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains("abcdefgh", s) || len(s) != 1 {
			return o, fmt.Errorf("-only: unknown section %q (known: a, b, c, d, e, f, g, h)", s)
		}
		o.only[s] = true
	}
	for _, s := range strings.Split(*sessions, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 5000 {
			return o, fmt.Errorf("-sessions: %q is not a count from 1 to 5000", s)
		}
		o.sessions = append(o.sessions, n)
	}
	switch {
	case o.size < 1 || o.size > 16<<30:
		return o, errors.New("-size: from 1 byte to 16 GiB")
	case o.reps < 1 || o.reps > 100:
		return o, errors.New("-reps: from 1 to 100")
	case o.sftpSize < 1 || o.sftpSize > 4<<30:
		return o, errors.New("-sftp-size: from 1 byte to 4 GiB")
	case o.sftpReps < 1 || o.sftpReps > 20:
		return o, errors.New("-sftp-reps: from 1 to 20")
	case o.attackTime < 500*time.Millisecond || o.attackTime > 5*time.Minute:
		return o, errors.New("-attack-time: from 500ms to 5m")
	case o.rtt < 1 || o.rtt > 1_000_000:
		return o, errors.New("-rtt: from 1 to 1000000")
	case o.setups < 1 || o.setups > 10_000:
		return o, errors.New("-setups: from 1 to 10000")
	case o.batch < 1 || o.batch > 500:
		return o, errors.New("-batch: from 1 to 500")
	}
	for _, p := range []*string{&o.sshpiper, &o.containerssh} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return o, err
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
			return o, fmt.Errorf("peer binary %s: not a file (%v)", *p, err)
		}
		*p = abs
	}
	var err error
	if o.repo == "" {
		if o.repo, err = repoRoot(); err != nil && o.only["e"] {
			return o, err
		}
	}
	if o.only["a"] || o.only["b"] || o.only["c"] || o.only["d"] || o.only["g"] || o.only["h"] {
		if o.tandem, err = filepath.Abs(o.tandem); err != nil {
			return o, fmt.Errorf("-tandem: %w", err)
		}
		if _, err := os.Stat(o.tandem); err != nil {
			return o, fmt.Errorf("-tandem: %w (build it with: go build -o bin/tandem ./cmd/tandem)", err)
		}
	}
	return o, nil
}

// repoRoot finds the directory of Tandem's go.mod above the working
// directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for range 64 { // bounded: no path is this deep
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module tandem.dev/tandem") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("go.mod of tandem.dev/tandem not found above the working directory; pass -repo")
}

// machine describes where the benchmark ran.
type machine struct {
	CPUs            int
	CPUModel        string
	MemTotal        string
	Kernel, OpenSSH string
	Go, Distro      string
	LoadStart       string // /proc/loadavg when the run started
}

// loadAvg returns the 1, 5 and 15 minute load averages: other work on the
// machine skews every figure, and this shows whether there was any.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// describeMachine collects the facts the report starts with.
func describeMachine(ctx context.Context, goTool string) machine {
	m := machine{CPUs: numCPU(), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		m.Distro = "Debian " + strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ssh", "-V").CombinedOutput(); err == nil {
		m.OpenSSH = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, goTool, "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	return m
}
