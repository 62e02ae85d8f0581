//go:build unix

package ca

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockRotation serialises rotation steps between the CLI and a running
// gateway that finishes a rotation whose overlap has passed.
func lockRotation(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "rotation.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rotation lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("rotation lock: %w", err)
	}
	return func() { f.Close() }, nil
}
