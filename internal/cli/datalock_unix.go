//go:build unix

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockFile is the file in data_dir that one gateway holds locked while it
// runs, so that two never write the same audit log and state store.
const lockFile = "tandem.lock"

// lockDataDir takes the data directory's exclusive lock and writes this
// process's pid into the lock file. The lock lasts until release (or the
// process's end: the kernel drops it with the file descriptor, so a
// crashed gateway leaves no stale lock). what names the holder in the
// message a second process gets.
func lockDataDir(dir, what string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data_dir %s is in use by %s; one gateway per data directory (lock file %s)", dir, holder, path)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := writePid(f, what); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func writePid(f *os.File, what string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(what+" "+strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// lockHolder reads who holds the lock: "tandem serve (pid N)".
func lockHolder(f *os.File) string {
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, 0)
	line := string(bytes.TrimSpace(b[:n]))
	i := bytes.LastIndexByte([]byte(line), ' ')
	if i < 0 {
		return "another tandem process"
	}
	return fmt.Sprintf("%s (pid %s)", line[:i], line[i+1:])
}
