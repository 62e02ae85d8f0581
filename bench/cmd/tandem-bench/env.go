package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
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
	// A second target sshd with OpenSSH's default algorithms: the client
	// still asks for the pinned ones, but the gateway's upstream leg gets
	// its profile's first choice (aes256-gcm, ecdh-sha2-nistp384).
	hostDirectDefault = "direct-default"
	hostTandemDefault = "tandem-default"
)

// Persons and host names of the gateway configuration.
const (
	personOwner  = "bench"       // owns every measured session
	personJoiner = "bench2"      // joins the four-eyes session as peer
	gwHostTest   = "target"      // test environment: a session is live at once
	gwHostProd   = "target-prod" // production: a session waits for a second person (M6)
	gwHostDef    = "target-default"
)

// env is one benchmark setup on loopback: a target sshd, a plain sshd as
// jump host, the gateway, and one OpenSSH client configuration.
type env struct {
	dir     string
	tandem  string     // the tandem binary
	pprof   string     // the gateway's --pprof address, or ""
	keyType ca.KeyType // the gateway's gateway.key_type
	reg     *procs
	key     string // the owner's private key (ECDSA P-256)
	sshCfg  string // ssh_config for -F
	// knownHosts is the file sshCfg names: the target's host keys and the
	// gateway's host CA, for the Go client of (b) too.
	knownHosts string
	gwConfig   string // tandem.yaml
	gwPort     int
	// What the gateway's configuration is made of, for (h)'s second one.
	targetPort, defaultPort        int
	ownerPub, joinerPub, targetPub string
	gw                             *proc
	gwLog                          *os.File
	// The sshd processes by name ("sshd target", "sshd jumphost"), for
	// the CPU their sessions cost (section c).
	sshds map[string]*proc
	peers []*peerRun // the comparison peers given, started
}

