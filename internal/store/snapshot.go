package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
)

// Snapshot writes a consistent copy of the state database at path to the
// new file to (0600), while other processes keep writing it: SQLite's
// VACUUM INTO reads inside one transaction, so the copy holds every
// committed write up to one moment and nothing of a later one, WAL or not.
// Copying state.db and its -wal file by hand could tear between them.
func Snapshot(ctx context.Context, path, to string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer db.Close()
	// VACUUM INTO accepts an empty file: create it 0600 first, so the
	// copy is never readable by others, whatever the umask.
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	f.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", to); err != nil {
		os.Remove(to)
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return nil
}
