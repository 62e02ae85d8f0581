package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// build is the one tandem binary of this test process. It is package state
// on purpose: building takes seconds and every test of a binary needs the
// same result, so it is built once (sync.Once) and removed by Cleanup.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildTandem builds ./cmd/tandem once per test binary and returns the
// path of the executable. The e2e TestMain calls Cleanup to remove it.
func BuildTandem(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "tandem-e2e-bin-")
		if err != nil {
			build.err = fmt.Errorf("temp dir for binary: %w", err)
			return
		}
		build.dir = dir
		bin := filepath.Join(dir, "tandem")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// The test build lets a test move the clock of the processes it
		// starts (internal/clock): retention and expiry are tested by
		// moving days, not by waiting for them.
		cmd := exec.CommandContext(ctx, goTool, "build", "-tags", "tandem_testclock", "-o", bin, "./cmd/tandem")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/tandem in %s: %v\n%s", root, err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatalf("build tandem: %v", build.err)
	}
	return build.bin
}

// Cleanup removes the binary built by BuildTandem. Call it from TestMain
// after m.Run.
func Cleanup() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// RepoRoot returns the directory of Tandem's go.mod, searched upwards from
// the working directory (go test runs in the package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for range 64 { // bounded: no path is this deep
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module tandem.dev/tandem") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("go.mod of tandem.dev/tandem not found above the working directory")
}

// Gateway is a running `tandem serve` process.
type Gateway struct {
	Bin     string // the tandem binary
	Config  string // the configuration file
	DataDir string // gateway.data_dir from the configuration (absolute)
	Addr    string // 127.0.0.1:port
	Port    int
	// Stderr collects the process's stderr and stdout; safe to read while
	// the gateway runs.
	Stderr *SyncBuffer
	// Env is added to the environment of the gateway and of Run: a test
	// that moves the clock (TANDEM_TEST_CLOCK_FILE) moves it for both.
	Env []string

	proc *process
}

// StartGateway starts `tandem serve --config configPath`, waits until it
// accepts TCP connections on 127.0.0.1:port (deadline 15s) and registers a
// cleanup that stops it by PID (SIGTERM, SIGKILL after 5s).
func StartGateway(t testing.TB, bin, configPath string, port int) *Gateway {
	t.Helper()
	return StartGatewayEnv(t, bin, configPath, port, nil)
}

// StartGatewayEnv is StartGateway with env (KEY=VALUE) added to the
// gateway's environment and to that of every g.Run. Tests run in
// parallel, so they pass their variables here, never with t.Setenv.
func StartGatewayEnv(t testing.TB, bin, configPath string, port int, env []string) *Gateway {
	t.Helper()
	g := &Gateway{
		Env:     env,
		Bin:     bin,
		Config:  configPath,
		DataDir: dataDirOf(t, configPath),
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Port:    port,
		Stderr:  &SyncBuffer{},
	}
	cmd := exec.Command(bin, "serve", "--config", configPath)
	cmd.Env = withEnv(env)
	g.proc = startListener(t, "tandem serve --config "+configPath, cmd, g.Addr, g.Stderr)
	return g
}

// Stop stops the gateway now (SIGTERM, then SIGKILL after 5s) and fails
// the test if it does not end. Stopping twice is harmless.
func (g *Gateway) Stop(t testing.TB) {
	t.Helper()
	if err := g.proc.stop(5 * time.Second); err != nil {
		t.Fatalf("stop gateway: %v", err)
	}
}

// Exited reports whether the gateway process has ended.
func (g *Gateway) Exited() bool { return g.proc.exited() }

// Tail returns the end of the gateway's output, for failure messages.
func (g *Gateway) Tail() string { return g.Stderr.Tail(3000) }

// Run runs the tandem binary with args (e.g. "ca", "public", "--config",
// g.Config, "--kind", "user") and returns its output.
func (g *Gateway) Run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return RunTandemEnv(t, g.Bin, g.Env, args...)
}

// RunTandem runs a tandem command with a 60s deadline, also before any
// gateway is started (ca public, config check).
func RunTandem(t testing.TB, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return RunTandemEnv(t, bin, nil, args...)
}

// RunTandemEnv is RunTandem with env (KEY=VALUE) added to the command's
// environment.
func RunTandemEnv(t testing.TB, bin string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb SyncBuffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = withEnv(env)
	cmd.Stdout = &out
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("tandem %s: timed out after 60s: %w", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), err
}

// withEnv is the test process's environment plus env; nil (inherit it
// unchanged) when env is empty.
func withEnv(env []string) []string {
	if len(env) == 0 {
		return nil
	}
	return append(os.Environ(), env...)
}

// dataDirOf reads gateway.data_dir from a configuration file, resolved
// against the file's directory as Tandem does.
func dataDirOf(t testing.TB, configPath string) string {
	t.Helper()
	b, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatalf("read config %s: %v", configPath, err)
	}
	var c struct {
		Gateway struct {
			DataDir string `yaml:"data_dir"`
		} `yaml:"gateway"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse config %s for data_dir: %v", configPath, err)
	}
	d := c.Gateway.DataDir
	if d != "" && !filepath.IsAbs(d) {
		d = filepath.Join(filepath.Dir(configPath), d)
	}
	return d
}

// PID is the gateway process's id, for tests that signal it (SIGHUP
// reloads the configuration).
func (g *Gateway) PID() int { return g.proc.cmd.Process.Pid }

// Signal sends sig to the gateway process.
func (g *Gateway) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := g.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal gateway: %v", err)
	}
}

// Crash kills the gateway with SIGKILL, as a power cut would, and waits
// until it is gone.
func (g *Gateway) Crash(t testing.TB) {
	t.Helper()
	_ = g.proc.cmd.Process.Kill()
	select {
	case <-g.proc.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("gateway %d did not die after SIGKILL", g.PID())
	}
}
