package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ClientOpts describes one test person's OpenSSH client setup.
type ClientOpts struct {
	// Key is the person's private key file; empty generates an ECDSA key
	// in the client directory.
	Key string
	// Person is the gateway user name (the person id).
	Person string
	// GatewayPort is the port of the gateway on 127.0.0.1, reached as
	// host alias "gw".
	GatewayPort int
	// KnownHosts are known_hosts lines, typically the "@cert-authority * …"
	// line that `tandem client-config` prints.
	KnownHosts []string
	// JumpHosts maps target host names to the login to use there; each
	// becomes "Host <name>" with "ProxyJump gw".
	JumpHosts map[string]string
	// RouteAliases maps extra aliases of the gateway to a user name that
	// routes to a target, e.g. "gwu" → "root%db1", for programs that
	// cannot take the user name on the command line the way ssh can.
	RouteAliases map[string]string
	// Hosts are further entries, e.g. a direct route to a target for
	// comparison.
	Hosts []HostEntry
	// Options are "Keyword value" lines for every host. They come before
	// testenv's defaults, and ssh takes the first value it finds, so they
	// override them (the benchmark pins ciphers and turns keep-alives off).
	Options []string
}

// HostEntry is one "Host" block of an ssh_config.
type HostEntry struct {
	Name      string
	HostName  string
	Port      int
	User      string
	ProxyJump string
	Options   []string // further "Keyword value" lines
}

// Client is one test person's OpenSSH client: a key and an ssh_config
// (used with -F, so the options also reach the jump hop).
type Client struct {
	Dir        string
	Key        string
	ConfigFile string
	KnownHosts string
}

