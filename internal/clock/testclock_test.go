//go:build tandem_testclock

package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOffsetFile: the test build adds the file's offset, and follows a
// change of it.
func TestOffsetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	t.Setenv(EnvFile, path)
	if err := os.WriteFile(path, []byte("96h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	read = time.Time{}
	if d := Since(time.Now()); d < 95*time.Hour {
		t.Fatalf("offset not applied: Since(now) = %v", d)
	}
	if err := os.WriteFile(path, []byte("0s"), 0o600); err != nil {
		t.Fatal(err)
	}
	read = time.Time{}
	if d := Since(time.Now()); d < -time.Minute || d > time.Minute {
		t.Fatalf("offset not reset: Since(now) = %v", d)
	}
}
