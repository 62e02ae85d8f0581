package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// This file holds the end-to-end tests of session recording (issue 5: M9,
// M13, M16): a shared session's input is attributed per person in the
// export, exec streams are counted and hashed beyond the stored cap, no
// plaintext reaches the data directory, a crash loses at most about a
// second, reading is bound to read grants and tenants, and sftp operations
// are recorded with path and hash. The tests reuse the four-eyes PTY
// clients (feEnv) with their own configuration: two tenants and reader
// roles.

// recRoles are the persons of every recording test and their roles.
var recRoles = []struct{ id, role string }{
	{"alice", "admin"},     // root on schule-nord, may join
	{"bob", "admin"},       // the second person of alice's sessions
	{"rita", "reader"},     // reads recordings of schule-nord, no login
	{"dave", "ops"},        // root on schule-nord, may not read
	{"sue", "sued-admin"},  // root on schule-sued, may not read
	{"sam", "sued-reader"}, // reads recordings of schule-sued only
}

// recordingConfig is the configuration of a recording test: the persons
// of recRoles with their keys (pubs), and two tenants on the same sshd at
// sshdAddr: schule-nord with db1 (production, four-eyes) and tst1 (test),
// and schule-sued with tsts (test).
func recordingConfig(dir string, gwPort int, sshdAddr, hostKey string, pubs map[string]string) *config.Config {
	c := gwConfig(dir, gwPort)
	c.Tenants = append(c.Tenants, config.Tenant{ID: "schule-sued", Name: "Gymnasium Sued"})
	c.Gateway.Limits = config.Limits{FailuresPerSource: 100, FailuresPerPerson: 100}
	c.Policy = config.Policy{Grace: config.Duration{Duration: time.Minute}, WaitTimeout: config.Duration{Duration: 2 * time.Minute}}
	for _, p := range recRoles {
		c.Persons = append(c.Persons, testenv.Person(p.id, pubs[p.id], p.role))
	}
	sued := config.Selector{Tenant: "schule-sued"}
	c.Roles = []config.Role{
		role("admin", "root on every host of Nord; may join as peer",
			config.Rule{Hosts: nord, Logins: root, Join: []string{config.JoinPeer, config.JoinObserver}}),
		role("reader", "reads the recordings of Nord, nothing else", config.Rule{Hosts: nord, Read: true}),
		role("ops", "root on every host of Nord, may not read recordings", config.Rule{Hosts: nord, Logins: root}),
		role("sued-admin", "root on every host of Sued", config.Rule{Hosts: sued, Logins: root}),
		role("sued-reader", "reads the recordings of Sued, nothing else", config.Rule{Hosts: sued, Read: true}),
	}
	// One sshd, spelt differently per tenant and environment.
	tsts := host("tsts", config.Test, testenv.LoopbackAlias(sshdAddr, 2), hostKey)
	tsts.Tenant = "schule-sued"
	c.Hosts = []config.Host{
		host("db1", config.Production, sshdAddr, hostKey),
		host("tst1", config.Test, testenv.LoopbackAlias(sshdAddr, 1), hostKey),
		tsts,
	}
	return c
}

// recEnv is the setup of one recording test: a four-eyes environment (for
// its PTY clients and join helpers) with the recording configuration.
type recEnv struct {
	*feEnv
	DataDir string
}

// newRecordingEnv builds keys for every person of recRoles, the
// configuration, the target sshd, the gateway and one client per person.
// "db1", "tst1" and "tsts" reach the hosts as root in jump mode.
func newRecordingEnv(t *testing.T) *recEnv {
	t.Helper()
	bin, dir, keysDir := prepare(t)
	fe := &feEnv{Dir: dir, Bin: bin, Config: filepath.Join(dir, "tandem.yaml"), clients: map[string]*testenv.Client{}}
	e := &recEnv{feEnv: fe, DataDir: filepath.Join(dir, "data")}
	priv, pubs := map[string]string{}, map[string]string{}
	for _, r := range recRoles {
		priv[r.id], pubs[r.id] = testenv.KeyPair(t, keysDir, r.id, "ecdsa")
	}
	hostKey, hostPub := testenv.KeyPair(t, keysDir, "db1_host", "ecdsa")
	sshdPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	writeConfig(t, fe.Config, recordingConfig(dir, gwPort, fmt.Sprintf("127.0.0.1:%d", sshdPort), hostPub, pubs))
	userCA := caPublic(t, bin, fe.Config, "user")
	fe.Target = testenv.StartSSHD(t, testenv.TargetOpts{Port: sshdPort, HostKeyFile: hostKey, UserCA: userCA})
	fe.GW = testenv.StartGateway(t, bin, fe.Config, gwPort)
	fe.clients = personClients(t, dir, fe.GW, gwPort, priv, map[string]string{"db1": "root", "tst1": "root", "tsts": "root"})
	return e
}

