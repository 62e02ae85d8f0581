package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
)

// gatewayConfig writes a minimal configuration in a fresh directory: data
// in data/, the witness in witness/, keys beside the file.
func gatewayConfig(t *testing.T, witness bool) *config.Config {
	t.Helper()
	dir := t.TempDir()
	text := "gateway: {listen: \"127.0.0.1:2222\", data_dir: ./data}\ntenants:\n  - {id: t1, name: T1}\n"
	if witness {
		text += "audit: {witness_file: ./witness/checkpoints}\n"
	}
	cfg := configText(t, dir, text)
	cfg.Gateway.Listen = "127.0.0.1:0" // any free port; the file cannot say so
	return cfg
}

// configText writes text as dir/tandem.yaml and loads it.
func configText(t *testing.T, dir, text string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "tandem.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startGateway runs the gateway until the test stops it (the returned
// function, which returns runGateway's error).
func startGateway(t *testing.T, cfg *config.Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runGateway(ctx, cfg, newLogger(io.Discard, false), nil, func(string) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("gateway did not start in time")
	}
	var once bool
	stop = func() error {
		if once {
			return nil
		}
		once = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// runOnce runs the gateway and expects it to refuse to start.
func runOnce(t *testing.T, cfg *config.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := make(chan struct{})
	err := runGateway(ctx, cfg, newLogger(io.Discard, false), nil, func(string) { close(started); cancel() })
	select {
	case <-started:
		t.Fatal("the gateway started")
	default:
	}
	return err
}

func tandem(args ...string) (int, string) {
	var out bytes.Buffer
	code := Main(args, &out, &out)
	return code, out.String()
}

func TestServeRefusesWithoutWitness(t *testing.T) {
	err := runOnce(t, gatewayConfig(t, false))
	if err == nil || !strings.Contains(err.Error(), "audit.witness_file is not set") {
		t.Fatalf("serve without a witness: %v", err)
	}
}

func TestTwoServesOnOneDataDir(t *testing.T) {
	cfg := gatewayConfig(t, true)
	startGateway(t, cfg)
	want := fmt.Sprintf("data_dir %s is in use by tandem serve (pid %d); one gateway per data directory", cfg.Gateway.DataDir, os.Getpid())
	if err := runOnce(t, cfg); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second serve: %v\nwant %q", err, want)
	}
	if code, out := tandem("audit", "recover", "-c", cfg.Path, "--reason", "x"); code == 0 || !strings.Contains(out, "in use by tandem serve") {
		t.Fatalf("recover while serving: %d %s", code, out)
	}
	if st, err := os.Stat(filepath.Join(cfg.Gateway.DataDir, lockFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", st, err)
	}
}

func TestRecoverRestartVerify(t *testing.T) {
	cfg := gatewayConfig(t, true)
	if err := startGateway(t, cfg)(); err != nil {
		t.Fatal(err)
	}
	if code, out := tandem("audit", "recover", "-c", cfg.Path, "--reason", "x"); code == 0 || !strings.Contains(out, "nothing to recover") {
		t.Fatalf("recover of a sound log: %d %s", code, out)
	}
	// Damage in the middle of records.log, which a crash cannot explain.
	recs := filepath.Join(auditDir(cfg), "records.log")
	b, err := os.ReadFile(recs)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff
	if err := os.WriteFile(recs, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = runOnce(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "tandem audit recover --config "+cfg.Path+" --reason") {
		t.Fatalf("serve on a damaged log: %v", err)
	}
	code, out := tandem("audit", "recover", "-c", cfg.Path, "--reason", "INC-1 disk error")
	if code != 0 || !strings.Contains(out, "new segment 2") {
		t.Fatalf("recover: %d %s", code, out)
	}
	if err := startGateway(t, cfg)(); err != nil {
		t.Fatalf("restart after recovery: %v", err)
	}
	code, out = tandem("audit", "verify", "-c", cfg.Path, "--pubkey", pubkeyFile(t, cfg))
	if code != 0 || !strings.Contains(out, "gap: segment 2 starts after a recovery") || !strings.Contains(out, "reason: INC-1 disk error") ||
		!strings.Contains(out, "result:          OK, with 1 recorded gap") || !strings.Contains(out, "proven: the log agrees with") {
		t.Fatalf("verify after recovery: %d\n%s", code, out)
	}
}

// pubkeyFile saves what tandem audit pubkey prints, as an auditor would.
func pubkeyFile(t *testing.T, cfg *config.Config) string {
	t.Helper()
	code, out := tandem("audit", "pubkey", "-c", cfg.Path)
	if code != 0 {
		t.Fatalf("audit pubkey: %s", out)
	}
	p := filepath.Join(t.TempDir(), "audit.pub")
	if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSigningKeyOutsideDataDir(t *testing.T) {
	cfg := gatewayConfig(t, true)
	if err := startGateway(t, cfg)(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(cfg.Audit.SigningKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key %s: %v %v", cfg.Audit.SigningKey, st, err)
	}
	// An older install's key in the log directory: refused, with the mv.
	old := filepath.Join(auditDir(cfg), "audit.key")
	if err := os.Rename(cfg.Audit.SigningKey, old); err != nil {
		t.Fatal(err)
	}
	want := "mv " + old + " " + cfg.Audit.SigningKey
	if err := runOnce(t, cfg); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("serve with the key in data_dir: %v", err)
	}
	// A key configured into data_dir through a symbolic link: refused.
	link := filepath.Join(filepath.Dir(cfg.Path), "keys-link")
	if err := os.Symlink(cfg.Gateway.DataDir, link); err != nil {
		t.Fatal(err)
	}
	cfg.Audit.SigningKey = filepath.Join(link, "k")
	if err := runOnce(t, cfg); err == nil || !strings.Contains(err.Error(), "lies inside data_dir") {
		t.Fatalf("serve with the key in data_dir through a link: %v", err)
	}
}
