package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client-side algorithms, the same on every leg (see PERFORMANCE.md). They
// go into the ssh_config under "Host *" rather than on the command line,
// because ssh does not pass -o options to the ssh it starts for
// ProxyJump.
const (
	benchCipher = "aes128-gcm@openssh.com"
	benchKex    = "ecdh-sha2-nistp256"
)

// Host aliases of the benchmark's ssh_config.
const (
	hostDirect     = "direct"          // the target sshd, straight
	hostTandem     = "tandem"          // the target through the gateway, user-name mode (root%target)
	hostTandemJump = "target"          // the target through the gateway, jump mode (ProxyJump gw)
	hostDirectJump = "direct-via-jump" // the target through a plain OpenSSH jump host (ProxyJump jumphost)
	hostTandemProd = "tandem-prod"     // the same target through the gateway as a four-eyes host (root%target-prod)
	hostJoiner     = "gw-joiner"       // the gateway as the second person (bench2), for `join ID`
)

// Persons and host names of the gateway configuration.
const (
	personOwner  = "bench"       // owns every measured session
	personJoiner = "bench2"      // joins the four-eyes session as peer
	gwHostTest   = "target"      // test environment: a session is live at once
	gwHostProd   = "target-prod" // production: a session waits for a second person (M6)
)

// env is one benchmark setup on loopback: a target sshd, a plain sshd as
// jump host, the gateway, and one OpenSSH client configuration.
type env struct {
	dir      string
	tandem   string // the tandem binary
	sshd     string // path of sshd
	reg      *procs
	key      string // the owner's private key (ECDSA P-256)
	pub      string
	key2     string // the second person's private key, for joining
	pub2     string
	sshCfg   string // ssh_config for -F
	known    string // known_hosts
	gwConfig string // tandem.yaml
	gwPort   int
	gw       *proc
	gwLog    *os.File
	target   *proc
	jump     *proc
}

// newEnv writes keys and configurations, starts both sshds and the
// gateway. Every process is tracked in reg.
func newEnv(ctx context.Context, dir, tandemBin string, reg *procs) (*env, error) {
	e := &env{dir: dir, tandem: tandemBin, reg: reg}
	var err error
	if e.sshd, err = findProgram("sshd"); err != nil {
		return nil, err
	}
	for _, p := range []string{"ssh", "ssh-keygen"} {
		if _, err := findProgram(p); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		// sshd needs its privilege-separation directory even for -t.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("create /run/sshd: %w", err)
		}
	}
	if e.key, e.pub, err = keyPair(dir, "id_ecdsa"); err != nil {
		return nil, err
	}
	if e.key2, e.pub2, err = keyPair(dir, "id_ecdsa_joiner"); err != nil {
		return nil, err
	}
	targetKey, targetPub, err := keyPair(dir, "target_host_key")
	if err != nil {
		return nil, err
	}
	jumpKey, jumpPub, err := keyPair(dir, "jump_host_key")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	targetPort, jumpPort := ports[0], ports[1]
	e.gwPort = ports[2]

	e.gwConfig = filepath.Join(dir, "tandem.yaml")
	if err := writeFile(e.gwConfig, gatewayConfig(dir, e.gwPort, targetPort, e.pub, e.pub2, targetPub)); err != nil {
		return nil, err
	}
	userCA, err := e.tandemOut(ctx, "ca", "public", "--config", e.gwConfig, "--kind", "user")
	if err != nil {
		return nil, err
	}

	// The target trusts the gateway's user CA and the person's plain key
	// (for the direct runs). Its algorithms are pinned to the client's, so
	// that the gateway's upstream leg, which offers the bsi profile
	// (aes256-gcm first), negotiates the same cipher and key exchange as
	// the direct connection.
	if e.target, err = e.startSSHD(ctx, "sshd target", targetPort, targetKey, []string{
		"TrustedUserCAKeys " + mustWrite(dir, "user_ca.pub", userCA+"\n"),
		"AuthorizedKeysFile " + mustWrite(dir, "authorized_keys", e.pub+"\n"),
		"Ciphers " + benchCipher,
		"KexAlgorithms " + benchKex,
		"MaxStartups 2000",
		"MaxSessions 2000",
	}); err != nil {
		return nil, err
	}
	if e.jump, err = e.startSSHD(ctx, "sshd jumphost", jumpPort, jumpKey, []string{
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"AllowTcpForwarding yes",
		"Ciphers " + benchCipher,
		"KexAlgorithms " + benchKex,
		"MaxStartups 2000",
	}); err != nil {
		return nil, err
	}
	if err := e.startGateway(ctx); err != nil {
		return nil, err
	}
	clientCfg, err := e.tandemOut(ctx, "client-config", "--config", e.gwConfig, "--person", personOwner)
	if err != nil {
		return nil, err
	}
	var caLine string
	for _, l := range strings.Split(clientCfg, "\n") {
		if strings.HasPrefix(l, "@cert-authority ") {
			caLine = strings.TrimSpace(l)
		}
	}
	if caLine == "" {
		return nil, fmt.Errorf("tandem client-config printed no @cert-authority line:\n%s", clientCfg)
	}
	e.known = mustWrite(dir, "known_hosts", strings.Join([]string{
		caLine,
		fmt.Sprintf("[127.0.0.1]:%d %s", targetPort, targetPub),
		fmt.Sprintf("[127.0.0.1]:%d %s", jumpPort, jumpPub),
	}, "\n")+"\n")
	e.sshCfg = mustWrite(dir, "ssh_config", e.clientConfig(targetPort, jumpPort))
	return e, nil
}