// tandem runs the tandem binary and returns its outputs and error.
func (e *recEnv) tandem(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return testenv.RunTandem(t, e.Bin, args...)
}

// recEvent is the part of an audit event these tests read.
type recEvent struct {
	Type    string            `json:"type"`
	Person  string            `json:"person"`
	Session string            `json:"session"`
	Tenant  string            `json:"tenant"`
	Host    string            `json:"host"`
	Attrs   map[string]string `json:"attrs"`
}

// auditJSON runs `tandem audit show --json` with the given filters.
func (e *recEnv) auditJSON(t *testing.T, filters ...string) []recEvent {
	t.Helper()
	args := append([]string{"audit", "show", "--config", e.Config, "--json"}, filters...)
	out, errOut, err := e.tandem(t, args...)
	if err != nil {
		t.Fatalf("tandem %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	var recs []recEvent
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r recEvent
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("audit show --json: %v\n%s", err, out)
		}
		recs = append(recs, r)
	}
	return recs
}

// waitEvent waits (bounded) for an audit event of the given type that
// satisfies match, and returns it.
func (e *recEnv) waitEvent(t *testing.T, typ string, match func(recEvent) bool) (recEvent, bool) {
	t.Helper()
	var found recEvent
	ok := testenv.WaitFor(10*time.Second, func() bool {
		for _, r := range e.auditJSON(t, "--type", typ) {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found, ok
}

// sessionEnd waits for the session.end of the only session of person on
// host and returns it.
func (e *recEnv) sessionEnd(t *testing.T, person, host string) recEvent {
	t.Helper()
	ev, ok := e.waitEvent(t, "session.end", func(r recEvent) bool { return r.Person == person && r.Host == host })
	if !ok {
		t.Fatalf("no session.end of %s on %s in the audit log:\n%s", person, host, e.GW.Tail())
	}
	return ev
}

// exportLocal runs `tandem recording export ID --as PERSON --out FILE` and
// returns the file's content (empty if it was not written).
func (e *recEnv) exportLocal(t *testing.T, id, as string) (cast, stderr string, err error) {
	t.Helper()
	out := filepath.Join(e.Dir, fmt.Sprintf("export-%s-%s-%s.cast", id, as, nonce(t)))
	_, stderr, err = e.tandem(t, "recording", "export", id, "--config", e.Config, "--as", as, "--out", out)
	b, rerr := os.ReadFile(out)
	if rerr == nil {
		cast = string(b)
	}
	return cast, stderr, err
}

// mustExport is exportLocal that fails the test when the export fails.
func (e *recEnv) mustExport(t *testing.T, id, as string) string {
	t.Helper()
	cast, stderr, err := e.exportLocal(t, id, as)
	if err != nil {
		t.Fatalf("tandem recording export %s --as %s: %v\nstderr: %s", id, as, err, stderr)
	}
	return cast
}

// castEvent is one event line of an asciicast v2 file.
type castEvent struct {
	T    float64
	Code string // "o", "i", "r", "m"
	Data string
}

// castHeader is the part of the asciicast v2 header these tests read.
type recCastHeader struct {
	Version int `json:"version"`
	Width   int `json:"width"`
	Height  int `json:"height"`
}

// parseCast parses an asciicast v2 file strictly: a JSON object header
// with version 2, then one JSON array [time, code, data] per line, times
// never decreasing.
func parseCast(t *testing.T, cast string) (recCastHeader, []castEvent) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(cast, "\n"), "\n")
	var h recCastHeader
	if len(lines) == 0 || json.Unmarshal([]byte(lines[0]), &h) != nil || h.Version != 2 {
		t.Fatalf("asciicast: the first line is no v2 header: %q", clipTail(lines[0], 300))
	}
	var evs []castEvent
	last := 0.0
	for i, l := range lines[1:] {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(l), &raw); err != nil || len(raw) != 3 {
			t.Fatalf("asciicast line %d is no [time, code, data] array: %q (%v)", i+2, clipTail(l, 300), err)
		}
		var ev castEvent
		if json.Unmarshal(raw[0], &ev.T) != nil || json.Unmarshal(raw[1], &ev.Code) != nil || json.Unmarshal(raw[2], &ev.Data) != nil {
			t.Fatalf("asciicast line %d: want [number, string, string], got %q", i+2, clipTail(l, 300))
		}
		if ev.T < last {
			t.Errorf("asciicast line %d: time %v before the previous %v", i+2, ev.T, last)
		}
		last = ev.T
		evs = append(evs, ev)
	}
	return h, evs
}

