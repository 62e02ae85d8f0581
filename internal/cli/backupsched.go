package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/backup"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/monitoring"
)

// Scheduled backups (backup.every, keep, to): serve writes one whenever
// the newest in backup.to is older than every, checks each while writing
// (backup.Create verifies its audit copy), audits it as backup.created
// and keeps the newest backup.keep. Their names sort by time.
const (
	backupPrefix = "tandem-"
	backupSuffix = ".tar.age"
	// backupPoll is how often the schedule looks whether one is due: an
	// hour late at most for a daily backup, and no goroutine busy.
	backupPoll = 5 * time.Minute
)

// backupSchedule is serve's backup loop and what readiness reads of it.
type backupSchedule struct {
	cfg  *config.Config
	sink audit.Sink
	log  *slog.Logger
	last atomic.Int64 // unix seconds of the newest good backup; 0 none
}

func newBackupSchedule(cfg *config.Config, sink audit.Sink, log *slog.Logger) *backupSchedule {
	if cfg.Backup.Every.Duration <= 0 || cfg.Backup.To == "" {
		return nil
	}
	s := &backupSchedule{cfg: cfg, sink: sink, log: log}
	if t, ok := newestBackup(cfg.Backup.To); ok {
		s.last.Store(t.Unix())
	}
	return s
}

// run takes a backup whenever one is due, until ctx ends.
func (s *backupSchedule) run(ctx context.Context) {
	t := time.NewTicker(backupPoll)
	defer t.Stop()
	for {
		if s.due(clock.Now()) {
			if err := s.once(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("scheduled backup failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *backupSchedule) due(now time.Time) bool {
	last := s.last.Load()
	return last == 0 || now.Sub(time.Unix(last, 0)) >= s.cfg.Backup.Every.Duration
}

// once writes, audits and prunes one backup.
func (s *backupSchedule) once(ctx context.Context) error {
	o, err := backupOptions(s.cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.Backup.To, 0o700); err != nil {
		return err
	}
	now := clock.Now().UTC()
	out := filepath.Join(s.cfg.Backup.To, backupPrefix+now.Format("20060102T150405Z")+backupSuffix)
	res, err := backup.Create(ctx, out, o)
	if err != nil {
		return err
	}
	audit.BestEffort(ctx, s.sink, s.log, backupEvent(res, "schedule")) // the backup exists either way
	s.last.Store(now.Unix())
	s.log.Info("backup written", "path", res.Path, "bytes", res.Size)
	return pruneBackups(s.cfg.Backup.To, s.cfg.Backup.Keep)
}

func backupEvent(res *backup.Result, trigger string) audit.Event {
	return audit.BackupCreatedEvent{Trigger: trigger, Path: res.Path, Size: res.Size, SHA256: res.SHA256,
		Files: len(res.Manifest.Files), AuditRecords: res.Manifest.AuditRecords}.Event()
}

// check is the readiness condition: the newest good backup is no older
// than every and a half (a missed backup raises the alarm, M21).
func (s *backupSchedule) check() monitoring.Check {
	return monitoring.Check{Name: "backup", Run: func(context.Context) error {
		last := s.last.Load()
		limit := s.cfg.Backup.Every.Duration * 3 / 2
		switch {
		case last == 0:
			return fmt.Errorf("no backup yet in %s", s.cfg.Backup.To)
		case clock.Now().Sub(time.Unix(last, 0)) > limit:
			return fmt.Errorf("the newest backup is from %s, older than backup.every and a half", time.Unix(last, 0).UTC().Format(time.RFC3339))
		}
		return nil
	}}
}

// backups lists the scheduled backups in dir, oldest first.
func backups(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && strings.HasSuffix(n, backupSuffix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func newestBackup(dir string) (time.Time, bool) {
	list := backups(dir)
	if len(list) == 0 {
		return time.Time{}, false
	}
	n := strings.TrimSuffix(strings.TrimPrefix(list[len(list)-1], backupPrefix), backupSuffix)
	t, err := time.Parse("20060102T150405Z", n)
	return t, err == nil
}

// pruneBackups removes all but the keep newest scheduled backups.
func pruneBackups(dir string, keep int) error {
	list := backups(dir)
	for len(list) > keep && keep > 0 {
		if err := os.Remove(filepath.Join(dir, list[0])); err != nil {
			return err
		}
		list = list[1:]
	}
	return nil
}
