package record

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tandem.dev/tandem/internal/vault"
)

// Storage is where recordings and their sealed keystrokes are kept: the
// data directory (Local, the default) or shared storage that every gateway
// of a cluster reads (SQL, recording.storage: store). It stores bytes only:
// the header line and sealed chunks exactly as the Writer makes them, so
// encryption, chunk sealing and the hashes in session.end are the same
// wherever the bytes go, and storage never sees plaintext.
type Storage interface {
	// Create starts a new, empty object; an existing one is never
	// replaced (the error wraps fs.ErrExist).
	Create(ref Ref) (Appender, error)
	// Open opens an object for reading (fs.ErrNotExist if there is none).
	Open(ref Ref) (Object, error)
	// List returns the recordings (not sealed keystrokes) stored for
	// tenant, oldest day first. Objects it cannot make sense of are left
	// out and reported in the error; the others are still returned.
	List(tenant string) ([]Ref, error)
	// Name says where the object is, for messages and audit events.
	Name(ref Ref) string
}

// Appender takes one object's bytes in order.
type Appender interface {
	// Write takes the header line or one whole chunk frame. A storage
	// may hold it until Sync.
	Write(p []byte) (int, error)
	// Sync makes everything written so far durable: what a crash of the
	// process or the machine leaves readable.
	Sync() error
	// Close ends the object. Bytes written after the last Sync are kept
	// (a file holds them; a database stores them), without waiting for the
	// disk as Sync does.
	Close() error
}

// Object is a stored object being read. A recording still being written
// is read as far as it was when opened.
type Object interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Ref names one stored object: the recording or the sealed keystrokes of
// one session.
type Ref struct {
	Sealed  bool
	Tenant  string
	Day     string // YYYY-MM-DD, UTC
	Session string
}

func (r Ref) check() error {
	if err := checkName("tenant", r.Tenant); err != nil {
		return err
	}
	if err := checkName("session id", r.Session); err != nil {
		return err
	}
	if _, err := vault.ParseDay(r.Day); err != nil {
		return fmt.Errorf("day %q: %w", r.Day, err)
	}
	return nil
}

// rel is the object's place under a data directory, which shared storage
// names its objects by too.
func (r Ref) rel() string {
	if r.Sealed {
		return filepath.Join(sealedDir, r.Tenant, r.Day, r.Session+sealedExt)
	}
	return filepath.Join(recordingsDir, r.Tenant, r.Day, r.Session+fileExt)
}

// Ref returns the reference of the recording h describes.
func (h Header) Ref() Ref { return Ref{Tenant: h.Tenant, Day: h.Day, Session: h.Session} }

// Local keeps recordings as files under the data directory dir:
// <dir>/recordings/<tenant>/<day>/<session>.rec and
// <dir>/sealed/<tenant>/<day>/<session>.sealed, directories 0700, files
// 0600.
func Local(dir string) Storage { return localStorage{dir: dir} }

type localStorage struct{ dir string }

func (s localStorage) Name(ref Ref) string { return filepath.Join(s.dir, ref.rel()) }

func (s localStorage) Create(ref Ref) (Appender, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	path := s.Name(ref)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &localAppender{f: f}, nil
}

// localAppender writes at once (a process crash loses nothing written)
// and fsyncs on Sync; the first Sync also makes the new file's directory
// entry durable.
type localAppender struct {
	f         *os.File
	dirSynced bool
}

func (a *localAppender) Write(p []byte) (int, error) { return a.f.Write(p) }

func (a *localAppender) Sync() error {
	if err := a.f.Sync(); err != nil {
		return err
	}
	if !a.dirSynced {
		if err := syncDir(filepath.Dir(a.f.Name())); err != nil {
			return err
		}
		a.dirSynced = true
	}
	return nil
}

func (a *localAppender) Close() error { return a.f.Close() }

func (s localStorage) Open(ref Ref) (Object, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	return openFileObject(s.Name(ref))
}

// fileObject is a file opened for reading.
type fileObject struct {
	*os.File
	size int64
}

func openFileObject(path string) (Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileObject{File: f, size: st.Size()}, nil
}

func (o fileObject) Size() int64 { return o.size }

// List reads the directory tree: one tenant only, never across tenants
// (M16).
func (s localStorage) List(tenant string) ([]Ref, error) {
	if err := checkName("tenant", tenant); err != nil {
		return nil, err
	}
	root := filepath.Join(s.dir, recordingsDir, tenant)
	days, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []Ref
	var errs []error
	for _, d := range days { // ReadDir sorts by name: YYYY-MM-DD sorts by time
		if !d.IsDir() {
			continue
		}
		if _, err := vault.ParseDay(d.Name()); err != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("list: %w", err))
			continue
		}
		for _, f := range files {
			name := f.Name()
			if !f.Type().IsRegular() || !strings.HasSuffix(name, fileExt) {
				continue
			}
			out = append(out, Ref{Tenant: tenant, Day: d.Name(), Session: strings.TrimSuffix(name, fileExt)})
		}
	}
	return out, errors.Join(errs...)
}
