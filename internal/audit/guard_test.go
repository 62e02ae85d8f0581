package audit

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoHandBuiltEvents: outside this package, events are built only with
// the typed constructors (events.go), so that what is written is what the
// catalog and docs/AUDIT.md say. A composite literal of Event elsewhere
// would bypass the schema; tests may still build old shapes to read.
func TestNoHandBuiltEvents(t *testing.T) {
	root := filepath.Join("..", "..")
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	literal := []byte("audit.Event{")
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			abs, _ := filepath.Abs(path)
			if abs == self || d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		if bytes.Contains(b, literal) {
			t.Errorf("%s builds an audit.Event by hand; use a constructor of internal/audit/events.go (add one there if none fits)", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d Go files under %s; is the walk looking at the repository?", checked, root)
	}
}
