package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Rsyslog is a private rsyslogd on 127.0.0.1: an RFC 5425 collector
// (imtcp with the gtls driver, mutual TLS: the client's certificate must
// come from the PKI's CA and name PermittedPeer) that writes every
// message, as received, to one line of Out.
type Rsyslog struct {
	Addr   string
	Port   int
	Out    string // the received messages, one per line
	Stderr *SyncBuffer

	bin, conf, pid string
	proc           *process
}

// StartRsyslog writes a configuration into dir and starts rsyslogd in the
// foreground with it; it skips the test without rsyslogd (Debian packages
// rsyslog and rsyslog-gnutls), or fails it under CI=true. The cleanup
// stops it.
func StartRsyslog(t testing.TB, dir string, pki *PKI, permittedPeer string) *Rsyslog {
	t.Helper()
	bin := RequireProgram(t, "rsyslogd")
	if found, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(found) == 0 {
		if InCI() {
			t.Fatal("rsyslog's TLS driver lmnsd_gtls is missing; install rsyslog-gnutls")
		}
		t.Skip("rsyslog's TLS driver lmnsd_gtls is missing; install it with: apt-get install -y rsyslog-gnutls")
	}
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &Rsyslog{Port: FreePort(t), Out: filepath.Join(dir, "received.log"), Stderr: &SyncBuffer{},
		bin: bin, conf: filepath.Join(dir, "rsyslog.conf"), pid: filepath.Join(dir, "rsyslogd.pid")}
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.Port)
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="2m"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile=%q
  DefaultNetstreamDriverCertFile=%q
  DefaultNetstreamDriverKeyFile=%q)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
  StreamDriver.AuthMode="x509/name" PermittedPeer=[%q])
input(type="imtcp" port="%d" address="127.0.0.1")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file=%q template="raw")
`, work, pki.CA, pki.ServerCert, pki.ServerKey, permittedPeer, r.Port, r.Out)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Start starts rsyslogd (again) and waits until it listens.
func (r *Rsyslog) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(r.bin, "-n", "-f", r.conf, "-i", r.pid)
	cmd.Stdout, cmd.Stderr = r.Stderr, r.Stderr
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("start rsyslogd: %v", err)
	}
	r.proc = p
	if err := waitListening(r.Addr, p, 15*time.Second); err != nil {
		t.Fatalf("rsyslogd: %v\n%s", err, r.Stderr.Tail(3000))
	}
}

// Stop stops rsyslogd (SIGTERM, SIGKILL after 5s); stopping twice is
// harmless.
func (r *Rsyslog) Stop(t testing.TB) {
	t.Helper()
	if r.proc == nil {
		return
	}
	if err := r.proc.stop(5 * time.Second); err != nil {
		t.Errorf("stop rsyslogd: %v", err)
	}
	r.proc = nil
}