// joined concatenates the data of the events with the given code.
func joined(evs []castEvent, code string) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Code == code {
			b.WriteString(ev.Data)
			if code == "m" {
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// inputByTypist attributes every "i" event to the person named by the
// last "input: <person>" marker before it.
func inputByTypist(evs []castEvent) map[string]string {
	by := map[string]*strings.Builder{}
	typist := ""
	for _, ev := range evs {
		switch {
		case ev.Code == "m" && strings.HasPrefix(ev.Data, "input: "):
			typist = strings.TrimPrefix(ev.Data, "input: ")
		case ev.Code == "i":
			if by[typist] == nil {
				by[typist] = &strings.Builder{}
			}
			by[typist].WriteString(ev.Data)
		}
	}
	out := map[string]string{}
	for k, v := range by {
		out[k] = v.String()
	}
	return out
}

// TestRecordingSharedAttribution: alice owns a session on the production
// host db1, bob joins as peer, each types a command; the reader rita
// exports the recording locally and over SSH; the asciicast v2 file
// attributes each command to its typist and `asciinema cat` plays it.
func TestRecordingSharedAttribution(t *testing.T) {
	t.Parallel()
	e := newRecordingEnv(t)
	alice, id := e.waitingSession(t, "alice", "db1")
	bob := e.join(t, "bob", id)
	e.live(t, alice, bob)
	both := []*feTerm{alice, bob}
	alice.send(t, "echo ALICE-$((6*7))\r")
	for _, tm := range both {
		if !tm.waitFor("ALICE-42", 20*time.Second) {
			e.fail(t, both, "alice's command: %s's terminal lacks ALICE-42", tm.name)
		}
	}
	bob.send(t, "echo BOB-$((7*7))\r")
	for _, tm := range both {
		if !tm.waitFor("BOB-49", 20*time.Second) {
			e.fail(t, both, "bob's command: %s's terminal lacks BOB-49", tm.name)
		}
	}
	alice.send(t, "exit\r")
	for _, tm := range both {
		if !tm.waitExit(10 * time.Second) {
			e.fail(t, both, "alice's shell exited: %s's ssh did not end", tm.name)
		}
	}
	end := e.sessionEnd(t, "alice", "db1")
	if end.Session != id {
		t.Errorf("session.end of alice on db1 names session %q, want %s", end.Session, id)
	}
	t.Logf("session.end of %s: %v", id, end.Attrs)

	cast := e.mustExport(t, id, "rita")
	h, evs := parseCast(t, cast)
	t.Logf("export of %s: %d bytes, %dx%d, %d events", id, len(cast), h.Width, h.Height, len(evs))
	out := joined(evs, "o")
	for _, w := range []string{"ALICE-42", "BOB-49"} {
		if !strings.Contains(out, w) {
			t.Errorf("exported output lacks %s:\n%s", w, clipTail(out, 2000))
		}
	}
	in := inputByTypist(evs)
	if !strings.Contains(in["alice"], "ALICE") || strings.Contains(in["alice"], "BOB") {
		t.Errorf("input after the marker %q: want alice's command and not bob's, got %q", "input: alice", in["alice"])
	}
	if !strings.Contains(in["bob"], "BOB") || strings.Contains(in["bob"], "ALICE") {
		t.Errorf("input after the marker %q: want bob's command and not alice's, got %q", "input: bob", in["bob"])
	}
	if s := in[""]; s != "" {
		t.Errorf("input before any %q marker: %q", "input: ", s)
	}
	markers := joined(evs, "m")
	if !strings.Contains(markers, "bob joined as peer") {
		t.Errorf("export: want a marker %q, markers are:\n%s", "bob joined as peer", markers)
	}
	t.Logf("markers:\n%s", markers)

	// The same recording over SSH: `ssh gw export ID > x.cast`.
	r := e.clients["rita"].SSH(t, "gw", "export", id)
	if r.Code != 0 {
		t.Fatalf("rita: ssh gw export %s: %s\ngateway:\n%s", id, r, e.GW.Tail())
	}
	if r.Stdout != cast {
		t.Errorf("ssh gw export %s differs from tandem recording export (%d vs %d bytes)", id, len(r.Stdout), len(cast))
	}

	// Both reads are in the audit log: the local one through the outbox.
	ok := testenv.WaitFor(10*time.Second, func() bool {
		n := 0
		for _, ev := range e.auditJSON(t, "--type", "recording.export") {
			if ev.Person == "rita" && ev.Session == id {
				n++
			}
		}
		return n >= 2
	})
	if !ok {
		t.Errorf("want two recording.export events of rita for %s (local and SSH), have:\n%v", id, e.auditJSON(t, "--type", "recording.export"))
	}

	// asciinema plays the file; it wants a terminal.
	testenv.RequireProgram(t, "asciinema")
	f := filepath.Join(e.Dir, "shared.cast")
	writeTestFile(t, f, cast)
	played := runOnPTY(t, 30*time.Second, "asciinema", "cat", f)
	if !strings.Contains(played, "ALICE-42") || !strings.Contains(played, "BOB-49") {
		t.Errorf("asciinema cat %s: want ALICE-42 and BOB-49, got:\n%s", f, clipTail(played, 2000))
	}
}

// runOnPTY runs a program on a new 40x120 PTY until it ends (bounded) and
// returns what it printed.
func runOnPTY(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("start %s on a pty: %v", cmd, err)
	}
	var out feScreen
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		_, _ = io.Copy(&out, f) // ends once the child is gone and f is closed
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		err = <-done
		t.Errorf("%s did not end within %v", cmd, timeout)
	}
	// The copy reads what is left and ends with EIO once the child is
	// gone; closing f ends it should anything still hold the PTY open.
	drained := make(chan struct{})
	go func() { copied.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
	}
	_ = f.Close()
	<-drained
	if err != nil {
		t.Errorf("%s: %v\n%s", cmd, err, out.tail(2000))
	}
	return out.String()
}

