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
