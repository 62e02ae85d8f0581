// Package backup writes, checks and restores backups of a gateway's data
// directory: one age-encrypted tar stream holding a consistent snapshot of
// the state database, the audit log (every segment, with its checkpoints),
// the vault's tombstones and wrapped data keys, the other files of
// data_dir, the configuration file and, if asked, the recordings; a
// manifest with each file's size and SHA-256 and the audit log's size and
// root at the snapshot is the last entry.
//
// Data keys are in a backup only encrypted to a per-key escrow identity
// kept in a key store outside data_dir (Escrow): a key destroyed after the
// backup is destroyed there too, so restoring the backup cannot bring it
// back (docs/RETENTION.md, "Backups").
package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// Layout of the tar stream.
const (
	dataPrefix   = "data"
	configPrefix = "config"
	escrowPrefix = "escrow"
	manifestName = "manifest.json"
	// escrowExt marks a wrapped key file encrypted to its escrow identity.
	escrowExt = ".age"
)

// Options says what Create backs up and for whom.
type Options struct {
	DataDir string
	// StateFile is the state store's file (store.path); "" means
	// DataDir/state.db. It goes into the backup as state.db either way.
	StateFile  string
	ConfigFile string // copied as config/<name>; optional
	Recordings bool   // include data_dir/recordings and data_dir/sealed
	Escrow     *Escrow
	Recipients []age.Recipient // who can decrypt the backup
	Now        func() time.Time
}

// File is one file of a backup.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Key is one data key of the vault at the time of the backup. A key not
// Shredded is in the backup only encrypted to its escrow identity.
type Key struct {
	Class    vault.Class `json:"class"`
	Tenant   string      `json:"tenant"`
	Day      string      `json:"day"`
	ID       string      `json:"id"`
	Shredded bool        `json:"shredded,omitempty"`
}

// Manifest describes a backup; it is the stream's last entry.
type Manifest struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// The audit log's current segment at the snapshot: records present,
	// and the size and root of its last checkpoint.
	AuditSegments   int    `json:"audit_segments"`
	AuditRecords    uint64 `json:"audit_records"`
	AuditCheckpoint uint64 `json:"audit_checkpoint"`
	AuditRoot       string `json:"audit_root"`
	Recordings      bool   `json:"recordings"`
	Files           []File `json:"files"`
	Keys            []Key  `json:"keys"`
}

// Result is what Create wrote.
type Result struct {
	Manifest *Manifest
	Path     string
	Size     int64  // bytes of the encrypted file
	SHA256   string // of the encrypted file, hex
}

// Create writes a backup of o.DataDir to the new file out (0600), while
// the gateway runs. out must not exist; the file appears whole or not at
// all. The audit log is copied checkpoints first, then leaf hashes, then
// records (the writer appends in the opposite order), each file up to its
// size when the copy starts, so a log appended meanwhile is copied as a
// prefix that verifies; Create refuses to finish a backup whose log copy
// does not.
func Create(ctx context.Context, out string, o Options) (*Result, error) {
	if len(o.Recipients) == 0 {
		return nil, errors.New("backup: no recipients (backup.recipients) configured")
	}
	if o.Escrow == nil {
		return nil, errors.New("backup: no key store (backup.key_store) configured")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("backup: %s exists", out)
	}
	stage, err := os.MkdirTemp(filepath.Dir(out), ".tandem-backup-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(stage)
	m := &Manifest{Version: 1, Created: o.Now().UTC(), Recordings: o.Recordings}
	if err := stageData(ctx, stage, o, m); err != nil {
		return nil, err
	}
	if err := checkAuditCopy(filepath.Join(stage, dataPrefix, "audit"), m); err != nil {
		return nil, err
	}
	return writeArchive(stage, out, o.Recipients, m)
}

func stageData(ctx context.Context, stage string, o Options, m *Manifest) error {
	data := filepath.Join(stage, dataPrefix)
	if err := copyAudit(filepath.Join(o.DataDir, "audit"), filepath.Join(data, "audit")); err != nil {
		return err
	}
	db := o.StateFile
	if db == "" {
		db = filepath.Join(o.DataDir, "state.db")
	}
	if exists(db) {
		if err := store.Snapshot(ctx, db, filepath.Join(data, "state.db")); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	keys, err := stageVault(filepath.Join(o.DataDir, "vault"), stage, o.Escrow)
	if err != nil {
		return err
	}
	m.Keys = keys
	if err := copyRest(o.DataDir, data, o.Recordings); err != nil {
		return err
	}
	if o.ConfigFile != "" {
		if err := copyPrefix(o.ConfigFile, filepath.Join(stage, configPrefix, filepath.Base(o.ConfigFile))); err != nil {
			return err
		}
	}
	return nil
}

// auditRank orders the files of one log directory for copying.
func auditRank(name string) int {
	switch name {
	case "checkpoints.log":
		return 0
	case "leaves.bin":
		return 1
	case "records.log":
		return 2
	}
	return 3
}

func copyAudit(src, dst string) error {
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: audit log: %w", err)
	}
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		if filepath.Dir(a) != filepath.Dir(b) {
			return filepath.Dir(a) < filepath.Dir(b)
		}
		if ra, rb := auditRank(filepath.Base(a)), auditRank(filepath.Base(b)); ra != rb {
			return ra < rb
		}
		return a < b
	})
	for _, p := range files {
		rel, _ := filepath.Rel(src, p)
		if err := copyPrefix(p, filepath.Join(dst, rel)); err != nil {
			return err
		}
	}
	return nil
}

