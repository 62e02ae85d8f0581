package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// TestKEKRotate: tandem kek rotate is refused while a gateway holds the
// data directory, and otherwise moves a recording key and an audit key to
// the new KEK, unchanged, and queues kek.rotated for the gateway.
func TestKEKRotate(t *testing.T) {
	cfg := gatewayConfig(t, false)
	v, err := openVault(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	recID, recKey, err := v.Key(vault.Content, "t1", now)
	if err != nil {
		t.Fatal(err)
	}
	logID, logKey, err := v.Key(vault.Admin, "t1", now)
	if err != nil {
		t.Fatal(err)
	}
	newKEK := filepath.Join(t.TempDir(), "kek-new")

	release, err := lockDataDir(cfg.Gateway.DataDir, "tandem serve")
	if err != nil {
		t.Fatal(err)
	}
	out := runTandem(t, 1, "kek", "rotate", "--new", newKEK, "-c", cfg.Path)
	release()
	if !strings.Contains(out, "stop the gateway first") || !strings.Contains(out, "tandem serve") {
		t.Fatalf("rotate beside a running gateway: %s", out)
	}
	runTandem(t, 1, "kek", "rotate", "--new", cfg.Recording.KEKFile, "-c", cfg.Path)

	out = runTandem(t, 0, "kek", "rotate", "--new", newKEK, "-c", cfg.Path)
	for _, want := range []string{"2 data keys wrapped with " + newKEK, "recording.kek_file: " + newKEK, "destroy " + cfg.Recording.KEKFile} {
		if !strings.Contains(out, want) {
			t.Fatalf("rotate output lacks %q:\n%s", want, out)
		}
	}
	// Run again (as after an interruption): nothing left to move.
	if out := runTandem(t, 0, "kek", "rotate", "--new", newKEK, "-c", cfg.Path); !strings.Contains(out, "0 moved now, 2 by an earlier run") {
		t.Fatalf("second run: %s", out)
	}

	nk, err := vault.FileKEK(newKEK)
	if err != nil {
		t.Fatal(err)
	}
	nv, err := vault.Open(vaultDir(cfg), nk)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := vault.Open(vaultDir(cfg), v.KEK())
	if err != nil {
		t.Fatal(err)
	}
	day := vault.Day(now)
	for _, k := range []struct {
		c   vault.Class
		id  string
		key []byte
	}{{vault.Content, recID, recKey}, {vault.Admin, logID, logKey}} {
		got, err := nv.KeyByID(k.c, "t1", day, k.id)
		if err != nil || !bytes.Equal(got, k.key) {
			t.Fatalf("%s key with the new KEK: %v", k.c, err)
		}
		if _, err := ov.KeyByID(k.c, "t1", day, k.id); err == nil {
			t.Fatalf("%s key still opens with the old KEK", k.c)
		}
	}

	_, st, err := openStore(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pending, err := st.PendingAudit(context.Background())
	if err != nil || len(pending) != 2 {
		t.Fatalf("outbox: %d entries, %v", len(pending), err)
	}
	var e audit.Event
	if err := json.Unmarshal(pending[0].Event, &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != audit.KEKRotated || e.Attrs[audit.KeyOldKey] != cfg.Recording.KEKFile || e.Attrs[audit.KeyNewKey] != newKEK || e.Attrs[audit.KeyRewrapped] != "2" || e.Attrs[audit.KeyActor] == "" {
		t.Fatalf("queued event: %+v", e)
	}
}
