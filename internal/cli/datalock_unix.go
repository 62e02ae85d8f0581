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

// servingPid returns the pid of the tandem serve that holds data_dir's
// lock. The lock, not a pid file, is the proof that it runs: a crashed
// gateway's pid may belong to another process by now, but its lock died
// with it.
func servingPid(dir string) (int, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("no running gateway found (%w); start it with tandem serve", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, fmt.Errorf("no tandem serve runs on data_dir %s; start it with tandem serve", dir)
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, 0)
	fields := bytes.Fields(b[:n])
	if len(fields) < 3 || string(fields[0]) != "tandem" || string(fields[1]) != "serve" {
		return 0, fmt.Errorf("data_dir %s is held by %s, not by tandem serve", dir, lockHolder(f))
	}
	pid, err := strconv.Atoi(string(fields[len(fields)-1]))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("data directory lock %s names no pid", path)
	}
	return pid, nil
}
