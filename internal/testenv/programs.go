package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// debianPackage names the Debian package that installs each program the
// tests use, for the install hint.
var debianPackage = map[string]string{
	"sshd":             "openssh-server",
	"ssh":              "openssh-client",
	"scp":              "openssh-client",
	"sftp":             "openssh-client",
	"ssh-keygen":       "openssh-client",
	"rsync":            "rsync",
	"tmux":             "tmux",
	"ansible-playbook": "ansible",
	"ansible":          "ansible",
	"asciinema":        "asciinema",
	"promtool":         "prometheus",
	"go":               "golang",
	"rsyslogd":         "rsyslog rsyslog-gnutls",
	"openssl":          "openssl",
	"haproxy":          "haproxy",
	"postgres":         "postgresql",
}

// InCI reports whether the tests run under CI (CI=true), where a missing
// program is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireProgram returns the path of the named program, looked up as
// FindProgram does. A missing program skips the test with an install hint,
// or fails it under CI=true.
func RequireProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := FindProgram(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%v", err)
	}
	t.Skip(err.Error())
	return ""
}

// FindProgram returns the path of the named program, looked up in PATH and
// in /usr/sbin (where Debian puts sshd, often outside a user's PATH). The
// error of a missing program says which package installs it.
func FindProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	pkg := debianPackage[name]
	if pkg == "" {
		pkg = name
	}
	return "", fmt.Errorf("program %q not found; install it with: apt-get install -y --no-install-recommends %s (or run scripts/test-deps.sh)", name, pkg)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is closed before return, so another process could take it; the
// alternative (passing listeners to child processes) is not possible for
// sshd. To keep that race rare, ports come from below the kernel's
// ephemeral range: a port the kernel hands out for an outgoing connection
// (of which the tests make thousands) could otherwise be the very port a
// gateway is about to bind. Within one test binary no port is handed out
// twice.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// PickPort is FreePort for programs that are not tests.
func PickPort() (int, error) {
	lo := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(lo-10000)
		portsMu.Lock()
		taken := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if taken {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("close probe listener: %w", err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("find free port: no free port below %d after 200 tries", lo)
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

// KeyPair creates an unencrypted key pair with ssh-keygen in dir under the
// given file name and returns the private key path and the public key as
// one authorized_keys line (with the comment ssh-keygen gave it).
// kind is one of ecdsa (P-256), ecdsa-384, ed25519, rsa-2048, rsa-3072.
func KeyPair(t testing.TB, dir, name, kind string) (privPath, pubLine string) {
	t.Helper()
	RequireProgram(t, "ssh-keygen")
	privPath, pubLine, err := NewKeyPair(dir, name, kind)
	if err != nil {
		t.Fatal(err)
	}
	return privPath, pubLine
}

// NewKeyPair is KeyPair for programs that are not tests.
func NewKeyPair(dir, name, kind string) (privPath, pubLine string, err error) {
	keygen, err := FindProgram("ssh-keygen")
	if err != nil {
		return "", "", err
	}
	var typeArgs []string
	switch kind {
	case "ecdsa":
		typeArgs = []string{"-t", "ecdsa", "-b", "256"}
	case "ecdsa-384":
		typeArgs = []string{"-t", "ecdsa", "-b", "384"}
	case "ed25519":
		typeArgs = []string{"-t", "ed25519"}
	case "rsa-2048":
		typeArgs = []string{"-t", "rsa", "-b", "2048"}
	case "rsa-3072":
		typeArgs = []string{"-t", "rsa", "-b", "3072"}
	default:
		return "", "", fmt.Errorf("KeyPair: unknown key kind %q", kind)
	}
	privPath = filepath.Join(dir, name)
	args := append([]string{"-q"}, typeArgs...)
	args = append(args, "-N", "", "-C", name+"@tandem-test", "-f", privPath)
	if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	pub, err := os.ReadFile(privPath + ".pub")
	if err != nil {
		return "", "", fmt.Errorf("read public key: %w", err)
	}
	return privPath, strings.TrimSpace(string(pub)), nil
}
