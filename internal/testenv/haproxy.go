package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// HAProxy is a private haproxy on 127.0.0.1 in TCP mode in front of
// gateways, as docs/HA.md sets it up: every connection to a gateway starts
// with a PROXY protocol v2 header (send-proxy-v2), and the health checks
// send a LOCAL header and expect the gateway's SSH version line.
type HAProxy struct {
	Addr   string // 127.0.0.1:Port, where clients connect
	Port   int
	Conf   string // the configuration file written
	Stderr *SyncBuffer

	proc *process
}

// HAProxyOpts describes the load balancer.
type HAProxyOpts struct {
	// Balance is HAProxy's balance algorithm: "first" (every connection
	// to the first server that is up, a primary and a standby) or
	// "roundrobin". Default "first".
	Balance string
	// Servers are the gateways' addresses (host:port), in order.
	Servers []string
	// Port is where it listens on 127.0.0.1; 0 takes a free port.
	Port int
}

// StartHAProxy writes a configuration into dir and starts haproxy in the
// foreground with it; it skips the test without haproxy (Debian package
// haproxy), or fails it under CI=true. The cleanup stops it by PID.
func StartHAProxy(t testing.TB, dir string, o HAProxyOpts) *HAProxy {
	t.Helper()
	bin := RequireProgram(t, "haproxy")
	if o.Port == 0 {
		o.Port = FreePort(t)
	}
	h := &HAProxy{Port: o.Port, Conf: filepath.Join(dir, "haproxy.cfg"), Stderr: &SyncBuffer{}}
	h.Addr = "127.0.0.1:" + strconv.Itoa(h.Port)
	if err := os.WriteFile(h.Conf, []byte(HAProxyConfig(h.Addr, o)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", h.Conf).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", h.Conf, err, out)
	}
	h.proc = startListener(t, "haproxy", exec.Command(bin, "-db", "-f", h.Conf), h.Addr, h.Stderr)
	return h
}

// HAProxyConfig is the configuration StartHAProxy writes for a front end
// on bind: the example of docs/HA.md (deploy/haproxy/haproxy.cfg) with
// loopback addresses and short check intervals.
func HAProxyConfig(bind string, o HAProxyOpts) string {
	if o.Balance == "" {
		o.Balance = "first"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    log stderr format raw local0 info
    maxconn 1000

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    # A connection to a node that is down goes to the next one at once.
    retries 2
    option redispatch

listen tandem-ssh
    bind %s
    balance %s
    # The check connects with the server's options (a PROXY v2 LOCAL
    # header) and waits for the gateway's SSH version line.
    option tcp-check
    tcp-check expect rstring ^SSH-2\.0-
    default-server send-proxy-v2 check inter 500ms fall 2 rise 2
`, bind, o.Balance)
	for i, s := range o.Servers {
		fmt.Fprintf(&b, "    server gw%d %s\n", i+1, s)
	}
	return b.String()
}

// Tail returns the end of haproxy's log, for failure messages.
func (h *HAProxy) Tail() string { return h.Stderr.Tail(3000) }
