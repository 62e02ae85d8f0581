package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// rig is an in-process gateway in front of a real sshd, with its audit
// events in memory so tests can assert them.
type rig struct {
	srv    *Server
	sink   *audit.MemorySink
	keys   *ca.Keys
	target *testenv.Target
	port   int
	dir    string
	cfg    *config.Config
	yaml   string // the configuration's text, for reloads with edits
}

func startRig(t *testing.T, extraYAML func(targetAddr, hostKey string) string, persons map[string]string) *rig {
	t.Helper()
	return startRigWith(t, "", extraYAML, persons)
}

// startRigWith is startRig with more keys for the gateway section
// (gatewayYAML, like "limits: {kex_timeout: 2s}").
func startRigWith(t *testing.T, gatewayYAML string, extraYAML func(targetAddr, hostKey string) string, persons map[string]string) *rig {
	t.Helper()
	return startRigSink(t, gatewayYAML, nil, extraYAML, persons)
}

// startRigSink is startRigWith with the gateway's audit sink wrapped by
// wrap (nil: the rig's MemorySink itself), e.g. to make appends block.
func startRigSink(t *testing.T, gatewayYAML string, wrap func(audit.Sink) audit.Sink, extraYAML func(targetAddr, hostKey string) string, persons map[string]string) *rig {
	t.Helper()
	dir := t.TempDir()
	keys, err := ca.LoadOrCreate(filepath.Join(dir, "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	userCA, _ := keys.PublicLine(ca.User)
	target := testenv.StartSSHD(t, testenv.TargetOpts{UserCA: userCA})
	port := testenv.FreePort(t)
	today := time.Now().UTC()
	var b strings.Builder
	if gatewayYAML != "" {
		gatewayYAML = ", " + gatewayYAML
	}
	fmt.Fprintf(&b, "gateway: {listen: \"127.0.0.1:%d\", data_dir: %q, keepalive: 2s%s}\n", port, filepath.Join(dir, "data"), gatewayYAML)
	b.WriteString("tenants: [{id: schule-nord, name: Gesamtschule Nord}]\npersons:\n")
	for id, key := range persons {
		role := "admin"
		if id == "bob" {
			role = "dev"
		}
		fmt.Fprintf(&b, "  - {id: %s, name: %s Example, email: %s@example.org, roles: [%s], keys: [{key: %q, added: %s}], obligations: {confidentiality_signed: 2026-01-10, training_valid_until: 2099-12-31}}\n",
			id, id, id, role, key, today.AddDate(0, 0, -10).Format(time.DateOnly))
	}
	b.WriteString(`roles:
  - {id: admin, allow: [{hosts: {tenant: schule-nord}, logins: [root]}]}
  - {id: dev, allow: [{hosts: {names: [web1]}, logins: [deploy]}]}
hosts:
`)
	fmt.Fprintf(&b, "  - {name: db1, address: %q, tenant: schule-nord, environment: test, host_key: %q}\n", target.Addr, target.HostKey)
	fmt.Fprintf(&b, "  - {name: prod1, address: %q, tenant: schule-nord, environment: production, host_key: %q}\n", testenv.LoopbackAlias(target.Addr, 1), target.HostKey)
	if extraYAML != nil {
		b.WriteString(extraYAML(target.Addr, target.HostKey))
	}
	cfg, err := config.Parse(filepath.Join(dir, "tandem.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	sink := &audit.MemorySink{}
	kekPath := filepath.Join(t.TempDir(), "kek")
	if err := record.GenerateFileKEK(kekPath); err != nil {
		t.Fatal(err)
	}
	kek, err := record.FileKEK(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := record.OpenVault(filepath.Join(dir, "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{Vault: vault, Dir: filepath.Join(dir, "data"), StreamCap: 1 << 20}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(filepath.Join(dir, "data", "state.db"), store.WithKeyDir(filepath.Join(dir, "data", "keys")),
		store.WithReporter(ReportForgery(sink, log)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var gwSink audit.Sink = sink
	if wrap != nil {
		gwSink = wrap(sink)
	}
	srv, err := New(Options{Config: cfg, Keys: keys, Audit: gwSink, Recorder: rec, Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &rig{srv: srv, sink: sink, keys: keys, target: target, port: port, dir: dir, cfg: cfg, yaml: b.String()}
}

func (r *rig) client(t *testing.T, person, key string) *testenv.Client {
	hostCA, _ := r.keys.PublicLine(ca.Host)
	return testenv.NewClient(t, t.TempDir(), testenv.ClientOpts{
		Key: key, Person: person, GatewayPort: r.port,
		KnownHosts: []string{"@cert-authority * " + hostCA},
		JumpHosts:  map[string]string{"db1": "root", "prod1": "root", "db9": "root"},
	})
}

func TestGatewayRoutesAndRefuses(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	c := r.client(t, "alice", aliceKey)

	res := c.SSH(t, "db1", "echo jump-ok")
	if res.Code != 0 || !strings.Contains(res.Stdout, "jump-ok") {
		t.Fatalf("jump mode: %s", res)
	}
	res = c.SSH(t, "-p", fmt.Sprint(r.port), "root%db1@127.0.0.1", "echo user-ok; exit 7")
	if res.Code != 7 || !strings.Contains(res.Stdout, "user-ok") {
		t.Fatalf("user-name mode: %s", res)
	}
	ids := r.target.AcceptedCertIDs()
	if len(ids) != 2 || !strings.Contains(ids[0], "person=alice") {
		t.Fatalf("target saw %q\n%s", ids, r.target.Log())
	}
	res = c.SSH(t, "gw", "whoami")
	if res.Code != 0 || !strings.Contains(res.Stdout, "alice") || !strings.Contains(res.Stdout, "db1") {
		t.Fatalf("whoami: %s", res)
	}
	res = c.SSH(t, "prod1", "true")
	if res.Code == 0 || !strings.Contains(res.Stderr, "second person") && !strings.Contains(res.Stderr, "approved access request") {
		t.Fatalf("production exec: %s", res)
	}
	res = c.SSH(t, "db9", "true")
	if res.Code == 0 || !strings.Contains(res.Stderr, "unknown host db9") {
		t.Fatalf("unknown host: %s", res)
	}
	res = c.SSH(t, "-p", fmt.Sprint(r.port), "postgres%db1@127.0.0.1", "true")
	if res.Code == 0 || !strings.Contains(res.Stderr, "may not log in as postgres") {
		t.Fatalf("login not granted: %s", res)
	}
	if n := len(r.target.AcceptedCertIDs()); n != 2 {
		t.Fatalf("refused attempts reached the target: %d logins", n)
	}
	var starts, ends int
	for _, e := range r.sink.Events() {
		switch e.Type {
		case audit.SessionStart:
			starts++
		case audit.SessionEnd:
			ends++
		}
	}
	if starts != 2 || ends != 2 {
		t.Errorf("audit: %d session.start, %d session.end, want 2 and 2: %v", starts, ends, r.sink.Types())
	}
}

func TestUnknownKeyAndPassword(t *testing.T) {
	dir := t.TempDir()
	_, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	strangerKey, _ := testenv.KeyPair(t, dir, "stranger", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	c := r.client(t, "alice", strangerKey)
	res := c.SSH(t, "gw", "whoami")
	if res.Code == 0 || !strings.Contains(res.Stderr, "is not registered") {
		t.Fatalf("unknown key: %s", res)
	}
	cfg := &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password("correct horse battery")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	if _, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), cfg); err == nil {
		t.Fatal("password login accepted")
	}
	var failures []string
	for _, e := range r.sink.Events() {
		if e.Type == audit.AuthFailure {
			failures = append(failures, e.Attrs["method"])
		}
	}
	if !strings.Contains(strings.Join(failures, ","), "publickey") {
		t.Errorf("unknown key not audited: %v", failures)
	}
}

// TestJumpRefusedWithoutGrant: the policy (MayJump) refuses a jump channel
// to a host none of the person's roles grants a login on, before any
// handshake with it, and the refusal is audited with the policy's reason.
func TestJumpRefusedWithoutGrant(t *testing.T) {
	dir := t.TempDir()
	bobKey, bobPub := testenv.KeyPair(t, dir, "bob", "ecdsa")
	r := startRig(t, nil, map[string]string{"bob": bobPub})
	c := r.client(t, "bob", bobKey)
	res := c.SSH(t, "db1", "true")
	if res.Code == 0 || !strings.Contains(res.Stderr, "bob has no access to host db1") {
		t.Fatalf("jump without a grant: %s", res)
	}
	if n := len(r.target.AcceptedCertIDs()); n != 0 {
		t.Fatalf("a refused jump reached the target: %d logins", n)
	}
	denied := false
	for _, e := range r.sink.Events() {
		if e.Type == audit.SessionDenied && e.Host == "db1" && e.Attrs["mode"] == "jump" {
			denied = strings.Contains(e.Attrs["reason"], "no access to host db1") && e.Attrs["verdict"] == "deny"
		}
	}
	if !denied {
		t.Errorf("no session-denied event for the jump: %v", r.sink.Events())
	}
}
