package demotarget

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// testNow is the target's injected clock: far from the real time, so a test
// passes only if the target uses the clock it was given.
var testNow = time.Date(2031, 5, 4, 12, 0, 0, 0, time.UTC)

// syncBuffer collects the target's log; slog writes from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	srv     *Server
	ca      ssh.Signer
	hostKey ssh.Signer
	dir     string
	log     *syncBuffer
}

func newSigner(t *testing.T, curve elliptic.Curve) (ssh.Signer, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

func startTarget(t *testing.T) *fixture {
	t.Helper()
	ca, _ := newSigner(t, elliptic.P384())
	host, _ := newSigner(t, elliptic.P256())
	f := &fixture{ca: ca, hostKey: host, dir: filepath.Join(t.TempDir(), "sandbox"), log: &syncBuffer{}}
	srv, err := Start(context.Background(), Options{
		Addr:    "127.0.0.1:0",
		UserCA:  ca.PublicKey(),
		HostKey: host,
		Dir:     f.dir,
		Logger:  slog.New(slog.NewTextHandler(f.log, nil)),
		Now:     func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

type certSpec struct {
	principals []string
	after      time.Time
	before     time.Time
	keyID      string
	serial     uint64
	noPTY      bool
	force      string
}

// userCert returns a user key and a certificate for it signed by ca.
func userCert(t *testing.T, ca ssh.Signer, spec certSpec) (ssh.Signer, *ecdsa.PrivateKey, *ssh.Certificate) {
	t.Helper()
	key, priv := newSigner(t, elliptic.P256())
	if spec.after.IsZero() {
		spec.after = testNow.Add(-time.Hour)
	}
	if spec.before.IsZero() {
		spec.before = testNow.Add(time.Hour)
	}
	if spec.principals == nil {
		spec.principals = []string{"alice"}
	}
	ext := map[string]string{"permit-pty": ""}
	if spec.noPTY {
		ext = map[string]string{}
	}
	crit := map[string]string{}
	if spec.force != "" {
		crit["force-command"] = spec.force
	}
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          spec.serial,
		CertType:        ssh.UserCert,
		KeyId:           spec.keyID,
		ValidPrincipals: spec.principals,
		ValidAfter:      uint64(spec.after.Unix()),
		ValidBefore:     uint64(spec.before.Unix()),
		Permissions:     ssh.Permissions{Extensions: ext, CriticalOptions: crit},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return key, priv, cert
}

func (f *fixture) dial(t *testing.T, user string, auth ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", f.srv.Addr(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(auth)},
		HostKeyCallback: ssh.FixedHostKey(f.hostKey.PublicKey()),
	})
}

// login dials as alice with a valid certificate.
func (f *fixture) login(t *testing.T, spec certSpec) *ssh.Client {
	t.Helper()
	key, _, cert := userCert(t, f.ca, spec)
	cs, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.dial(t, "alice", cs)
	if err != nil {
		t.Fatalf("login with a valid certificate: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestExecOutputAndExitStatus(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{keyID: "sess-42 alice+bob", serial: 7})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	err = sess.Run("echo hi; exit 3")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("Run error = %v, want exit status 3", err)
	}
	if out.String() != "hi\n" {
		t.Errorf("stdout = %q, want %q", out.String(), "hi\n")
	}
	want := `Accepted certificate ID \"sess-42 alice+bob\" (serial 7) for alice`
	if !strings.Contains(f.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, f.log.String())
	}
}

func TestExecDetails(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	tests := []struct {
		name       string
		env        map[string]string
		cmd        string
		stdin      string
		wantOut    string
		wantErrOut string
	}{
		{name: "working directory", cmd: "pwd", wantOut: f.dir + "\n"},
		{name: "env request", env: map[string]string{"FOO": "bar baz"}, cmd: `echo "$FOO"`, wantOut: "bar baz\n"},
		{name: "stderr", cmd: "echo oops >&2", wantErrOut: "oops\n"},
		{name: "stderr after stdout closed", cmd: "echo out; exec >&-; echo late >&2", wantOut: "out\n", wantErrOut: "late\n"},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "quiet\n", wantOut: "QUIET\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			for k, v := range tt.env {
				if err := sess.Setenv(k, v); err != nil {
					t.Fatalf("Setenv: %v", err)
				}
			}
			var out, errOut bytes.Buffer
			sess.Stdout, sess.Stderr = &out, &errOut
			sess.Stdin = strings.NewReader(tt.stdin)
			if err := sess.Run(tt.cmd); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.String() != tt.wantOut || errOut.String() != tt.wantErrOut {
				t.Errorf("stdout %q stderr %q, want %q %q", out.String(), errOut.String(), tt.wantOut, tt.wantErrOut)
			}
		})
	}
}

