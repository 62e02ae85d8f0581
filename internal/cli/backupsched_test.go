package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"tandem.dev/tandem/internal/config"
)

// TestScheduledBackup: serve writes a backup at start when none is recent,
// audits it as backup.created, and the backup verifies; readiness fails
// when the newest backup is too old; pruning keeps the newest.
func TestScheduledBackup(t *testing.T) {
	cfg := gatewayConfig(t, true)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "backup-identity")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "backups")
	cfg.Backup = config.Backup{Recipients: []string{id.Recipient().String()}, KeyStore: filepath.Join(t.TempDir(), "escrow"),
		Every: config.Duration{Duration: time.Hour}, Keep: 2, To: to}
	stop := startGateway(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for len(backups(to)) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	list := backups(to)
	if len(list) != 1 {
		t.Fatalf("backups after start: %v", list)
	}
	if code, out := tandem("backup", "verify", filepath.Join(to, list[0]), "--identity", idFile, "--config", cfg.Path); code != 0 {
		t.Fatalf("backup verify: %d\n%s", code, out)
	}
	code, out := tandem("audit", "show", "--config", cfg.Path, "--type", "backup.created")
	if code != 0 || !strings.Contains(out, "backup.created") || !strings.Contains(out, `trigger="schedule"`) {
		t.Fatalf("audit show: %d\n%s", code, out)
	}
	// After a signing key rotation the backup, which holds no hand-over
	// to the new key, still verifies (from the log's first key).
	if code, out := tandem("audit", "rotate-key", "--by", "alice", "--config", cfg.Path); code != 0 {
		t.Fatalf("rotate-key: %d\n%s", code, out)
	}
	if code, out := tandem("backup", "verify", filepath.Join(to, list[0]), "--identity", idFile, "--config", cfg.Path); code != 0 {
		t.Fatalf("backup verify after a key rotation: %d\n%s", code, out)
	}

	s := newBackupSchedule(cfg, nil, nil)
	if err := s.check().Run(context.Background()); err != nil {
		t.Fatalf("fresh backup: %v", err)
	}
	s.last.Store(time.Now().Add(-2 * time.Hour).Unix())
	if err := s.check().Run(context.Background()); err == nil || !s.due(time.Now()) {
		t.Fatalf("a backup two hours old with every=1h: ready (%v), due %v", err, s.due(time.Now()))
	}
	for _, n := range []string{"tandem-20200101T000000Z.tar.age", "tandem-20210101T000000Z.tar.age"} {
		if err := os.WriteFile(filepath.Join(to, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneBackups(to, 2); err != nil {
		t.Fatal(err)
	}
	if got := backups(to); len(got) != 2 || got[1] != list[0] || got[0] != "tandem-20210101T000000Z.tar.age" {
		t.Fatalf("after pruning: %v", got)
	}
}
