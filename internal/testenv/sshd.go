package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TargetOpts configures a private sshd started by StartSSHD.
type TargetOpts struct {
	// Address is the loopback address to listen on; default 127.0.0.1.
	Address string
	// Port to listen on; 0 picks a free one.
	Port int
	// HostKeyFile is an existing private host key to use; empty generates
	// an ECDSA P-256 key. Passing one lets a test put the host key into
	// Tandem's configuration before the sshd is started.
	HostKeyFile string
	// UserCA is the authorized_keys line of Tandem's user CA; sshd trusts
	// certificates it signs (TrustedUserCAKeys). Empty: no CA trusted.
	UserCA string
	// AuthorizedKeys are plain public keys that may log in as any user
	// (root included), for comparing a direct login with one through the
	// gateway. Empty: AuthorizedKeysFile none.
	AuthorizedKeys []string
	// Env are NAME=VALUE pairs set in every session on the target, besides
	// HOME. sshd reads only its first SetEnv line, so they join the one
	// testenv writes; a SetEnv line in Extra would be ignored.
	Env []string
	// Include is a file or glob that sshd_config includes on its first
	// line, as Debian's includes sshd_config.d/*.conf: what it sets comes
	// first and so wins over every line testenv writes.
	Include string
	// Extra lines are appended to sshd_config. sshd takes the first value
	// of most keywords, so Extra cannot override the lines testenv writes.
	Extra []string
}

// Target is a running private sshd.
type Target struct {
	Addr string // host:port
	Port int
	// HostKey is the authorized_keys line of the sshd's host public key.
	HostKey string
	// LogPath is the file sshd logs to (LogLevel VERBOSE).
	LogPath string
	// Dir holds its configuration, keys and log.
	Dir string

	sshd, configFile string
	proc             *process
}

// StartSSHD starts /usr/sbin/sshd on loopback with a configuration in a
// fresh temporary directory, waits until it accepts TCP connections and
// registers a cleanup that stops it by PID.
func StartSSHD(t testing.TB, opts TargetOpts) *Target {
	t.Helper()
	RequireProgram(t, "sshd")
	RequireProgram(t, "ssh-keygen")
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	tg, err := PrepareSSHD(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var stderr SyncBuffer
	cmd := tg.Command()
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	tg.proc = p
	t.Cleanup(func() {
		if err := p.stop(5 * time.Second); err != nil {
			t.Errorf("stop sshd: %v", err)
		}
	})
	if err := waitListening(tg.Addr, p, 10*time.Second); err != nil {
		t.Fatalf("sshd on %s: %v\nstderr: %s\nlog: %s", tg.Addr, err, stderr.String(), tg.Log())
	}
	return tg
}

// PrepareSSHD writes a private sshd's configuration into dir and checks
// it with sshd -t, for a program that starts and stops the sshd itself
// (tg.Command). Tests use StartSSHD.
func PrepareSSHD(dir string, opts TargetOpts) (*Target, error) {
	sshd, err := FindProgram("sshd")
	if err != nil {
		return nil, err
	}
	if err := ensurePrivsepDir(); err != nil {
		return nil, err
	}
	// sshd's re-executed children run in "/", so every path it is given
	// must be absolute or their log lines go elsewhere.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("sshd directory: %w", err)
	}
	addr := opts.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		if port, err = PickPort(); err != nil {
			return nil, err
		}
	}
	hostKey, hostPub := opts.HostKeyFile, ""
	if hostKey == "" {
		hostKey, hostPub, err = NewKeyPair(dir, "ssh_host_ecdsa_key", "ecdsa")
	} else if hostKey, err = filepath.Abs(hostKey); err == nil {
		hostPub, err = publicKeyOf(hostKey)
	}
	if err != nil {
		return nil, fmt.Errorf("sshd host key: %w", err)
	}
	// Login shells on the target get an empty home: root's rc files on a
	// developer machine (pyenv hooks that take a lock, say) must not make a
	// test hang or depend on who ran it.
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("target home: %w", err)
	}
	var cfg []string
	if opts.Include != "" {
		cfg = append(cfg, "Include "+opts.Include)
	}
	cfg = append(cfg,
		"ListenAddress "+addr,
		"Port "+strconv.Itoa(port),
		"HostKey "+hostKey,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no",
		"LogLevel VERBOSE",
		"PidFile none",
		"AcceptEnv LANG LC_*",
		"Subsystem sftp internal-sftp",
		"SetEnv "+strings.Join(append([]string{"HOME=" + home}, opts.Env...), " "),
	)
	files := map[string]string{}
	if opts.UserCA != "" {
		files["user_ca.pub"] = opts.UserCA + "\n"
		cfg = append(cfg, "TrustedUserCAKeys "+filepath.Join(dir, "user_ca.pub"))
	}
	if len(opts.AuthorizedKeys) > 0 {
		files["authorized_keys"] = strings.Join(opts.AuthorizedKeys, "\n") + "\n"
		cfg = append(cfg, "AuthorizedKeysFile "+filepath.Join(dir, "authorized_keys"))
	} else {
		cfg = append(cfg, "AuthorizedKeysFile none")
	}
	cfg = append(cfg, opts.Extra...)
	cfgFile := filepath.Join(dir, "sshd_config")
	files["sshd_config"] = strings.Join(cfg, "\n") + "\n"
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	if out, err := exec.Command(sshd, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sshd -t -f %s: %v\n%s\nconfig:\n%s", cfgFile, err, out, files["sshd_config"])
	}
	return &Target{
		Addr:    net.JoinHostPort(addr, strconv.Itoa(port)),
		Port:    port,
		HostKey: hostPub,
		LogPath: filepath.Join(dir, "sshd.log"),
		Dir:     dir,
		sshd:    sshd, configFile: cfgFile,
	}, nil
}

