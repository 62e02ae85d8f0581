package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/demotarget"
)

func newDemoCmd() *cobra.Command {
	var dir, listen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run the gateway on an embedded default: demo config, keys for two persons, and an in-process target",
		Long: `Create (or reuse) a demo directory with a configuration, keys for two demo
persons (alice and bob) and a demo target that runs inside this process,
start the gateway, and print the ssh commands to try. Everything listens on
127.0.0.1 only. The demo target runs commands as your own user: it is for
trying Tandem, never for production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), dir, listen)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "tandem-demo", "demo directory (created if missing)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:2222", "gateway listen address")
	return cmd
}

func runDemo(ctx context.Context, out, errOut io.Writer, dir, listen string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// A second demo (or anything else on the port) must fail before it
	// rewrites the running demo's configuration with a target port that
	// no longer answers.
	probe, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (%v): is another `tandem demo` running? Stop it with Ctrl-C, or start this one with --listen ADDR --dir DIR", listen, err)
	}
	probe.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	keys, err := ca.LoadOrCreate(filepath.Join(dir, "data", "keys"), nil)
	if err != nil {
		return err
	}
	persons := map[string]ssh.PublicKey{}
	for _, p := range []string{"alice", "bob"} {
		if persons[p], err = demoKey(filepath.Join(dir, p+"_key")); err != nil {
			return err
		}
	}
	targetKey, err := demoSigner(filepath.Join(dir, "target_host_key"))
	if err != nil {
		return err
	}
	// The demo target's own log goes to a file, not over the printed
	// instructions.
	targetLog, err := os.OpenFile(filepath.Join(dir, "target.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("demo target log: %w", err)
	}
	defer targetLog.Close()
	target, err := demotarget.Start(ctx, demotarget.Options{
		Addr: "127.0.0.1:0", UserCA: keys.UserCA.PublicKey(), HostKey: targetKey,
		Dir: filepath.Join(dir, "target-home"), Logger: newLogger(targetLog, false).With("part", "demo-target"),
	})
	if err != nil {
		return fmt.Errorf("demo target: %w", err)
	}
	defer target.Close()

	cfgPath := filepath.Join(dir, "tandem.yaml")
	text := demoConfig(listen, target.Addr(), persons, targetKey.PublicKey(), time.Now().UTC())
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	if err := writeDemoClients(dir, cfg, keys); err != nil {
		return err
	}
	ready := func(addr string) {
		fmt.Fprintf(out, `
Tandem demo is running (configuration: %[1]s/tandem.yaml). Try, in another terminal:

  ssh -F %[1]s/ssh_config.alice gw whoami                 # who am I to the gateway?
  ssh -F %[1]s/ssh_config.alice demo@web1 'id; hostname'  # jump mode, through the gateway
  ssh -F %[1]s/ssh_config.alice -t demo@web1              # an interactive shell on web1
  scp -F %[1]s/ssh_config.alice /etc/hostname demo@web1:copy.txt
  ssh -F %[1]s/ssh_config.alice -p %[2]s 'demo%%web1@127.0.0.1' uptime   # user-name mode
  ssh -F %[1]s/ssh_config.alice demo@db1 true             # production: exec needs an approved request …
  ssh -F %[1]s/ssh_config.alice gw request --hosts db1 --login demo --for 1h --reason "TICKET-1 restart db"
  ssh -F %[1]s/ssh_config.bob gw approve <REQUEST-ID>     # … which bob approves
  ssh -F %[1]s/ssh_config.alice -t demo@db1               # production: waits for a second person …
  ssh -F %[1]s/ssh_config.bob -t gw join <ID>             # … who joins with the id alice was shown
  ssh -F %[1]s/ssh_config.bob demo@web1 true              # bob has no grant on web1: refused
  ssh -F %[1]s/ssh_config.bob gw recordings               # bob may read the tenant's recordings …
  ssh -F %[1]s/ssh_config.bob -t gw replay <SESSION-ID>   # … replay one …
  ssh -F %[1]s/ssh_config.bob gw export <SESSION-ID> > s.cast   # … or export it for asciinema
  ssh -F %[1]s/ssh_config.alice gw lock bob --reason trying the lock   # bob is out at once …
  ssh -F %[1]s/ssh_config.alice gw unlock bob                          # … and back

The audit log:   go run ./cmd/tandem audit show -c %[1]s/tandem.yaml
The demo target's log: %[1]s/target.log
Stop with Ctrl-C.
`, dir, portOf(addr))
	}
	return runGateway(ctx, cfg, newLogger(errOut, false), nil, ready)
}

func portOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

// demoConfig is the embedded default: one tenant, a test host alice may
// use alone, and a production host that needs a second person.
func demoConfig(listen, targetAddr string, persons map[string]ssh.PublicKey, hostKey ssh.PublicKey, now time.Time) string {
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	today := now.Format(time.DateOnly)
	signed := now.AddDate(0, -1, 0).Format(time.DateOnly)
	until := now.AddDate(1, 0, 0).Format(time.DateOnly)
	return fmt.Sprintf(`# Tandem demo configuration, written by "tandem demo". See docs/CONFIG.md.
gateway:
  listen: %q
  data_dir: ./data
  crypto_profile: bsi
audit:
  # Outside data_dir, as serve requires; in production on another mount.
  witness_file: ./witness/checkpoints
tenants:
  - {id: demo-schule, name: Demo-Schule}
persons:
  - id: alice
    name: Alice Adler
    email: alice@example.org
    roles: [admin]
    keys: [{key: %q, added: %s}]
    obligations: {confidentiality_signed: %s, training_valid_until: %s}
  - id: bob
    name: Bob Berger
    email: bob@example.org
    roles: [dba]
    keys: [{key: %q, added: %s}]
    obligations: {confidentiality_signed: %s, training_valid_until: %s}
roles:
  - id: admin
    description: employed administrator, may lock persons
    permissions: [lock]
    allow:
      - hosts: {tenant: demo-schule}
        logins: [demo, root]
        join: [peer, observer]
  - id: dba
    description: database administrator
    allow:
      - hosts: {labels: {service: postgres}}
        logins: [demo]
        join: [peer]
        approve: true
      - hosts: {tenant: demo-schule}
        read: true
hosts:
  - name: web1
    address: %q
    tenant: demo-schule
    environment: test
    labels: {service: moodle}
    host_key: %q
  - name: db1
    address: %q
    tenant: demo-schule
    environment: production
    labels: {service: postgres}
    host_key: %q
`, listen, line(persons["alice"]), today, signed, until, line(persons["bob"]), today, signed, until,
		targetAddr, line(hostKey), productionAlias(targetAddr), line(hostKey))
}

// writeDemoClients writes a known_hosts file and one ssh_config per demo
// person, so the printed commands work without touching ~/.ssh.
func writeDemoClients(dir string, cfg *config.Config, keys *ca.Keys) error {
	caLine, err := keys.PublicLine(ca.Host)
	if err != nil {
		return err
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("@cert-authority "+knownHostsPatterns(cfg)+" "+caLine+"\n"), 0o600); err != nil {
		return err
	}
	host, port := cfg.Gateway.Listen[:strings.LastIndexByte(cfg.Gateway.Listen, ':')], portOf(cfg.Gateway.Listen)
	for _, p := range []string{"alice", "bob"} {
		text := fmt.Sprintf(`Host gw
    HostName %s
    Port %s
    User %s
Host web1 db1
    ProxyJump gw
Host *
    IdentityFile %s
    IdentitiesOnly yes
    UserKnownHostsFile %s
    StrictHostKeyChecking yes
`, host, port, p, filepath.Join(dir, p+"_key"), kh)
		if err := os.WriteFile(filepath.Join(dir, "ssh_config."+p), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// demoKey returns the public half of a demo person's key, creating the
// key pair (OpenSSH format, 0600) on first use.
func demoKey(path string) (ssh.PublicKey, error) {
	s, err := demoSigner(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

func demoSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return ssh.ParsePrivateKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "tandem demo "+filepath.Base(path))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// productionAlias names the demo target differently for the production
// host: a configuration refuses one address for hosts of two
// environments, and the demo has only one target.
func productionAlias(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || (host != "127.0.0.1" && host != "::1") {
		return addr
	}
	return net.JoinHostPort("localhost", port)
}
