package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// ErrDamaged: the backup does not decrypt to a whole archive that agrees
// with its manifest (tampered, truncated, or not a backup).
var ErrDamaged = errors.New("backup damaged")

// extract decrypts the backup r into the empty directory dst (files 0600,
// directories 0700) and checks every file against the manifest, which
// must be the last entry. age authenticates every chunk and the end of
// the stream, so a changed or truncated file fails here.
func extract(r io.Reader, ids []age.Identity, dst string) (*Manifest, error) {
	dec, err := age.Decrypt(r, ids...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	tr := tar.NewReader(dec)
	got := map[string]File{}
	var m *Manifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
		}
		if m != nil {
			return nil, fmt.Errorf("%w: an entry (%q) follows the manifest", ErrDamaged, h.Name)
		}
		if h.Name == manifestName {
			var mm Manifest
			if err := json.NewDecoder(io.LimitReader(tr, 64<<20)).Decode(&mm); err != nil {
				return nil, fmt.Errorf("%w: manifest: %w", ErrDamaged, err)
			}
			m = &mm
			continue
		}
		clean := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || clean != h.Name || path.IsAbs(clean) || strings.HasPrefix(clean, "../") || clean == ".." {
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrDamaged, h.Name)
		}
		f, err := writeEntry(filepath.Join(dst, filepath.FromSlash(clean)), tr)
		if err != nil {
			return nil, err
		}
		f.Path = clean
		got[clean] = f
	}
	// Drain age to its authenticated end: a truncated file fails here even
	// if the tar stream looked complete.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: no manifest (truncated?)", ErrDamaged)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("%w: manifest version %d unknown", ErrDamaged, m.Version)
	}
	for _, want := range m.Files {
		g, ok := got[want.Path]
		if !ok {
			return nil, fmt.Errorf("%w: %s is missing", ErrDamaged, want.Path)
		}
		if g != want {
			return nil, fmt.Errorf("%w: %s: size or SHA-256 differs from the manifest", ErrDamaged, want.Path)
		}
		delete(got, want.Path)
	}
	for p := range got {
		return nil, fmt.Errorf("%w: %s is not in the manifest", ErrDamaged, p)
	}
	return m, nil
}

func writeEntry(dst string, r io.Reader) (File, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if err := f.Sync(); err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, f.Close()
}

// Check is the result of Verify.
type Check struct {
	Manifest *Manifest
	Audit    *audit.Report // nil when the backup holds no audit log
}

// Verify checks the backup at file without restoring it: it decrypts it
// into a temporary directory, checks every file against the manifest, and
// verifies the contained audit log against verifierKey (kept outside the
// backup) and that it is the log the manifest describes.
func Verify(file string, ids []age.Identity, verifierKey string) (*Check, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "tandem-backup-verify-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := extract(f, ids, tmp)
	if err != nil {
		return nil, err
	}
	c := &Check{Manifest: m}
	c.Audit, err = checkAudit(filepath.Join(tmp, dataPrefix, "audit"), verifierKey, "", m)
	return c, err
}

// checkAudit verifies the log in dir (a copy taken at the backup) and
// that it matches the manifest.
func checkAudit(dir, verifierKey, witness string, m *Manifest) (*audit.Report, error) {
	if !exists(filepath.Join(dir, "records.log")) {
		if m.AuditRecords != 0 {
			return nil, fmt.Errorf("%w: the audit log is missing", ErrDamaged)
		}
		return nil, nil
	}
	rep, err := audit.VerifyPrefix(dir, verifierKey, witness)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if rep.OK() && (rep.Records != m.AuditRecords || rep.LastCheckpoint != m.AuditCheckpoint || rep.Root != m.AuditRoot) {
		return rep, fmt.Errorf("%w: the audit log (%d records, checkpoint %d) is not the one the manifest names (%d records, checkpoint %d)", ErrDamaged, rep.Records, rep.LastCheckpoint, m.AuditRecords, m.AuditCheckpoint)
	}
	return rep, nil
}

