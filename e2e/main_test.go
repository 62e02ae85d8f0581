package e2e

import (
	"os"
	"testing"

	"tandem.dev/tandem/internal/testenv"
)

// TestMain removes the tandem binary that the tests build once.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}