// TestRecordingExecStreams: an exec session that prints 5 MiB stores the
// first 1 MiB, counts and hashes all of it, and says so in session.end and
// in the export; the client receives every byte.
func TestRecordingExecStreams(t *testing.T) {
	t.Parallel()
	e := newRecordingEnv(t)
	const size = 5 << 20
	src := filepath.Join(e.Dir, "five-mib.bin")
	writeRandomFile(t, src, size)
	want := fileSHA256(t, src)

	h := sha256.New()
	var n countWriter
	r := e.clients["alice"].Exec(t, testenv.RunOpts{Stdout: io.MultiWriter(h, &n)}, "ssh", "tst1", "cat "+src)
	if r.Code != 0 {
		t.Fatalf("ssh tst1 cat: %s\ngateway:\n%s", r, e.GW.Tail())
	}
	if got := hex.EncodeToString(h.Sum(nil)); n.n != size || got != want {
		t.Fatalf("client received %d bytes with SHA-256 %s, want %d bytes with %s", n.n, got, size, want)
	}

	end := e.sessionEnd(t, "alice", "tst1")
	t.Logf("session.end of %s: %v", end.Session, end.Attrs)
	for k, v := range map[string]string{
		"stdout_bytes":        strconv.Itoa(size),
		"stdout_sha256":       want,
		"stdout_stored_bytes": strconv.Itoa(1 << 20),
	} {
		if got := end.Attrs[k]; got != v {
			t.Errorf("session.end %s = %q, want %q", k, got, v)
		}
	}
	// Empty streams may be left out; if named, they must be empty.
	for _, k := range []string{"stderr_bytes", "stdin_bytes"} {
		if v, ok := end.Attrs[k]; ok && v != "0" {
			t.Errorf("session.end %s = %q, want 0", k, v)
		}
	}
	for _, k := range []string{"stderr_stored_bytes", "stdin_stored_bytes"} {
		if v, ok := end.Attrs[k]; ok {
			t.Errorf("session.end has %s=%q for a stream under the cap", k, v)
		}
	}
	// The encrypted file's hash in the tamper-evident log matches the file.
	path := end.Attrs["recording"]
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(e.DataDir, path)
	}
	wantPath := filepath.Join(e.DataDir, "recordings", "schule-nord", day(0), end.Session+".rec")
	if path != wantPath {
		t.Errorf("session.end recording = %q, want %q", end.Attrs["recording"], wantPath)
	}
	if _, err := os.Stat(path); err == nil {
		if got := fileSHA256(t, path); got != end.Attrs["recording_file_sha256"] {
			t.Errorf("recording file %s has SHA-256 %s; session.end says %s", path, got, end.Attrs["recording_file_sha256"])
		}
	} else {
		t.Errorf("recording file: %v", err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(end.Attrs["recording_sha256"]) {
		t.Errorf("session.end recording_sha256 = %q, want 64 hex digits", end.Attrs["recording_sha256"])
	}

	cast := e.mustExport(t, end.Session, "rita")
	_, evs := parseCast(t, cast)
	markers := joined(evs, "m")
	wantMarker := fmt.Sprintf("stdout: %d bytes, sha256 %s, first %d bytes stored", size, want, 1<<20)
	for _, w := range []string{wantMarker, "exit status 0"} {
		if !strings.Contains(markers, w) {
			t.Errorf("export lacks the marker %q; markers:\n%s", w, markers)
		}
	}
	t.Logf("export of the 5 MiB exec session: %d bytes", len(cast))
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return len(p), nil
}

// TestRecordingNoPlaintext: after a session that typed and printed a
// marker, no file under data_dir contains the marker, the typed command or
// the key-encryption key; the KEK file lies outside data_dir with mode
// 0600. The export proves the marker was recorded.
func TestRecordingNoPlaintext(t *testing.T) {
	t.Parallel()
	e := newRecordingEnv(t)
	tag := strings.ToUpper(nonce(t))
	// The command computes the marker, so the typed text and the output
	// are different strings, and neither is in the audit log (which logs
	// commands of exec sessions, not what is typed into a shell).
	typed := fmt.Sprintf("echo SECRET-%s-$((1000+337))", tag)
	marker := fmt.Sprintf("SECRET-%s-1337", tag)
	tm := e.open(t, "alice", e.dest("tst1")...)
	tm.send(t, typed+"\r")
	if !tm.waitFor(marker, 20*time.Second) {
		e.fail(t, []*feTerm{tm}, "alice's session on tst1 did not print %s", marker)
	}
	tm.send(t, "exit\r")
	if !tm.waitExit(10 * time.Second) {
		e.fail(t, []*feTerm{tm}, "alice's ssh did not end after exit")
	}
	end := e.sessionEnd(t, "alice", "tst1")

	kek := filepath.Join(e.Dir, "tandem.kek")
	st, err := os.Stat(kek)
	if err != nil {
		t.Fatalf("the default KEK file beside the configuration: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("KEK file %s has mode %v, want 0600", kek, st.Mode().Perm())
	}
	if rel, err := filepath.Rel(e.DataDir, kek); err != nil || !strings.HasPrefix(rel, "..") {
		t.Errorf("KEK file %s lies inside data_dir %s", kek, e.DataDir)
	}
	kekBytes, err := os.ReadFile(kek)
	if err != nil {
		t.Fatalf("read KEK: %v", err)
	}

	needles := map[string][]byte{"output marker": []byte(marker), "typed command": []byte(typed), "tag": []byte(tag)}
	if len(kekBytes) >= 16 {
		needles["KEK"] = kekBytes
	}
	recs := 0
	files := testenv.EachFile(t, e.DataDir, func(p string, _ fs.DirEntry, b []byte) {
		if strings.HasSuffix(p, ".rec") {
			recs++
		}
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s is in plaintext in %s", what, p)
			}
		}
	})
	t.Logf("searched %d files under data_dir (%d recordings) for the marker, the typed command and the KEK", files, recs)
	// Recordings and data keys are private to the gateway's user.
	for _, sub := range []string{"recordings", "vault"} {
		root := filepath.Join(e.DataDir, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			}
			if got := info.Mode().Perm(); got != want {
				t.Errorf("%s has mode %v, want %v", p, got, want)
			}
			return nil
		})
		if err != nil {
			t.Errorf("walk %s: %v", root, err)
		}
	}
	if recs == 0 {
		t.Errorf("no .rec file under %s", e.DataDir)
	}

	// The marker was recorded: the export (decrypted with the KEK) has it.
	cast := e.mustExport(t, end.Session, "rita")
	_, evs := parseCast(t, cast)
	if !strings.Contains(joined(evs, "o"), marker) {
		t.Errorf("the export of %s lacks %s", end.Session, marker)
	}
}