// stageVault copies the tombstones as they are and each live key file
// encrypted to its escrow identity.
func stageVault(dir, stage string, e *Escrow) ([]Key, error) {
	infos, err := vault.ListDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var keys []Key
	for _, k := range infos {
		key := Key{Class: k.Class, Tenant: k.Tenant, Day: k.Day, ID: k.ID}
		if !k.Shredded {
			// The identity exists before the key file is read and the
			// tombstone looked for: a Shred that wrote its tombstone
			// later deletes this identity too (its hook runs after the
			// tombstone), one that wrote it earlier is seen here.
			rcp, err := e.recipient(k.Class, k.Tenant, k.Day)
			if err != nil {
				return nil, err
			}
			raw, err := os.ReadFile(filepath.Join(dir, vault.KeyPath(k.Class, k.Tenant, k.Day)))
			switch {
			case exists(filepath.Join(dir, vault.TombstonePath(k.Class, k.Tenant, k.Day))):
				if err := e.Destroy(k.Class, k.Tenant, k.Day); err != nil {
					return nil, err
				}
				key.Shredded = true
			case err != nil:
				return nil, fmt.Errorf("backup: vault: %w", err)
			default:
				dst := filepath.Join(stage, escrowPrefix, vault.KeyPath(k.Class, k.Tenant, k.Day)+escrowExt)
				if err := writeEncrypted(dst, raw, rcp); err != nil {
					return nil, err
				}
			}
		}
		if key.Shredded || k.Shredded {
			key.Shredded = true
			tp := vault.TombstonePath(k.Class, k.Tenant, k.Day)
			if err := copyPrefix(filepath.Join(dir, tp), filepath.Join(stage, dataPrefix, "vault", tp)); err != nil {
				return nil, err
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func writeEncrypted(dst string, raw []byte, rcp age.Recipient) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	w, err := age.Encrypt(f, rcp)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return f.Close()
}

// skipRest names what copyRest leaves out of data_dir: what stageData
// copies its own way, the lock and pending-reload files of the running
// process, and (unless asked) the recordings.
func skipRest(rel string, recordings bool) bool {
	top := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
	switch top {
	case "audit", "vault", "state.db", "state.db-wal", "state.db-shm", "state.db-journal", "tandem.lock", "reload-request":
		return true
	case "recordings", "sealed":
		return !recordings
	}
	return strings.HasPrefix(filepath.Base(rel), ".")
}

func copyRest(src, dst string, recordings bool) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		if skipRest(rel, recordings) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyPrefix(p, filepath.Join(dst, rel))
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// copyPrefix copies src to the new file dst (0600) up to the size src has
// when the copy starts: for an append-only file, a consistent prefix.
func copyPrefix(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer out.Close()
	if _, err := io.CopyN(out, in, st.Size()); err != nil {
		return fmt.Errorf("backup: copy %s: %w", src, err)
	}
	return out.Close()
}

// checkAuditCopy verifies the copied log against the verifier key it
// carries (enough to show the copy is whole; `backup verify` and restore
// check it against the trusted key) and notes its size and root.
func checkAuditCopy(dir string, m *Manifest) error {
	if !exists(filepath.Join(dir, "records.log")) {
		return nil
	}
	key, err := audit.PublicKey(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	rep, err := audit.Verify(dir, key, "")
	if err != nil {
		return fmt.Errorf("backup: audit log copy: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("backup: the copy of the audit log does not verify: %s", strings.Join(rep.Problems, "; "))
	}
	m.AuditSegments, m.AuditRecords, m.AuditCheckpoint, m.AuditRoot = rep.Segments, rep.Records, rep.LastCheckpoint, rep.Root
	return nil
}

// writeArchive tars the staged tree (sorted, manifest last) into age and
// publishes it at out.
func writeArchive(stage, out string, rcps []age.Recipient, m *Manifest) (*Result, error) {
	var paths []string
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sort.Strings(paths)
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tandem-backup-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, sum)}
	enc, err := age.Encrypt(cw, rcps...)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tw := tar.NewWriter(enc)
	for _, p := range paths {
		rel, _ := filepath.Rel(stage, p)
		f, err := addFile(tw, filepath.ToSlash(rel), p)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(mj)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if _, err := tw.Write(mj); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	// A link, not a rename: it fails rather than replace a file that
	// appeared at out meanwhile.
	if err := os.Link(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := vault.SyncDir(filepath.Dir(out)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &Result{Manifest: m, Path: out, Size: cw.n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

func addFile(tw *tar.Writer, name, path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(tw, h), f, st.Size()); err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", name, err)
	}
	return File{Path: name, Size: st.Size(), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