func TestRefusedLogins(t *testing.T) {
	f := startTarget(t)
	other, _ := newSigner(t, elliptic.P384())

	plain, _ := newSigner(t, elliptic.P256())
	certSigner := func(ca ssh.Signer, spec certSpec) ssh.Signer {
		key, _, cert := userCert(t, ca, spec)
		cs, err := ssh.NewCertSigner(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	tests := []struct {
		name string
		auth ssh.Signer
	}{
		{"plain key", plain},
		{"other CA", certSigner(other, certSpec{})},
		{"expired", certSigner(f.ca, certSpec{after: testNow.Add(-2 * time.Hour), before: testNow.Add(-time.Minute)})},
		{"not yet valid", certSigner(f.ca, certSpec{after: testNow.Add(time.Minute), before: testNow.Add(time.Hour)})},
		{"wrong principal", certSigner(f.ca, certSpec{principals: []string{"bob", "root"}})},
		// Valid by the real clock, invalid by the injected one.
		{"valid only in real time", certSigner(f.ca, certSpec{after: time.Now().Add(-time.Hour), before: time.Now().Add(time.Hour)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.dial(t, "alice", tt.auth)
			if err == nil {
				c.Close()
				t.Fatal("login succeeded, want refusal")
			}
		})
	}
	t.Run("password and keyboard-interactive", func(t *testing.T) {
		c, err := ssh.Dial("tcp", f.srv.Addr(), &ssh.ClientConfig{
			User: "alice",
			Auth: []ssh.AuthMethod{
				ssh.Password("secret-password-1"),
				ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil }),
			},
			HostKeyCallback: ssh.FixedHostKey(f.hostKey.PublicKey()),
		})
		if err == nil {
			c.Close()
			t.Fatal("login succeeded, want refusal")
		}
	})
	if strings.Contains(f.log.String(), "Accepted") {
		t.Errorf("log shows an accepted login:\n%s", f.log.String())
	}
	if strings.Contains(f.log.String(), "secret-password-1") {
		t.Errorf("log contains the password")
	}
}

func TestForwardingRefused(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	if conn, err := c.Dial("tcp", "127.0.0.1:1"); err == nil {
		conn.Close()
		t.Error("direct-tcpip channel accepted")
	}
	if ln, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Error("tcpip-forward accepted")
	}
}

func TestSFTPPutGet(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	content := []byte("hello through sftp\n")
	w, err := sc.Create("note.txt") // relative: lands in Dir
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(f.dir, "note.txt"))
	if err != nil || !bytes.Equal(onDisk, content) {
		t.Fatalf("file in Dir = %q, %v; want %q", onDisk, err, content)
	}
	r, err := sc.Open("note.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("get = %q, %v; want %q", got, err, content)
	}
}

func TestPTYShell(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm-256color", 40, 100, ssh.TerminalModes{}); err != nil {
		t.Fatalf("RequestPty: %v", err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := sess.WindowChange(50, 120); err != nil {
		t.Fatal(err)
	}
	// The echoed input line reads "echo pty-ok; ..."; only the command's
	// own output has "pty-ok" at the end of a line. stty size shows the
	// window change arrived (it is handled before the shell reads input).
	if _, err := io.WriteString(stdin, "echo pty-ok; echo \"term=$TERM\"; stty size; exit\n"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("Wait: %v (output %q)", err, out.String())
	}
	for _, want := range []string{"pty-ok\r\n", "term=xterm-256color\r\n", "50 120\r\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q: %q", want, out.String())
		}
	}
}

func TestPTYNeedsPermitPTY(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{noPTY: true})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
		t.Error("pty granted without permit-pty")
	}
}

func TestForceCommand(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{force: `echo "forced:$SSH_ORIGINAL_COMMAND"`})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("id")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "forced:id\n" {
		t.Errorf("output = %q, want %q", out, "forced:id\n")
	}
}

func TestSignalGivesExitSignal(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// Start returns after the exec request was answered, and the target
	// answers only once the program runs, so the signal cannot come early.
	if err := sess.Start("sleep 600"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("Wait = %v, want exit-signal TERM", err)
	}
}

// runRaw execs cmd on a raw channel and returns all stdout bytes, the
// requests that had arrived when stdout reached EOF, and the rest.
func runRaw(t *testing.T, c *ssh.Client, cmd string) (out int64, atEOF, after []*ssh.Request) {
	t.Helper()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := ch.SendRequest("exec", true, ssh.Marshal(stringPayload{Value: cmd}))
	if err != nil || !ok {
		t.Fatalf("exec: %v %v", ok, err)
	}
	_ = ch.CloseWrite()
	n, err := io.Copy(io.Discard, ch)
	if err != nil {
		t.Fatal(err)
	}
	// x/crypto delivers channel messages in order: requests go to a
	// buffered channel before a later EOF is processed. Whatever the
	// target sent before its EOF is therefore already queued here.
	open := true
	for drained := false; !drained; {
		select {
		case r, ok := <-reqs:
			if !ok {
				open, drained = false, true
				break
			}
			atEOF = append(atEOF, r)
		default:
			drained = true
		}
	}
	_ = ch.Close()
	if open {
		for r := range reqs { // closed when the channel is fully closed
			after = append(after, r)
		}
	}
	return n, atEOF, after
}