// gatewayConfig is a minimal Tandem configuration: two persons, bench
// (the owner of every measured session) and bench2 (who joins one of
// them), both allowed root and to join as peer on the benchmark tenant;
// the one target sshd twice, as a test host (live at once) and as a
// production host (four-eyes: a session waits until a second person
// joins); and a connection cap above the largest idle-session count.
func gatewayConfig(dir string, gwPort, targetPort int, ownerPub, joinerPub, targetPub string) string {
	day := func(offset int) string { return time.Now().UTC().AddDate(0, 0, offset).Format("2006-01-02") }
	var persons strings.Builder
	for _, p := range []struct{ id, name, pub string }{
		{personOwner, "Bench Person", ownerPub},
		{personJoiner, "Bench Second Person", joinerPub},
	} {
		fmt.Fprintf(&persons, `  - id: %s
    name: %s
    email: %s@example.org
    roles: [admin]
    keys:
      - key: %q
        added: %s
    obligations:
      confidentiality_signed: %s
      training_valid_until: 2099-12-31
`, p.id, p.name, p.id, p.pub, day(-10), day(-100))
	}
	var hosts strings.Builder
	// One target for both: the configuration refuses one address for two
	// environments, so the production host names it as localhost.
	for _, h := range []struct{ name, host, env string }{{gwHostTest, "127.0.0.1", "test"}, {gwHostProd, "localhost", "production"}} {
		fmt.Fprintf(&hosts, `  - name: %s
    address: "%s:%d"
    tenant: bench
    environment: %s
    host_key: %q
`, h.name, h.host, targetPort, h.env, targetPub)
	}
	return fmt.Sprintf(`gateway:
  listen: "127.0.0.1:%d"
  data_dir: %q
  max_connections: 5000
  # Every benchmark client comes from 127.0.0.1: lift M19's caps on
  # unauthenticated connections, or batches of sessions are cut short.
  limits: {unauthenticated: 2000, unauthenticated_per_source: 2000}
tenants:
  - id: bench
    name: Benchmark
persons:
%sroles:
  - id: admin
    description: root on the benchmark target; may join others' sessions as peer
    allow:
      - hosts: {tenant: bench}
        logins: [root]
        join: [peer]
hosts:
%s`, gwPort, filepath.Join(dir, "data"), persons.String(), hosts.String())
}

// clientConfig is the person's ssh_config. Options under "Host *" come
// last because ssh takes the first value it finds.
func (e *env) clientConfig(targetPort, jumpPort int) string {
	return fmt.Sprintf(`# written by tandem-bench
Host gw
  HostName 127.0.0.1
  Port %[1]d
  User %[18]s
Host %[4]s
  HostName 127.0.0.1
  Port %[1]d
  User root%%%[12]s
Host %[13]s
  HostName 127.0.0.1
  Port %[1]d
  User root%%%[14]s
# The second person. ssh collects IdentityFile lines in order, so this
# key is offered before the owner's one from "Host *".
Host %[15]s
  HostName 127.0.0.1
  Port %[1]d
  User %[16]s
  IdentityFile %[17]s
Host %[5]s
  User root
  ProxyJump gw
Host %[6]s
  HostName 127.0.0.1
  Port %[2]d
  User root
Host jumphost
  HostName 127.0.0.1
  Port %[3]d
  User root
Host %[7]s
  HostName 127.0.0.1
  Port %[2]d
  User root
  ProxyJump jumphost
Host *
  IdentityFile %[8]s
  IdentitiesOnly yes
  IdentityAgent none
  BatchMode yes
  UserKnownHostsFile %[9]s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  LogLevel ERROR
  ConnectTimeout 10
  ServerAliveInterval 0
  ControlMaster no
  ControlPath none
  Compression no
  EscapeChar none
  Ciphers %[10]s
  KexAlgorithms %[11]s
`, e.gwPort, targetPort, jumpPort, hostTandem, hostTandemJump, hostDirect, hostDirectJump,
		e.key, e.known, benchCipher, benchKex,
		gwHostTest, hostTandemProd, gwHostProd, hostJoiner, personJoiner, e.key2, personOwner)
}