// tickRE finds the ticks of the crash test's loop in output.
var tickRE = regexp.MustCompile(`TICK-(\d+)\r?\n`)

// TestRecordingCrash: the gateway is killed with SIGKILL in the middle of
// a session that prints a tick every 100 ms; the local export still works
// without a gateway and has everything up to about a second before the
// kill.
func TestRecordingCrash(t *testing.T) {
	t.Parallel()
	e := newRecordingEnv(t)
	tm := e.open(t, "alice", e.dest("tst1")...)
	tm.send(t, "for i in $(seq 1 100); do echo TICK-$i; sleep 0.1; done\r")
	if !tm.waitFor("TICK-20\r\n", 30*time.Second) {
		e.fail(t, []*feTerm{tm}, "the tick loop did not reach TICK-20")
	}
	e.GW.Crash(t)
	seen := maxTick(tm.screen.String())
	t.Logf("gateway killed with SIGKILL; the client had seen up to TICK-%d", seen)

	out, errOut, err := e.tandem(t, "recording", "list", "--config", e.Config, "--as", "rita")
	if err != nil {
		t.Fatalf("tandem recording list after the crash: %v\nstderr: %s", err, errOut)
	}
	row := firstLine(out, "root@tst1")
	f := strings.Fields(row)
	if len(f) == 0 {
		t.Fatalf("tandem recording list after the crash lacks the session on tst1:\n%s", out)
	}
	id := f[0]
	cast, stderr, err := e.exportLocal(t, id, "rita")
	if err != nil {
		if !strings.Contains(stderr, "incomplete") {
			t.Fatalf("export of the crashed session %s: %v (want success or an \"incomplete\" error)\nstderr: %s", id, err, stderr)
		}
		t.Logf("export of the crashed session: %v: %s", err, strings.TrimSpace(stderr))
	}
	if cast == "" {
		t.Fatalf("export of the crashed session %s wrote nothing", id)
	}
	_, evs := parseCast(t, cast)
	got := maxTick(joined(evs, "o"))
	t.Logf("the export of the crashed session has up to TICK-%d (client saw TICK-%d; ticks are 100 ms apart)", got, seen)
	if got < 10 {
		t.Errorf("the export of the crashed session has ticks only up to %d, want at least TICK-10 (at most ~1 s lost)", got)
	}
	if m := joined(evs, "m"); !strings.Contains(m, "recording incomplete") {
		t.Logf("no %q marker in the export; markers:\n%s", "recording incomplete", m)
	}

	// The export was audited into the outbox while no gateway ran; the
	// restarted gateway delivers it to the log.
	e.GW = testenv.StartGateway(t, e.Bin, e.Config, e.GW.Port)
	if _, ok := e.waitEvent(t, "recording.export", func(r recEvent) bool { return r.Person == "rita" && r.Session == id }); !ok {
		t.Errorf("the restarted gateway did not deliver rita's export of %s (made while it was down) to the audit log", id)
	}
	if r := e.clients["rita"].SSH(t, "gw", "recordings"); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Errorf("after the restart, rita: ssh gw recordings lacks the crashed session %s\n%s", id, r)
	}
}