func TestBulkOutputThenStatusThenEOF(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	n, atEOF, after := runRaw(t, c, "head -c 1000000 /dev/zero")
	if n != 1000000 {
		t.Errorf("got %d bytes, want 1000000", n)
	}
	if len(atEOF) != 1 || atEOF[0].Type != "exit-status" {
		t.Fatalf("requests before EOF = %v, want exactly exit-status", reqTypes(atEOF))
	}
	var st exitStatusMsg
	if err := ssh.Unmarshal(atEOF[0].Payload, &st); err != nil || st.Status != 0 {
		t.Errorf("exit-status = %+v, %v", st, err)
	}
	if len(after) != 0 {
		t.Errorf("requests after EOF: %v", reqTypes(after))
	}
}

func reqTypes(rs []*ssh.Request) []string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Type)
	}
	return s
}

func TestCloseEndsRunningSessions(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("sleep 600 & sleep 600"); err != nil {
		t.Fatal(err)
	}
	// Close must kill the programs and return; the test would hang otherwise.
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	_ = sess.Wait()
	if _, err := net.Dial("tcp", f.srv.Addr()); err == nil {
		t.Error("still listening after Close")
	}
}

// A job in the background of an interactive PTY shell keeps the terminal
// open in its own process group; Close must still end everything.
func TestCloseEndsPTYSessionWithBackgroundJob(t *testing.T) {
	f := startTarget(t)
	c := f.login(t, certSpec{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	sess.Stdout = out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "sleep 600 & echo \"bg-pid=$!=\"\n"); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) until the shell has run the line.
	re := regexp.MustCompile(`bg-pid=(\d+)=`)
	var m []string
	for deadline := time.Now().Add(30 * time.Second); m == nil; m = re.FindStringSubmatch(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("shell did not run the line; output %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	_ = sess.Wait()
	// The background job was killed too: gone, or a zombie awaiting its
	// reaper. (Kill has been sent by the time Close returns.)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + m[1] + "/stat")
		if err != nil || procState(stat) == "Z" {
			break
		}
		if time.Now().After(deadline) {
			_ = exec.Command("kill", "-9", m[1]).Run()
			t.Fatalf("background job %s still running after Close: %s", m[1], stat)
		}
	}
}

// procState returns the state field of a /proc/PID/stat line.
func procState(stat []byte) string {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestStartValidates(t *testing.T) {
	ca, _ := newSigner(t, elliptic.P384())
	host, _ := newSigner(t, elliptic.P256())
	dir := t.TempDir()
	tests := []struct {
		name string
		o    Options
	}{
		{"no CA", Options{HostKey: host, Dir: dir}},
		{"no host key", Options{UserCA: ca.PublicKey(), Dir: dir}},
		{"no dir", Options{UserCA: ca.PublicKey(), HostKey: host}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Start(context.Background(), tt.o); err == nil {
				s.Close()
				t.Error("Start succeeded")
			}
		})
	}
}

func TestDirCreatedPrivate(t *testing.T) {
	f := startTarget(t)
	fi, err := os.Stat(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("Dir mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestContextCancelStops(t *testing.T) {
	ca, _ := newSigner(t, elliptic.P384())
	host, _ := newSigner(t, elliptic.P256())
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Options{Addr: "127.0.0.1:0", UserCA: ca.PublicKey(), HostKey: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRealOpenSSHClient logs in with the real ssh program, as a person
// trying the demo would (through the gateway, in real use).
func TestRealOpenSSHClient(t *testing.T) {
	const sshPath = "/usr/bin/ssh"
	if _, err := os.Stat(sshPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: apt-get install -y openssh-client", sshPath)
		}
		t.Skipf("%s missing (apt-get install -y openssh-client)", sshPath)
	}
	f := startTarget(t)
	_, priv, cert := userCert(t, f.ca, certSpec{keyID: "real-client", serial: 99})
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ecdsa")
	certFile := keyFile + "-cert.pub"
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshPath, "-F", "/dev/null",
		"-i", keyFile, "-o", "CertificateFile="+certFile, "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-p", port, "alice@127.0.0.1", "echo real-ok")
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh: %v\nstderr: %s\nlog: %s", err, stderr.String(), f.log.String())
	}
	if string(out) != "real-ok\n" {
		t.Errorf("stdout = %q, want %q", out, "real-ok\n")
	}
	if !strings.Contains(f.log.String(), `Accepted certificate ID \"real-client\" (serial 99) for alice`) {
		t.Errorf("log lacks the accepted line:\n%s", f.log.String())
	}
}