// startSSHD writes an sshd_config, checks it with sshd -t and starts sshd
// in the foreground, logging to a file.
func (e *env) startSSHD(ctx context.Context, name string, port int, hostKey string, extra []string) (*proc, error) {
	sub := filepath.Join(e.dir, strings.ReplaceAll(name, " ", "-"))
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", sub, err)
	}
	cfg := append([]string{
		"ListenAddress 127.0.0.1",
		"Port " + strconv.Itoa(port),
		"HostKey " + hostKey,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"LogLevel INFO",
		"PidFile none",
		// sshd runs every command through the login's shell, and Debian's
		// bash then reads ~/.bashrc when it sees SSH_CLIENT at shell
		// level 1. Whatever that file does (pyenv, conda, nvm…) would be
		// timed as session set-up and can serialise hundreds of idle
		// sessions on a lock. With SHLVL=1 preset, bash starts at level 2
		// and skips it, the same for the direct and the gateway path.
		"SetEnv SHLVL=1",
	}, extra...)
	cfgFile := mustWrite(sub, "sshd_config", strings.Join(cfg, "\n")+"\n")
	if out, err := exec.CommandContext(ctx, e.sshd, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sshd -t -f %s: %v\n%s", cfgFile, err, out)
	}
	cmd := exec.Command(e.sshd, "-f", cfgFile, "-D", "-E", filepath.Join(sub, "sshd.log"))
	p, err := e.reg.start(name, cmd)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, port, p, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%s: %w (log: %s)", name, err, filepath.Join(sub, "sshd.log"))
	}
	return p, nil
}

// startGateway starts `tandem serve` and waits until it listens.
func (e *env) startGateway(ctx context.Context) error {
	if e.gwLog == nil {
		f, err := os.OpenFile(filepath.Join(e.dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("gateway log: %w", err)
		}
		e.gwLog = f
	}
	cmd := exec.Command(e.tandem, "serve", "--config", e.gwConfig)
	cmd.Stdout, cmd.Stderr = e.gwLog, e.gwLog
	p, err := e.reg.start("tandem serve", cmd)
	if err != nil {
		return err
	}
	e.gw = p
	if err := waitListening(ctx, e.gwPort, p, 15*time.Second); err != nil {
		return fmt.Errorf("tandem serve: %w (log: %s)", err, e.gwLog.Name())
	}
	return nil
}

// restartGateway stops the gateway and starts a fresh one, so that a
// memory measurement starts from a process that has not grown its heap in
// earlier tests.
func (e *env) restartGateway(ctx context.Context) error {
	if err := e.gw.stop(10 * time.Second); err != nil {
		return err
	}
	e.reg.forget([]*proc{e.gw})
	return e.startGateway(ctx)
}

// close stops everything and closes the gateway log.
func (e *env) close() {
	if e.gwLog != nil {
		_ = e.gwLog.Close()
	}
}

// ssh returns an ssh command with the benchmark's configuration.
func (e *env) ssh(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", append([]string{"-F", e.sshCfg}, args...)...)
	// Its own process group, so that a ProxyJump helper dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runSSH runs ssh to completion with a deadline and returns stderr on
// failure.
func (e *env) runSSH(ctx context.Context, timeout time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.ssh(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ssh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tandemOut runs a tandem command and returns its trimmed stdout.
func (e *env) tandemOut(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, e.tandem, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tandem %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// keyPair creates an ECDSA P-256 key pair with ssh-keygen.
func keyPair(dir, name string) (priv, pub string, err error) {
	priv = filepath.Join(dir, name)
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-C", name+"@tandem-bench", "-f", priv).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("ssh-keygen %s: %w: %s", name, err, out)
	}
	b, err := os.ReadFile(priv + ".pub")
	if err != nil {
		return "", "", fmt.Errorf("read %s.pub: %w", priv, err)
	}
	return priv, strings.TrimSpace(string(b)), nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (the listeners are closed before return; sshd cannot be
// handed a listener).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitListening polls a TCP connect to 127.0.0.1:port until it succeeds,
// the process ends, or the timeout passes.
func waitListening(ctx context.Context, port int, p *proc, timeout time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("ended before listening on %s: %v", addr, p.err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listening on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findProgram looks a program up in PATH and in the sbin directories,
// where Debian puts sshd.
func findProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found; install it with: apt-get install -y openssh-server openssh-client", name)
}

// writeFile writes a file with mode 0600.
func writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// mustWrite writes dir/name and returns its path. Used only for files in
// the benchmark's own fresh temporary directory, where a write failure
// means the machine is unusable; it panics, and main's deferred cleanup
// still stops every process.
func mustWrite(dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := writeFile(p, content); err != nil {
		panic(err)
	}
	return p
}
