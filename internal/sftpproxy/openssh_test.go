package sftpproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The end-to-end tests run the real OpenSSH clients against Serve, which
// forwards to the real OpenSSH sftp-server. `sftp -D cmd` (and `scp -S cmd`)
// talk SFTP over the stdio of cmd; cmd is this test binary re-executed in
// helper mode (see TestMain), which serves stdio through the proxy.
const (
	sftpClient = "/usr/bin/sftp"
	scpClient  = "/usr/bin/scp"
	sftpServer = "/usr/lib/openssh/sftp-server"

	envTargetDir = "TANDEM_SFTPPROXY_HELPER_DIR"
	envLog       = "TANDEM_SFTPPROXY_HELPER_LOG"
	envReadOnly  = "TANDEM_SFTPPROXY_HELPER_READONLY"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envTargetDir); dir != "" {
		os.Exit(helperMain(dir))
	}
	os.Exit(m.Run())
}

// stdio is the helper's client channel.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error {
	os.Stdin.Close()
	return os.Stdout.Close()
}

// procTarget is an sftp-server process as Serve's target: reads from its
// stdout, writes to its stdin.
type procTarget struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out io.ReadCloser
}

func (p *procTarget) Read(b []byte) (int, error)  { return p.out.Read(b) }
func (p *procTarget) Write(b []byte) (int, error) { return p.in.Write(b) }

// Close ends sftp-server's input and stops reading its output, which
// makes a blocked Read return.
func (p *procTarget) Close() error {
	p.in.Close()
	return p.out.Close()
}

// startTarget starts sftp-server in dir.
func startTarget(dir string, stderr io.Writer) (*procTarget, error) {
	cmd := exec.Command(sftpServer)
	cmd.Dir = dir
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &procTarget{cmd: cmd, in: in, out: out}, nil
}