// Command is the sshd of a Target prepared by PrepareSSHD, in the
// foreground and logging to LogPath; the caller starts and stops it.
func (tg *Target) Command() *exec.Cmd {
	return exec.Command(tg.sshd, "-f", tg.configFile, "-D", "-E", tg.LogPath)
}

// PID is the process id of an sshd started by StartSSHD (0 otherwise),
// for a test that signals it (SIGHUP: re-read the configuration).
func (tg *Target) PID() int {
	if tg.proc == nil {
		return 0
	}
	return tg.proc.cmd.Process.Pid
}

// Log returns the sshd log so far ("" if it cannot be read yet).
func (tg *Target) Log() string {
	b, err := os.ReadFile(tg.LogPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog polls the log until it contains substr or timeout passes.
func (tg *Target) WaitLog(t testing.TB, substr string, timeout time.Duration) bool {
	t.Helper()
	return WaitFor(timeout, func() bool { return strings.Contains(tg.Log(), substr) })
}

// acceptedCertLogin matches sshd's VERBOSE line for a completed
// certificate login, e.g.
//
//	Accepted publickey for root from 127.0.0.1 port 4711 ssh2: ECDSA-CERT SHA256:… ID tandem person=alice session=7f3a (serial 7) CA ECDSA SHA256:…
//
// sshd also logs `Accepted certificate ID "<id>" (serial N) signed by …`,
// but twice per login (once for the client's key query, once for the
// signed request) and even when the login then fails, so it cannot be
// counted; the "Accepted publickey" line appears exactly once per login.
var acceptedCertLogin = regexp.MustCompile(`(?m)^Accepted publickey for (\S+) from .* ID (.*) \(serial \d+\) CA \S+ \S+\r?$`)

// CertLogin is one completed certificate login seen in the sshd log.
type CertLogin struct {
	User string // the target login
	ID   string // the certificate's key id
}

// AcceptedCertLogins returns every completed certificate login so far, in
// log order.
func (tg *Target) AcceptedCertLogins() []CertLogin {
	return parseCertLogins(tg.Log())
}

// parseCertLogins finds the completed certificate logins in an sshd log.
func parseCertLogins(log string) []CertLogin {
	var logins []CertLogin
	for _, m := range acceptedCertLogin.FindAllStringSubmatch(log, -1) {
		logins = append(logins, CertLogin{User: m[1], ID: m[2]})
	}
	return logins
}

// AcceptedCertIDs returns the key ids of the certificates of all completed
// logins so far, in log order (one entry per login).
func (tg *Target) AcceptedCertIDs() []string {
	var ids []string
	for _, l := range tg.AcceptedCertLogins() {
		ids = append(ids, l.ID)
	}
	return ids
}

// AcceptedLogins counts all accepted logins (certificate or plain key).
func (tg *Target) AcceptedLogins() int {
	return strings.Count(tg.Log(), "Accepted publickey for ")
}

// KnownHostsLine returns a known_hosts line for a direct connection to
// this sshd by its address.
func (tg *Target) KnownHostsLine() string {
	host, _, _ := net.SplitHostPort(tg.Addr)
	return fmt.Sprintf("[%s]:%d %s", host, tg.Port, tg.HostKey)
}

// ensurePrivsepDir creates /run/sshd, which sshd needs even for -t, when
// running as root and it is missing (containers often lack it).
func ensurePrivsepDir() error {
	if _, err := os.Stat("/run/sshd"); err == nil || os.Geteuid() != 0 {
		return nil
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create /run/sshd: %w", err)
	}
	return nil
}

// publicKeyOf returns the authorized_keys line for a private key file,
// from its .pub file or via ssh-keygen -y.
func publicKeyOf(privPath string) (string, error) {
	if b, err := os.ReadFile(privPath + ".pub"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	keygen, err := FindProgram("ssh-keygen")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(keygen, "-y", "-f", privPath).Output()
	if err != nil {
		return "", fmt.Errorf("ssh-keygen -y -f %s: %w", privPath, err)
	}
	return strings.TrimSpace(string(out)), nil
}
