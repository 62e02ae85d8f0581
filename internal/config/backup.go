package config

import (
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// DefaultBackupKeep is how many scheduled backups are kept.
const DefaultBackupKeep = 7

// Backup configures `tandem backup` and the backups serve takes on its
// own (docs/BACKUP.md).
type Backup struct {
	// Recipients are the age recipients (age1…) a backup is encrypted
	// to; only their identities can read or restore it.
	Recipients []string `yaml:"recipients"`
	// KeyStore is the directory of the per-key escrow identities that a
	// backup's data keys are encrypted to. It must lie outside data_dir:
	// destroying a key destroys its escrow identity, which is what keeps
	// a shredded key out of every older backup.
	KeyStore string `yaml:"key_store"`
	// Every, when set, makes serve take a backup at this interval into
	// To, keeping the Keep newest.
	Every Duration `yaml:"every"`
	Keep  int      `yaml:"keep"`
	To    string   `yaml:"to"`
}

// ParsedRecipients returns Recipients as age recipients.
func (b Backup) ParsedRecipients() ([]age.Recipient, error) {
	return age.ParseRecipients(strings.NewReader(strings.Join(b.Recipients, "\n")))
}

func (b *Backup) fillDefaults(cfgPath string) {
	if b.Keep == 0 {
		b.Keep = DefaultBackupKeep
	}
	for _, f := range []*string{&b.KeyStore, &b.To} {
		if *f != "" && cfgPath != "" && !filepath.IsAbs(*f) {
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), *f)); err == nil {
				*f = abs
			}
		}
	}
}

// validateBackup keeps the key store and the backups out of data_dir: a
// key store inside it is copied into every backup, and a backup inside
// it into the next.
func validateBackup(c *Config, pos *positions, r *report) {
	b := c.Backup
	for i, s := range b.Recipients {
		if _, err := age.ParseRecipients(strings.NewReader(s)); err != nil {
			r.add(pos.line("backup", "recipients", i), "backup.recipients: %q is not an age recipient: %v", s, err)
		}
	}
	if b.KeyStore != "" && InsideDataDir(c.Gateway.DataDir, b.KeyStore) {
		r.add(pos.line("backup", "key_store"), "backup.key_store %s lies inside data_dir %s; keep it where a copy of the data directory does not reach", b.KeyStore, c.Gateway.DataDir)
	}
	if b.To != "" && InsideDataDir(c.Gateway.DataDir, b.To) {
		r.add(pos.line("backup", "to"), "backup.to %s lies inside data_dir %s; every backup would hold the ones before it", b.To, c.Gateway.DataDir)
	}
	if b.Keep < 1 {
		r.add(pos.line("backup", "keep"), "backup.keep must be at least 1")
	}
	if b.Every.Duration != 0 {
		checkPositive(r, pos, b.Every, "backup", "every")
		if b.To == "" || len(b.Recipients) == 0 || b.KeyStore == "" {
			r.add(pos.line("backup", "every"), "backup.every needs backup.to, backup.recipients and backup.key_store")
		}
	}
}