// maxTick returns the highest complete TICK-n line in s, 0 if none.
func maxTick(s string) int {
	best := 0
	for _, m := range tickRE.FindAllStringSubmatch(s, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && n > best {
			best = n
		}
	}
	return best
}

// TestRecordingPermissions: reading is bound to read grants and tenants
// (M13, M16). dave and sue, without a read grant, read nothing; rita reads
// schule-nord only, sam schule-sued only.
func TestRecordingPermissions(t *testing.T) {
	t.Parallel()
	e := newRecordingEnv(t)
	if r := e.clients["alice"].SSH(t, "tst1", "echo NORD-$((2*3))"); r.Code != 0 || !strings.Contains(r.Stdout, "NORD-6") {
		t.Fatalf("alice on tst1: %s\ngateway:\n%s", r, e.GW.Tail())
	}
	if r := e.clients["sue"].SSH(t, "tsts", "echo SUED-$((3*3))"); r.Code != 0 || !strings.Contains(r.Stdout, "SUED-9") {
		t.Fatalf("sue on tsts: %s\ngateway:\n%s", r, e.GW.Tail())
	}
	nord := e.sessionEnd(t, "alice", "tst1").Session
	sued := e.sessionEnd(t, "sue", "tsts").Session
	t.Logf("sessions: %s (alice on tst1, schule-nord), %s (sue on tsts, schule-sued)", nord, sued)

	gw := func(person string, args ...string) testenv.Result {
		return e.clients[person].SSH(t, append([]string{"gw"}, args...)...)
	}
	refused := func(name string, r testenv.Result, want string) {
		t.Helper()
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, want) {
			t.Errorf("%s: want a refusal containing %q\n%s", name, want, r)
		}
		for _, secret := range []string{"NORD-6", "SUED-9"} {
			if strings.Contains(r.Stdout, secret) {
				t.Errorf("%s: refused, yet the output has the recorded %s", name, secret)
			}
		}
	}
	lists := func(name string, out string, has, hasNot []string) {
		t.Helper()
		for _, id := range has {
			if !strings.Contains(out, id) {
				t.Errorf("%s: want session %s listed:\n%s", name, id, out)
			}
		}
		for _, id := range hasNot {
			if strings.Contains(out, id) {
				t.Errorf("%s: session %s must not be listed:\n%s", name, id, out)
			}
		}
	}
	localRefused := func(name, id, as, want string) {
		t.Helper()
		cast, stderr, err := e.exportLocal(t, id, as)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%s: want a refusal containing %q, got err=%v stderr=%q", name, want, err, stderr)
		}
		if cast != "" {
			t.Errorf("%s: refused, yet the output file was written (%d bytes)", name, len(cast))
		}
	}

	// No read grant at all.
	refused("dave: ssh gw export (nord)", gw("dave", "export", nord), "may not read the recording of session")
	refused("dave: ssh gw export (sued)", gw("dave", "export", sued), "may not read the recording of session")
	refused("dave: ssh -tt gw replay", e.clients["dave"].SSH(t, "-tt", "gw", "replay", nord, "--speed", "100"), "may not read the recording of session")
	r := gw("dave", "recordings")
	lists("dave: ssh gw recordings", r.Stdout+r.Stderr, nil, []string{nord, sued})
	r = gw("sue", "recordings")
	lists("sue: ssh gw recordings", r.Stdout+r.Stderr, nil, []string{nord, sued})
	localRefused("dave: tandem recording export (nord)", nord, "dave", "may not read the recording of session")
	if out, errOut, err := e.tandem(t, "recording", "list", "--config", e.Config, "--as", "dave"); err != nil {
		t.Errorf("dave: tandem recording list: %v\n%s", err, errOut)
	} else {
		lists("dave: tandem recording list", out, nil, []string{nord, sued})
	}

	// rita reads schule-nord only.
	r = gw("rita", "recordings")
	lists("rita: ssh gw recordings", r.Stdout, []string{nord}, []string{sued})
	r = gw("rita", "recordings", "--host", "tsts")
	lists("rita: ssh gw recordings --host tsts", r.Stdout, nil, []string{nord, sued})
	refused("rita: ssh gw export (sued)", gw("rita", "export", sued), "may not read the recording of session")
	localRefused("rita: tandem recording export (sued)", sued, "rita", "may not read the recording of session")
	if out, errOut, err := e.tandem(t, "recording", "list", "--config", e.Config, "--as", "rita"); err != nil {
		t.Errorf("rita: tandem recording list: %v\n%s", err, errOut)
	} else {
		lists("rita: tandem recording list", out, []string{nord}, []string{sued})
	}
	if r := gw("rita", "export", nord); r.Code != 0 || !strings.Contains(r.Stdout, "NORD-6") {
		t.Errorf("rita: ssh gw export %s (her tenant): want the recording with NORD-6\n%s", nord, r)
	}
	if r := e.clients["rita"].SSH(t, "-tt", "gw", "replay", nord, "--speed", "100"); r.Code != 0 || !strings.Contains(r.Stdout, "NORD-6") {
		t.Errorf("rita: ssh -tt gw replay %s: want NORD-6\n%s", nord, r)
	}
	if out, errOut, err := e.tandem(t, "replay", nord, "--config", e.Config, "--as", "rita", "--speed", "100"); err != nil || !strings.Contains(out, "NORD-6") {
		t.Errorf("rita: tandem replay %s: want NORD-6, got err=%v\nstdout: %q\nstderr: %q", nord, err, clipTail(out, 500), errOut)
	}

	// sam reads schule-sued only.
	r = gw("sam", "recordings")
	lists("sam: ssh gw recordings", r.Stdout, []string{sued}, []string{nord})
	refused("sam: ssh gw export (nord)", gw("sam", "export", nord), "may not read the recording of session")
	localRefused("sam: tandem recording export (nord)", nord, "sam", "may not read the recording of session")
	if cast, stderr, err := e.exportLocal(t, sued, "sam"); err != nil || !strings.Contains(cast, "SUED-9") {
		t.Errorf("sam: tandem recording export %s (his tenant): want SUED-9, got err=%v stderr=%q", sued, err, stderr)
	}

	// Every successful read is audited; no refused one is.
	if _, ok := e.waitEvent(t, "recording.export", func(r recEvent) bool {
		return r.Person == "sam" && r.Session == sued && r.Tenant == "schule-sued"
	}); !ok {
		t.Errorf("no recording.export event of sam for %s (local export, via the outbox)", sued)
	}
	for _, ev := range e.auditJSON(t, "--type", "recording.export,recording.read") {
		t.Logf("%s person=%s session=%s tenant=%s %v", ev.Type, ev.Person, ev.Session, ev.Tenant, ev.Attrs)
		if ev.Session != "" && (ev.Person == "dave" || (ev.Person == "rita" && ev.Session == sued) || (ev.Person == "sam" && ev.Session == nord)) {
			t.Errorf("a refused read was audited as a read: %+v", ev)
		}
	}
}