// helperMain serves SFTP on stdio through the relay to an sftp-server
// running in dir, recording JSON lines to $envLog. Diagnostics go to stderr.
func helperMain(dir string) int {
	target, err := startTarget(dir, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer target.cmd.Wait()
	logf, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logf.Close()
	var mu sync.Mutex
	enc := json.NewEncoder(logf)
	rec := func(op map[string]string) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(op)
	}
	t, err := Handshake(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = Serve(context.Background(), stdio{}, t, rec, Options{ReadOnly: os.Getenv(envReadOnly) != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

type e2e struct {
	exe, local, remote, log string
	readOnly                bool
}

func newE2E(t testing.TB) *e2e {
	t.Helper()
	for _, p := range []string{sftpClient, sftpServer} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t'\"") {
		t.Skip("test binary path has characters sftp -D would split")
	}
	base := t.TempDir()
	e := &e2e{exe: exe, local: filepath.Join(base, "local"), remote: filepath.Join(base, "remote"), log: filepath.Join(base, "ops.jsonl")}
	for _, d := range []string{e.local, e.remote} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *e2e) env() []string {
	env := append(os.Environ(), envTargetDir+"="+e.remote, envLog+"="+e.log)
	if e.readOnly {
		env = append(env, envReadOnly+"=1")
	}
	return env
}

// sftpBatch runs the OpenSSH sftp client with batch commands through the
// proxy (or, if direct, straight to sftp-server) and returns its output.
func (e *e2e) sftpBatch(t testing.TB, batch string, direct bool, flags ...string) (string, error) {
	t.Helper()
	bf := filepath.Join(filepath.Dir(e.local), "batch")
	if err := os.WriteFile(bf, []byte(batch), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, flags...), "-b", bf, "-D", e.exe)
	if direct {
		// Both sftp-server and the relay offer limits@openssh.com, so
		// the client uses 255 KiB requests either way.
		args[len(args)-1] = sftpServer + " -d " + e.remote
	}
	cmd := exec.Command(sftpClient, args...)
	cmd.Env = e.env()
	cmd.Dir = e.local
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkRoundTrip fails t if the sftp run failed or the local file back
// does not hold data.
func (e *e2e) checkRoundTrip(t *testing.T, out string, err error, back string, data []byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(e.local, back))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip differs (%v)", err)
	}
}

func (e *e2e) ops(t *testing.T) []map[string]string {
	t.Helper()
	f, err := os.Open(e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var op map[string]string
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	return ops
}

// closeOf returns the close record of the last open of path with flags.
func closeOf(t *testing.T, ops []map[string]string, path, flags string) map[string]string {
	t.Helper()
	handle := ""
	for _, op := range ops {
		if op["op"] == "open" && op["path"] == path && op["flags"] == flags && op["result"] == "ok" {
			handle = op["handle"]
		}
	}
	for _, op := range ops {
		if op["op"] == "close" && op["handle"] == handle && handle != "" {
			return op
		}
	}
	t.Fatalf("no close for open of %s with %s in %v", path, flags, ops)
	return nil
}

func hasOp(ops []map[string]string, kv ...string) bool {
next:
	for _, op := range ops {
		for i := 0; i+1 < len(kv); i += 2 {
			if op[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return true
	}
	return false
}

func TestOpenSSHSFTPThroughProxy(t *testing.T) {
	e := newE2E(t)
	data := randomBytes(t, 3<<20+12345)
	if err := os.WriteFile(filepath.Join(e.local, "up.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.sftpBatch(t, strings.Join([]string{
		"put up.bin remote.bin",
		"get remote.bin back.bin",
		"mkdir d",
		"rename remote.bin d/r.bin",
		"chmod 600 d/r.bin",
		"symlink d/r.bin l",
		"ls -l d",
		"rm l",
		"rm d/r.bin",
		"rmdir d",
	}, "\n")+"\n", false)
	e.checkRoundTrip(t, out, err, "back.bin", data)
	ops := e.ops(t)
	rp := func(p string) string { return filepath.ToSlash(filepath.Join(e.remote, p)) }
	want := sumHex(data)
	size := strconv.Itoa(len(data))
	put := closeOf(t, ops, rp("remote.bin"), "write,create,truncate")
	if put["bytes_written"] != size || put["sha256_written"] != want || put["sequential"] != "true" {
		t.Fatalf("put record %v", put)
	}
	get := closeOf(t, ops, rp("remote.bin"), "read")
	if get["bytes_read"] != size || get["sha256_read"] != want || get["sequential"] != "true" {
		t.Fatalf("get record %v", get)
	}
	for _, kv := range [][]string{
		{"op", "realpath", "path", ".", "resolved", filepath.ToSlash(e.remote)},
		{"op", "mkdir", "path", rp("d"), "result", "ok"},
		{"op", "rename", "path", rp("remote.bin"), "to", rp("d/r.bin"), "result", "ok"},
		{"op", "setstat", "path", rp("d/r.bin"), "mode", "0600", "result", "ok"},
		{"op", "symlink", "path", rp("l"), "result", "ok"},
		{"op", "list", "path", rp("d"), "result", "ok"},
		{"op", "remove", "path", rp("l"), "result", "ok"},
		{"op", "remove", "path", rp("d/r.bin"), "result", "ok"},
		{"op", "rmdir", "path", rp("d"), "result", "ok"},
	} {
		if !hasOp(ops, kv...) {
			t.Errorf("no record with %v", kv)
		}
	}
	if t.Failed() {
		t.Logf("ops: %v\nsftp output:\n%s", ops, out)
	}
}

func TestOpenSSHReadOnly(t *testing.T) {
	e := newE2E(t)
	e.readOnly = true
	if err := os.WriteFile(filepath.Join(e.local, "up.bin"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.remote, "keep.txt"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.sftpBatch(t, "put up.bin\n", false)
	if err == nil || !strings.Contains(strings.ToLower(out), "permission denied") {
		t.Fatalf("read-only put: %v\n%s", err, out)
	}
	out, err = e.sftpBatch(t, "get keep.txt\n", false)
	if err != nil {
		t.Fatalf("read-only get: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.remote, "up.bin")); err == nil {
		t.Fatal("read-only put reached the target")
	}
	if !hasOp(e.ops(t), "op", "open", "result", errReadOnly.msg) {
		t.Fatal("refusal not recorded")
	}
}

func TestOpenSSHSCPThroughProxy(t *testing.T) {
	e := newE2E(t)
	if _, err := os.Stat(scpClient); err != nil {
		t.Skip("scp not installed")
	}
	// scp runs "ssh-program [options] host sftp"; this wrapper ignores the
	// arguments and becomes the proxy helper.
	wrapper := filepath.Join(filepath.Dir(e.local), "fake-ssh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec \""+e.exe+"\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 1<<20+7)
	if err := os.WriteFile(filepath.Join(e.local, "s.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"s.bin", "gw:copied.bin"}, {"gw:copied.bin", "again.bin"}} {
		cmd := exec.Command(scpClient, append([]string{"-s", "-S", wrapper}, args...)...)
		cmd.Dir = e.local
		cmd.Env = e.env()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scp %v: %v\n%s", args, err, out)
		}
	}
	got, err := os.ReadFile(filepath.Join(e.local, "again.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("scp round trip differs (%v)", err)
	}
	ops := e.ops(t)
	p := filepath.ToSlash(filepath.Join(e.remote, "copied.bin"))
	var put, get map[string]string
	for _, op := range ops {
		if op["op"] == "close" && op["path"] == p {
			if op["bytes_written"] != "0" {
				put = op
			} else {
				get = op
			}
		}
	}
	if put == nil || put["sha256_written"] != sumHex(data) || get == nil || get["sha256_read"] != sumHex(data) {
		t.Fatalf("scp records: %v", ops)
	}
}

// TestOpenSSHPipelinedHash: OpenSSH's sftp with 64 outstanding 255 KiB
// requests, put and get of a 64 MiB random file: the recorded SHA-256 is
// the file's and the transfer sequential, both ways.
func TestOpenSSHPipelinedHash(t *testing.T) {
	e := newE2E(t)
	data := randomBytes(t, 64<<20)
	if err := os.WriteFile(filepath.Join(e.local, "big.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.sftpBatch(t, "put big.bin remote.bin\nget remote.bin back.bin\n", false, "-R", "64", "-B", "261120")
	e.checkRoundTrip(t, out, err, "back.bin", data)
	ops := e.ops(t)
	p := filepath.ToSlash(filepath.Join(e.remote, "remote.bin"))
	want, size := sumHex(data), strconv.Itoa(len(data))
	put := closeOf(t, ops, p, "write,create,truncate")
	if put["bytes_written"] != size || put["sha256_written"] != want || put["sequential"] != "true" {
		t.Errorf("put record %v", put)
	}
	get := closeOf(t, ops, p, "read")
	if get["bytes_read"] != size || get["sha256_read"] != want || get["sequential"] != "true" {
		t.Errorf("get record %v", get)
	}
}

// BenchmarkOpenSSHGet compares the OpenSSH sftp client fetching a file
// through the proxy with fetching it straight from sftp-server.
func BenchmarkOpenSSHGet(b *testing.B) {
	for _, direct := range []bool{false, true} {
		name := "proxy"
		if direct {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			e := newE2E(b)
			data := randomBytes(b, 64<<20)
			if err := os.WriteFile(filepath.Join(e.remote, "big.bin"), data, 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				if out, err := e.sftpBatch(b, "get big.bin /dev/null\n", direct); err != nil {
					b.Fatalf("sftp: %v\n%s", err, out)
				}
			}
		})
	}
}
