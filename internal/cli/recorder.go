package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"tandem.dev/tandem/internal/backup"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/monitoring"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
)

// recordingsDir is the root the record package lays its recordings/ tree in.
func recordingsDir(cfg *config.Config) string { return cfg.Gateway.DataDir }
func vaultDir(cfg *config.Config) string      { return filepath.Join(cfg.Gateway.DataDir, "vault") }

// openKEK loads the key-encryption key, creating a key file on first use.
// An age identity must exist: the operator made it for a reason.
func openKEK(cfg *config.Config, create bool) (record.KEK, error) {
	rc := cfg.Recording
	if rc.AgeIdentity != "" {
		return record.AgeKEK(rc.AgeIdentity)
	}
	if _, err := os.Stat(rc.KEKFile); errors.Is(err, fs.ErrNotExist) && create {
		if err := record.GenerateFileKEK(rc.KEKFile); err != nil {
			return nil, fmt.Errorf("create key-encryption key: %w", err)
		}
	}
	kek, err := record.FileKEK(rc.KEKFile)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return kek, nil
}

func openVault(cfg *config.Config, create bool) (*record.Vault, error) {
	kek, err := openKEK(cfg, create)
	if err != nil {
		return nil, err
	}
	v, err := record.OpenVault(vaultDir(cfg), kek)
	if err != nil || cfg.Backup.KeyStore == "" {
		return v, err
	}
	// Every process that can shred destroys the key's escrow copy with
	// it, so that no backup can bring the key back (internal/backup).
	e, err := backup.OpenEscrow(cfg.Backup.KeyStore)
	if err != nil {
		return nil, err
	}
	v.SetShredHook(e.ShredHook())
	return v, nil
}

// newRecorder records into the vault the audit log encrypts with too: one
// key store, one KEK, for every retention class; into the data directory,
// or into the storage the cluster shares.
//
// With shared storage the recordings go through a spool in data_dir
// (recording-spool), from which the returned uploader, which serve runs,
// moves them to the database: a recording never waits for PostgreSQL, and
// a restart of it ends no session. upload is nil without shared storage.
func newRecorder(cfg *config.Config, v *record.Vault, st *store.Store) (rec *gateway.Recorder, upload *record.SQL, err error) {
	s, err := recordingStorage(cfg, st, v)
	if err != nil {
		return nil, nil, err
	}
	rec = &gateway.Recorder{Vault: v, Dir: recordingsDir(cfg), StreamCap: cfg.Recording.StreamCap}
	if sq, ok := s.(*record.SQL); ok {
		if err := sq.CheckKEK(v.KEK()); err != nil {
			return nil, nil, otherKEK(cfg, err)
		}
		if upload, err = sq.WithSpool(filepath.Join(cfg.Gateway.DataDir, "recording-spool")); err != nil {
			return nil, nil, err
		}
		rec.Storage = upload
	}
	return rec, upload, nil
}

// otherKEK explains a failed KEK check: which key this node used and
// what the operator does.
func otherKEK(cfg *config.Config, err error) error {
	if !errors.Is(err, record.ErrOtherKEK) {
		return fmt.Errorf("checking the key-encryption key against the cluster's recordings: %w", err)
	}
	setting := "recording.kek_file " + cfg.Recording.KEKFile
	if cfg.Recording.AgeIdentity != "" {
		setting = "recording.age_identity " + cfg.Recording.AgeIdentity
	}
	return fmt.Errorf("%s: %w. Every gateway with recording.storage: store needs the same KEK: "+
		"copy the file from a node that runs (mode 0600) and point the setting at it; if another node "+
		"rotated the KEK, copy the new one here and run `tandem kek rotate --new FILE` before starting (docs/HA.md)", setting, err)
}

// recordingStorage is where cfg keeps recordings: nil for the data
// directory, or the state store's PostgreSQL database (recording.storage:
// store). With shared storage every shred of v (a retention run) also
// destroys the copies of the key kept there for the other gateways; v may
// be nil for a process that only reads.
func recordingStorage(cfg *config.Config, st *store.Store, v *record.Vault) (record.Storage, error) {
	if !cfg.RecordingsShared() {
		return nil, nil
	}
	db, err := st.RecordingDB()
	if err != nil {
		return nil, fmt.Errorf("recording.storage: %w", err)
	}
	s := record.NewSQL(db)
	if v != nil {
		v.AddShredHook(s.ShredKeys)
	}
	return s, nil
}

// spoolLag is how long recordings may wait in the spool before /readyz
// warns: the shared storage has been away that long, and other nodes do
// not see them yet.
const spoolLag = time.Minute

func spoolCheck(s *record.SQL) monitoring.Check {
	return monitoring.Check{Name: "recording-spool", Warn: true, Run: func(context.Context) error {
		if n, oldest := s.Spooled(); n > 0 && clock.Now().Sub(oldest) > spoolLag {
			return fmt.Errorf("%d recording(s) wait in the spool for the shared storage since %s", n, oldest.UTC().Format(time.RFC3339))
		}
		return nil
	}}
}

// spoolWarner logs the uploader's failures at most every half minute: it
// retries every second while the database is away.
func spoolWarner(log *slog.Logger) func(error) {
	var last time.Time
	return func(err error) {
		if now := time.Now(); now.Sub(last) >= 30*time.Second {
			last = now
			log.Warn("recordings wait in the spool until the shared storage takes them; sessions go on", "err", err)
		}
	}
}