// TestRecordingSFTP: sftp operations are recorded with path, size and
// SHA-256: put a 2 MiB file, get it back, rename and remove it; the export
// names the path and the file's hash.
func TestRecordingSFTP(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "sftp")
	e := newRecordingEnv(t)
	src := filepath.Join(e.Dir, "two-mib.bin")
	writeRandomFile(t, src, 2<<20)
	want := fileSHA256(t, src)
	remote := filepath.Join(e.Dir, "remote-"+nonce(t)+".bin")
	renamed := remote + ".renamed"
	back := filepath.Join(e.Dir, "back.bin")
	batch := filepath.Join(e.Dir, "sftp-batch")
	writeTestFile(t, batch, fmt.Sprintf("put %s %s\nget %s %s\nrename %s %s\nrm %s\n", src, remote, remote, back, remote, renamed, renamed))
	r := e.clients["alice"].Exec(t, testenv.RunOpts{Timeout: 2 * time.Minute}, "sftp", "-b", batch, "tst1")
	if r.Code != 0 {
		t.Fatalf("sftp -b: %s\ngateway:\n%s", r, e.GW.Tail())
	}
	if got := fileSHA256(t, back); got != want {
		t.Fatalf("the file came back with SHA-256 %s, want %s", got, want)
	}
	if _, err := os.Stat(renamed); !os.IsNotExist(err) {
		t.Errorf("the renamed file was not removed on the target: %v", err)
	}
	end := e.sessionEnd(t, "alice", "tst1")
	t.Logf("session.end of the sftp session %s: %v", end.Session, end.Attrs)
	// 2 MiB went up and came back: the protocol stream carried at least
	// that much each way.
	for _, k := range []string{"bytes_in", "bytes_out"} {
		if n, err := strconv.ParseInt(end.Attrs[k], 10, 64); err != nil || n < 2<<20 {
			t.Errorf("session.end %s = %q, want at least %d (the file moved that way)", k, end.Attrs[k], 2<<20)
		}
	}

	cast := e.mustExport(t, end.Session, "rita")
	_, evs := parseCast(t, cast)
	var ops []string
	for _, ev := range evs {
		if ev.Code == "m" && strings.HasPrefix(ev.Data, "sftp ") {
			ops = append(ops, ev.Data)
		}
	}
	t.Logf("sftp markers in the export:\n%s", strings.Join(ops, "\n"))
	all := strings.Join(ops, "\n")
	if !strings.Contains(all, remote) {
		t.Errorf("the export has no sftp marker naming %s (sftp operations not recorded?)", remote)
	}
	if n := strings.Count(all, want); n < 2 {
		t.Errorf("the export's sftp markers carry the file's SHA-256 %s %d time(s), want 2 (put and get)", want, n)
	}
	for _, w := range []string{"rename", "remove"} {
		if firstLine(all, w) == "" || !strings.Contains(firstLine(all, w), renamed) {
			t.Errorf("the export has no sftp %s marker naming %s", w, renamed)
		}
	}
}