// NewClient writes an ssh_config and known_hosts file into dir.
func NewClient(t testing.TB, dir string, opts ClientOpts) *Client {
	t.Helper()
	RequireProgram(t, "ssh")
	if opts.Key == "" {
		opts.Key, _ = KeyPair(t, dir, "id_ecdsa", "ecdsa")
	}
	c, err := WriteClient(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WriteClient is NewClient for programs that are not tests.
func WriteClient(dir string, opts ClientOpts) (*Client, error) {
	c := &Client{
		Dir:        dir,
		Key:        opts.Key,
		ConfigFile: filepath.Join(dir, "ssh_config"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
	}
	if c.Key == "" {
		var err error
		if c.Key, _, err = NewKeyPair(dir, "id_ecdsa", "ecdsa"); err != nil {
			return nil, err
		}
	}
	var hosts []HostEntry
	hosts = append(hosts, HostEntry{Name: "gw", HostName: "127.0.0.1", Port: opts.GatewayPort, User: opts.Person})
	for _, alias := range sortedKeys(opts.RouteAliases) {
		hosts = append(hosts, HostEntry{Name: alias, HostName: "127.0.0.1", Port: opts.GatewayPort, User: opts.RouteAliases[alias]})
	}
	for _, name := range sortedKeys(opts.JumpHosts) {
		hosts = append(hosts, HostEntry{Name: name, User: opts.JumpHosts[name], ProxyJump: "gw"})
	}
	hosts = append(hosts, opts.Hosts...)
	hosts = append(hosts, HostEntry{Name: "*", Options: opts.Options})

	var b strings.Builder
	b.WriteString("# written by internal/testenv for one person\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n", h.Name)
		if h.HostName != "" {
			fmt.Fprintf(&b, "  HostName %s\n", h.HostName)
		}
		if h.Port != 0 {
			fmt.Fprintf(&b, "  Port %d\n", h.Port)
		}
		if h.User != "" {
			fmt.Fprintf(&b, "  User %s\n", h.User)
		}
		if h.ProxyJump != "" {
			fmt.Fprintf(&b, "  ProxyJump %s\n", h.ProxyJump)
		}
		for _, o := range h.Options {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	// Defaults last: ssh_config takes the first value it finds. LogLevel
	// INFO, not ERROR, because OpenSSH shows the server's pre-auth banner
	// (where Tandem explains refusals) only at INFO and above.
	fmt.Fprintf(&b, `  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  BatchMode yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  LogLevel INFO
  ConnectTimeout 10
  ServerAliveInterval 5
  ControlMaster no
  ControlPath none
`, c.Key, c.KnownHosts)
	for path, content := range map[string]string{c.ConfigFile: b.String(), c.KnownHosts: strings.Join(opts.KnownHosts, "\n") + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return c, nil
}

// Result is the outcome of a client program run.
type Result struct {
	Cmd      string // the command line, for messages
	Stdout   string // empty when RunOpts.Stdout was given
	Stderr   string
	Code     int  // exit code; 128+n for death by signal n; -1 if not run
	TimedOut bool // killed at the deadline
}

// String describes the run for failure messages.
func (r Result) String() string {
	s := fmt.Sprintf("%s\n  exit code: %d", r.Cmd, r.Code)
	if r.TimedOut {
		s += " (killed at deadline)"
	}
	return s + fmt.Sprintf("\n  stdout: %q\n  stderr: %q", clip(r.Stdout, 2000), clip(r.Stderr, 4000))
}

// RunOpts controls a client program run.
type RunOpts struct {
	Stdin   io.Reader     // nil: empty input (/dev/null)
	Stdout  io.Writer     // nil: collected into Result.Stdout
	Timeout time.Duration // 0: 60s
	Env     []string      // added to the environment
}

// SSH runs `ssh -F <config> args…` with a 60s deadline.
func (c *Client) SSH(t testing.TB, args ...string) Result {
	t.Helper()
	return c.Exec(t, RunOpts{}, "ssh", args...)
}

// Run runs an OpenSSH-based client program (ssh, scp, sftp, rsync) with
// this client's config and a 60s deadline.
func (c *Client) Run(t testing.TB, name string, args ...string) Result {
	t.Helper()
	return c.Exec(t, RunOpts{}, name, args...)
}

// RunInput is Run with the given standard input.
func (c *Client) RunInput(t testing.TB, stdin io.Reader, name string, args ...string) Result {
	t.Helper()
	return c.Exec(t, RunOpts{Stdin: stdin}, name, args...)
}

// Exec runs a client program with options. The program runs in its own
// process group, so a ProxyJump child is killed with it at the deadline.
func (c *Client) Exec(t testing.TB, o RunOpts, name string, args ...string) Result {
	t.Helper()
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.command(t, ctx, name, args...)
	cmd.Env = append(cmd.Environ(), o.Env...)
	cmd.Stdin = o.Stdin
	var stdout, stderr SyncBuffer
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	} else {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	err := cmd.Run()
	r := Result{
		Cmd:    cmd.String(),
		Stdout: stdout.String(),
		Stderr: stderr.String(),
		Code:   exitCode(err),
	}
	if ctx.Err() != nil {
		r.TimedOut = true
	}
	if r.Code == -1 && err != nil {
		r.Stderr += "\n[testenv: " + err.Error() + "]"
	}
	return r
}

// Command returns an unstarted command for a client program with this
// client's config, for tests that drive it themselves (background
// forwards, PTYs). It runs in its own process group; the caller owns it
// and must stop it, e.g. with KillGroup.
func (c *Client) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	return c.command(t, context.Background(), name, args...)
}

func (c *Client) command(t testing.TB, ctx context.Context, name string, args ...string) *exec.Cmd {
	t.Helper()
	path := RequireProgram(t, name)
	var full []string
	switch name {
	case "rsync":
		full = append([]string{"-e", "ssh -F " + c.ConfigFile}, args...)
	default: // ssh, scp, sftp all take -F
		full = append([]string{"-F", c.ConfigFile}, args...)
	}
	cmd := exec.CommandContext(ctx, path, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return KillGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// KillGroup sends SIGKILL to the process group of a command started by
// Command (its PID is the group id).
func KillGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n/2] + "…[" + strconv.Itoa(len(s)-n) + " bytes]…" + s[len(s)-n/2:]
}