// RestoreOptions says where and how to restore.
type RestoreOptions struct {
	To          string // created; must not exist or be empty
	Identities  []age.Identity
	Escrow      *Escrow // the live key store, to unwrap the data keys
	LiveVault   string  // optional: the live vault, whose tombstones are applied too
	VerifierKey string
	WitnessFile string // optional; without it nothing shows whether the backup is behind
}

// Restored is the result of Restore.
type Restored struct {
	Manifest *Manifest
	Audit    *audit.Report
	Keys     int // data keys restored
	// Shredded lists the keys the backup still had but that were
	// destroyed since: restored as tombstones.
	Shredded []Key
	// Behind: the witness knows the log beyond the backup's end.
	Behind       bool
	WitnessSize  uint64 // largest witnessed size of the backup's last segment, if Behind
	SegmentsGone int    // witnessed segments newer than the backup
}

// Restore writes the backup at file into o.To: data_dir as o.To/data,
// the configuration as o.To/config. Each data key comes back only if its
// escrow identity still exists in o.Escrow; a key destroyed since the
// backup becomes a tombstone. Then the restored log is verified against
// the witness: a backup older than the latest witnessed checkpoint is
// reported as Behind, never as current. An error means the restore or
// the log's check failed; Restored says how far it got.
func Restore(file string, o RestoreOptions) (*Restored, error) {
	if o.Escrow == nil {
		return nil, errors.New("backup: restore needs the key store (backup.key_store)")
	}
	if entries, err := os.ReadDir(o.To); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("backup: %s is not empty", o.To)
	}
	if err := os.MkdirAll(o.To, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	m, err := extract(f, o.Identities, o.To)
	if err != nil {
		return nil, err
	}
	res := &Restored{Manifest: m}
	vdir := filepath.Join(o.To, dataPrefix, "vault")
	if err := restoreKeys(o, vdir, res); err != nil {
		return res, err
	}
	if err := os.RemoveAll(filepath.Join(o.To, escrowPrefix)); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if o.LiveVault != "" {
		live, err := vault.ListDir(o.LiveVault)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("backup: live vault: %w", err)
		}
		for _, k := range live {
			if k.Shredded {
				if err := vault.WriteTombstone(vdir, k.Class, k.Tenant, k.Day, k.ID); err != nil {
					return res, err
				}
			}
		}
	}
	rep, err := checkAudit(filepath.Join(o.To, dataPrefix, "audit"), o.VerifierKey, o.WitnessFile, m)
	res.Audit = rep
	if err != nil {
		return res, err
	}
	if rep != nil && (rep.WitnessAhead > 0 || rep.WitnessSegmentsAhead > 0) {
		res.Behind, res.WitnessSize, res.SegmentsGone = true, rep.WitnessAhead, rep.WitnessSegmentsAhead
	}
	return res, nil
}

func restoreKeys(o RestoreOptions, vdir string, res *Restored) error {
	for _, k := range res.Manifest.Keys {
		if k.Shredded {
			continue
		}
		src := filepath.Join(o.To, escrowPrefix, vault.KeyPath(k.Class, k.Tenant, k.Day)+escrowExt)
		id, err := o.Escrow.identity(k.Class, k.Tenant, k.Day)
		if errors.Is(err, fs.ErrNotExist) {
			// Destroyed after the backup (its escrow identity went with
			// it): the day stays shredded.
			if err := vault.WriteTombstone(vdir, k.Class, k.Tenant, k.Day, k.ID); err != nil {
				return err
			}
			res.Shredded = append(res.Shredded, k)
			continue
		}
		if err != nil {
			return err
		}
		raw, err := decryptFile(src, id)
		if err != nil {
			return fmt.Errorf("backup: data key %s %s/%s: %w", k.Class, k.Tenant, k.Day, err)
		}
		dst := filepath.Join(vdir, vault.KeyPath(k.Class, k.Tenant, k.Day))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if err := os.WriteFile(dst, raw, 0o600); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		res.Keys++
	}
	return nil
}

func decryptFile(p string, id age.Identity) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, 1<<20))
}
