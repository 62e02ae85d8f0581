package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"filippo.io/age/armor"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
)

// The audit log's trust anchor lies outside the gateway's data directory:
// the checkpoint signing key (audit.signing_key) and at least one witness
// of every checkpoint (audit.witness_file). Whoever can rewrite data_dir
// can then neither re-sign the log nor rewrite what the witness saw.

// requireWitness refuses to serve without a witness.
func requireWitness(cfg *config.Config) error {
	if cfg.Audit.WitnessFile == "" {
		return fmt.Errorf("audit.witness_file is not set in %s: without a copy of every checkpoint outside data_dir, a rewrite of the audit log by someone holding the signing key cannot be detected; set it to a file on another mount (audit: {witness_file: /mnt/witness/tandem.checkpoints})", configName(cfg))
	}
	return nil
}

// warnSameDevice says when the witness shares a file system with data_dir:
// allowed, but one disk's loss or one root's rewrite takes both.
func warnSameDevice(cfg *config.Config, log *slog.Logger) {
	if dev(cfg.Gateway.DataDir) != 0 && dev(cfg.Gateway.DataDir) == dev(filepath.Dir(cfg.Audit.WitnessFile)) {
		log.Warn("the audit witness file is on the same file system as data_dir: whoever can rewrite one can likely rewrite the other; put it on another mount or host",
			"witness_file", cfg.Audit.WitnessFile, "data_dir", cfg.Gateway.DataDir)
	}
}

// dev is the device of path, or of its nearest existing parent: the
// witness directory may not exist before the first start.
func dev(path string) uint64 {
	st, err := os.Stat(path)
	for err != nil && filepath.Dir(path) != path {
		path = filepath.Dir(path)
		st, err = os.Stat(path)
	}
	if err != nil {
		return 0
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev)
	}
	return 0
}

// openSigningKey reads the checkpoint signing key, creating it on first
// start. It refuses a key inside data_dir (also through a symbolic link)
// and an install whose key still lies in the log directory, telling how
// to move it: a key is never moved, replaced or created over an old one
// silently.
func openSigningKey(cfg *config.Config, create bool) (*audit.SigningKey, error) {
	path := cfg.Audit.SigningKey
	if config.InsideDataDir(cfg.Gateway.DataDir, path) {
		return nil, fmt.Errorf("audit.signing_key %s lies inside data_dir %s; keep it where whoever can rewrite the data directory cannot read it", path, cfg.Gateway.DataDir)
	}
	if err := checkLegacyKey(cfg); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && create {
		if err := audit.CreateSigningKey(path, cfg.Audit.Origin); err != nil {
			return nil, err
		}
	}
	return audit.LoadSigningKey(path, ageDecrypter(cfg))
}

// checkLegacyKey refuses a signing key left in data_dir/audit by an older
// version.
func checkLegacyKey(cfg *config.Config) error {
	old := audit.LegacyKeyFile(auditDir(cfg))
	if _, err := os.Lstat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(cfg.Audit.SigningKey); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the audit signing key is still in the data directory (%s), where whoever can rewrite the log can re-sign it; move it to audit.signing_key: mv %s %s", old, old, cfg.Audit.SigningKey)
	}
	return fmt.Errorf("an old audit signing key is still in the data directory (%s) besides audit.signing_key %s; if they are the same key, remove the old copy (shred -u %s), else configure the one that signed the log", old, cfg.Audit.SigningKey, old)
}

// ageDecrypter opens an age-encrypted signing key with the configured age
// identity (recording.age_identity); nil when none is configured.
func ageDecrypter(cfg *config.Config) func([]byte) ([]byte, error) {
	if cfg.Recording.AgeIdentity == "" {
		return nil
	}
	return func(b []byte) ([]byte, error) {
		if bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN")) {
			var err error
			if b, err = io.ReadAll(armor.NewReader(bytes.NewReader(b))); err != nil {
				return nil, fmt.Errorf("age armor: %w", err)
			}
		}
		kek, err := record.AgeKEK(cfg.Recording.AgeIdentity)
		if err != nil {
			return nil, err
		}
		return kek.Unwrap(b)
	}
}

func configName(cfg *config.Config) string {
	if cfg.Path == "" {
		return "the configuration"
	}
	return cfg.Path
}