// newEnv writes keys and configurations, starts both sshds and the
// gateway. Every process is tracked in reg. Keys, sshd and client
// configurations and the gateway's configuration are made by
// internal/testenv, as for the end-to-end tests.
func newEnv(ctx context.Context, dir, tandemBin, pprof string, keyType ca.KeyType, reg *procs, peers []peerSpec) (*env, error) {
	e := &env{dir: dir, tandem: tandemBin, pprof: pprof, keyType: keyType, reg: reg}
	if _, err := testenv.FindProgram("ssh"); err != nil {
		return nil, err
	}
	// ECDSA P-256 keys: the two persons', the two sshds' host keys.
	type keyPair struct{ priv, pub string }
	var owner, joiner, targetHost, jumpHost keyPair
	var err error
	for name, k := range map[string]*keyPair{"id_ecdsa": &owner, "id_ecdsa_joiner": &joiner, "target_host_key": &targetHost, "jump_host_key": &jumpHost} {
		if k.priv, k.pub, err = testenv.NewKeyPair(dir, name, "ecdsa"); err != nil {
			return nil, err
		}
	}
	e.key = owner.priv
	var targetPort, jumpPort, defaultPort int
	for _, p := range []*int{&targetPort, &jumpPort, &defaultPort, &e.gwPort} {
		if *p, err = testenv.PickPort(); err != nil {
			return nil, err
		}
	}

	e.targetPort, e.defaultPort = targetPort, defaultPort
	e.ownerPub, e.joinerPub, e.targetPub = owner.pub, joiner.pub, targetHost.pub
	e.gwConfig = filepath.Join(dir, "tandem.yaml")
	if err := testenv.WriteConfig(e.gwConfig, gatewayConfig(dir, e.gwPort, targetPort, defaultPort, owner.pub, joiner.pub, targetHost.pub, keyType)); err != nil {
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
	target, err := e.startSSHD(ctx, "sshd target", testenv.TargetOpts{Port: targetPort, HostKeyFile: targetHost.priv,
		UserCA: userCA, AuthorizedKeys: []string{owner.pub}, Extra: []string{"MaxSessions 2000"}})
	if err != nil {
		return nil, err
	}
	jump, err := e.startSSHD(ctx, "sshd jumphost", testenv.TargetOpts{Port: jumpPort, HostKeyFile: jumpHost.priv,
		AuthorizedKeys: []string{owner.pub}, Extra: []string{"AllowTcpForwarding yes"}})
	if err != nil {
		return nil, err
	}
	// The same host key: the gateway's configuration pins it per host.
	deflt, err := e.startSSHD(ctx, "sshd target-default", testenv.TargetOpts{Port: defaultPort, HostKeyFile: targetHost.priv,
		UserCA: userCA, AuthorizedKeys: []string{owner.pub}, Extra: []string{defaultAlgorithms}})
	if err != nil {
		return nil, err
	}
	if err := e.startGateway(ctx); err != nil {
		return nil, err
	}
	e.peers, err = startPeers(ctx, e, peers, targetPort)
	if err != nil {
		e.close()
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
	return e, e.writeClient(caLine, joiner.priv, target, jump, deflt)
}

// gatewayConfig is a minimal Tandem configuration: two persons, bench
// (the owner of every measured session) and bench2 (who joins one of
// them), both allowed root and to join as peer on the benchmark tenant;
// the one target sshd twice, as a test host (live at once) and as a
// production host (four-eyes: a session waits until a second person
// joins); and a connection cap above the largest idle-session count.
func gatewayConfig(dir string, gwPort, targetPort, defaultPort int, ownerPub, joinerPub, targetPub string, keyType ca.KeyType) *config.Config {
	c := testenv.NewConfig(gwPort, filepath.Join(dir, "data"), config.Tenant{ID: "bench", Name: "Benchmark"})
	// The gateway's own keys: ECDSA P-256 unless -key-type says
	// otherwise, as the target's host key and the person's key are, so
	// that every leg verifies the same kind of signature (see -key-type).
	c.Gateway.KeyType = keyType
	c.Gateway.MaxConnections = 5000
	// Every benchmark client comes from 127.0.0.1 as one person: lift
	// M19's caps on unauthenticated connections (in total, per source and
	// per network) and on connections per person and source, or batches
	// of sessions are cut short — and a section that starts while the
	// gateway still releases the previous section's connections is
	// refused.
	c.Gateway.Limits = config.Limits{Unauthenticated: 2000, UnauthenticatedPerSource: 2000, UnauthenticatedPerPrefix: 2000,
		ConnectionsPerPerson: 5000, ConnectionsPerSource: 5000}
	c.Persons = []config.Person{testenv.Person(personOwner, ownerPub, "admin"), testenv.Person(personJoiner, joinerPub, "admin")}
	// Read: (g) reads the SFTP sessions' recordings back to check the
	// SHA-256 the gateway recorded for every file.
	c.Roles = []config.Role{{ID: "admin", Description: "root on the benchmark target; may join others' sessions as peer and read the recordings",
		Allow: []config.Rule{{Hosts: config.Selector{Tenant: "bench"}, Logins: []string{"root"}, Join: []string{config.JoinPeer}, Read: true}}}}
	// One target for both: the configuration refuses one address for two
	// environments, so the production host names it as localhost.
	for _, h := range []struct {
		name, host string
		port       int
		env        string
	}{{gwHostTest, "127.0.0.1", targetPort, config.Test}, {gwHostProd, "localhost", targetPort, config.Production},
		{gwHostDef, "127.0.0.1", defaultPort, config.Test}} {
		c.Hosts = append(c.Hosts, config.Host{Name: h.name, Address: net.JoinHostPort(h.host, strconv.Itoa(h.port)),
			Tenant: "bench", Environment: h.env, HostKey: targetPub})
	}
	return c
}

// writeClient writes the person's ssh_config and known_hosts. The
// options for every host come before testenv's defaults, and ssh takes
// the first value it finds: the same algorithms on every leg, no
// keep-alives, no escape character, and errors only.
func (e *env) writeClient(caLine, joinerKey string, target, jump, deflt *testenv.Target) error {
	direct := testenv.HostEntry{Name: hostDirect, HostName: "127.0.0.1", Port: target.Port, User: "root"}
	known := []string{caLine, target.KnownHostsLine(), jump.KnownHostsLine(), deflt.KnownHostsLine()}
	hosts := []testenv.HostEntry{
		// The second person. ssh collects IdentityFile lines in
		// order, so this key is offered before the owner's one from
		// "Host *".
		{Name: hostJoiner, HostName: "127.0.0.1", Port: e.gwPort, User: personJoiner, Options: []string{"IdentityFile " + joinerKey}},
		direct,
		{Name: "jumphost", HostName: "127.0.0.1", Port: jump.Port, User: "root"},
		{Name: hostDirectJump, HostName: "127.0.0.1", Port: target.Port, User: "root", ProxyJump: "jumphost"},
		{Name: hostDirectDefault, HostName: "127.0.0.1", Port: deflt.Port, User: "root"},
	}
	for _, p := range e.peers {
		known = append(known, fmt.Sprintf("[127.0.0.1]:%d %s", p.files.Port, strings.TrimSpace(p.pubLine)))
		hosts = append(hosts, testenv.HostEntry{Name: p.spec.alias(), HostName: "127.0.0.1", Port: p.files.Port, User: "root"})
	}
	c, err := testenv.WriteClient(e.dir, testenv.ClientOpts{
		Key: e.key, Person: personOwner, GatewayPort: e.gwPort,
		KnownHosts:   known,
		RouteAliases: map[string]string{hostTandem: "root%" + gwHostTest, hostTandemProd: "root%" + gwHostProd, hostTandemDefault: "root%" + gwHostDef},
		JumpHosts:    map[string]string{hostTandemJump: "root"},
		Hosts:        hosts,
		Options: []string{"LogLevel ERROR", "ServerAliveInterval 0", "Compression no", "EscapeChar none",
			"Ciphers " + benchCipher, "KexAlgorithms " + benchKex},
	})
	if err != nil {
		return err
	}
	e.sshCfg, e.knownHosts = c.ConfigFile, c.KnownHosts
	return nil
}

// defaultAlgorithms in TargetOpts.Extra makes startSSHD leave the
// algorithms at OpenSSH's defaults; sshd reads it as a comment.
const defaultAlgorithms = "# algorithms: OpenSSH's defaults"

// startSSHD writes an sshd configuration with testenv (checked with
// sshd -t) and starts sshd in the foreground, logging to a file. The
// benchmark pins its algorithms (unless opts.Extra holds
// defaultAlgorithms), lets one client hold many connections, and skips
// what a login prints.
func (e *env) startSSHD(ctx context.Context, name string, opts testenv.TargetOpts) (*testenv.Target, error) {
	sub := filepath.Join(e.dir, strings.ReplaceAll(name, " ", "-"))
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", sub, err)
	}
	// sshd runs every command through the login's shell, and Debian's
	// bash then reads ~/.bashrc when it sees SSH_CLIENT at shell level 1.
	// Whatever that file does (pyenv, conda, nvm…) would be timed as
	// session set-up and can serialise hundreds of idle sessions on a
	// lock. With SHLVL=1 preset, bash starts at level 2 and skips it, the
	// same for the direct and the gateway path.
	opts.Env = []string{"SHLVL=1"}
	pins := []string{"Ciphers " + benchCipher, "KexAlgorithms " + benchKex}
	if slices.Contains(opts.Extra, defaultAlgorithms) {
		pins = nil
	}
	opts.Extra = append(append(pins, "MaxStartups 2000", "UseDNS no", "PrintMotd no", "PrintLastLog no"), opts.Extra...)
	tg, err := testenv.PrepareSSHD(sub, opts)
	if err != nil {
		return nil, err
	}
	p, err := e.reg.start(name, tg.Command())
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, tg.Port, p, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%s: %w (log: %s)", name, err, tg.LogPath)
	}
	if e.sshds == nil {
		e.sshds = map[string]*proc{}
	}
	e.sshds[name] = p
	return tg, nil
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
	if e.pprof != "" {
		cmd.Args = append(cmd.Args, "--pprof", e.pprof)
	}
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
	closePeers(e.peers)
	e.peers = nil
}

// ssh returns an ssh command with the benchmark's configuration.
func (e *env) ssh(ctx context.Context, args ...string) *exec.Cmd {
	return e.command(ctx, "ssh", append([]string{"-F", e.sshCfg}, args...)...)
}

// command returns a client command (ssh, sftp) that is killed with its
// process group when ctx ends.
func (e *env) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, prog, args...)
	// Its own process group, so that a ProxyJump helper dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runSSH runs ssh to completion with a deadline and returns stderr on
// failure.
func (e *env) runSSH(ctx context.Context, timeout time.Duration, args ...string) error {
	_, err := e.runSSHCPU(ctx, timeout, args...)
	return err
}

// runSSHCPU is runSSH that also returns the client's CPU time (user and
// system).
func (e *env) runSSHCPU(ctx context.Context, timeout time.Duration, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.ssh(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ssh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
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
