package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
)

// strictModes refuses to serve with a data directory or key files that
// others could read, as sshd's StrictModes does (M25): data_dir and its
// keys/, audit/, vault/ (with vault/keys/) and recordings/ directories
// must not be group or world accessible; the host key, both CAs, the
// audit signing key and the key-encryption key (or age identity) must be
// regular files, not symbolic links, mode 0600 or stricter and owned by
// the user running the gateway. What does not exist yet is skipped: the
// gateway creates it with the right modes. The first problem is returned,
// naming the path and the command that fixes it.
func strictModes(cfg *config.Config) error {
	data := cfg.Gateway.DataDir
	dirs := []struct{ what, path string }{
		{"data_dir", data},
		{"key directory", keyDir(cfg)},
		{"audit directory", auditDir(cfg)},
		{"vault directory", vaultDir(cfg)},
		{"vault key directory", filepath.Join(vaultDir(cfg), "keys")},
		{"recordings directory", filepath.Join(recordingsDir(cfg), "recordings")},
	}
	for _, d := range dirs {
		if err := checkPrivateDir(d.what, d.path); err != nil {
			return err
		}
	}
	files := []struct{ what, path string }{
		{"host key", filepath.Join(keyDir(cfg), ca.HostKeyFile)},
		{"user CA key", filepath.Join(keyDir(cfg), ca.UserCAFile)},
		{"host CA key", filepath.Join(keyDir(cfg), ca.HostCAFile)},
		{"audit signing key (audit.signing_key)", cfg.Audit.SigningKey},
	}
	if cfg.Recording.AgeIdentity != "" {
		files = append(files, struct{ what, path string }{"age identity (recording.age_identity)", cfg.Recording.AgeIdentity})
	} else if cfg.Recording.KEKFile != "" {
		files = append(files, struct{ what, path string }{"key-encryption key (recording.kek_file)", cfg.Recording.KEKFile})
	}
	if cfg.Cluster.LinkKey != "" {
		files = append(files, struct{ what, path string }{"link key (cluster.link_key)", cfg.Cluster.LinkKey})
	}
	for _, f := range files {
		if err := checkKeyFile(f.what, f.path); err != nil {
			return err
		}
	}
	return nil
}

// checkPrivateDir refuses an existing directory that is group or world
// accessible or owned by another user (root excepted). A symbolic link to
// a directory is followed: data_dir on another disk is common.
func checkPrivateDir(what, path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s %s is not a directory", what, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is mode %04o, open to other users; run: chmod 700 %s", what, path, perm, path)
	}
	if uid, ok := owner(st); ok && uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%s %s is owned by uid %d, not by the user running the gateway (uid %d); run: chown %d %s", what, path, uid, os.Geteuid(), os.Geteuid(), path)
	}
	return nil
}

// checkKeyFile refuses an existing key file that is a symbolic link, not
// a regular file, readable or writable by group or others, or owned by
// another user.
func checkKeyFile(what, path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s %s is a symbolic link; a key file must be a regular file: replace the link with the file itself (mode 0600)", what, path)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is mode %04o, open to other users; run: chmod 600 %s", what, path, perm, path)
	}
	if uid, ok := owner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("%s %s is owned by uid %d, not by the user running the gateway (uid %d); run: chown %d %s", what, path, uid, os.Geteuid(), os.Geteuid(), path)
	}
	return nil
}
