package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"tandem.dev/tandem/internal/backup"

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
func newRecorder(cfg *config.Config, v *record.Vault, st *store.Store) (*gateway.Recorder, error) {
	s, err := recordingStorage(cfg, st, v)
	if err != nil {
		return nil, err
	}
	return &gateway.Recorder{Vault: v, Dir: recordingsDir(cfg), StreamCap: cfg.Recording.StreamCap, Storage: s}, nil
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
