package syslog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"tandem.dev/tandem/internal/audit"
)

// cursor is how much of the log one collector has: the segment, the
// position of the first record it may lack, and the offset of the first
// checkpoint (in that segment's checkpoints.log) it may lack. The log
// itself is the spool — durable, append-only and encrypted like nothing
// else could be — so the cursor is all the shipper keeps.
type cursor struct {
	Segment     int            `json:"segment"`
	Next        audit.Position `json:"next"`
	Checkpoints int64          `json:"checkpoints"`
}

// CursorPath is where the cursor of the named collector lives in stateDir
// (data_dir/syslog).
func CursorPath(stateDir, name string) string {
	return filepath.Join(stateDir, name+".cursor")
}

// loadCursor reads a cursor; a collector without one starts at the
// beginning of segment current.
func loadCursor(path string, current int) (cursor, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cursor{Segment: current}, nil
	}
	if err != nil {
		return cursor{}, fmt.Errorf("syslog: read cursor: %w", err)
	}
	var c cursor
	// Negative offsets are no position in a file; a seek to one would
	// fail on every attempt to send.
	if err := json.Unmarshal(b, &c); err != nil || c.Segment < 1 || c.Next.Offset < 0 || c.Checkpoints < 0 {
		return cursor{}, fmt.Errorf("syslog: cursor %s is damaged; remove it to send the current segment again from its start", path)
	}
	return c, nil
}

// save replaces the cursor file atomically and durably: a temporary file
// (0600), fsync, rename, fsync of the directory. A crash leaves the old
// cursor or the new one, and the old one only sends some records twice.
func (c cursor) save(path string) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("syslog: write cursor: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("syslog: write cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("syslog: write cursor: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("syslog: sync cursor directory: %w", err)
	}
	defer d.Close()
	return d.Sync()
}
