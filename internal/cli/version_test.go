package cli

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFromLinker: make build sets the version and commit with
// -ldflags -X; tandem version prints them with the Go version, and the
// short form (logs, metrics, gateway.start) carries both.
func TestVersionFromLinker(t *testing.T) {
	oldV, oldC := buildVersion, buildCommit
	t.Cleanup(func() { buildVersion, buildCommit = oldV, oldC })
	buildVersion, buildCommit = "v1.4.0", "0123456789abcdef0123456789abcdef01234567"
	var b bytes.Buffer
	writeVersion(&b)
	want := "tandem v1.4.0\ncommit 0123456789abcdef0123456789abcdef01234567\ngo " + runtime.Version() + "\n"
	if b.String() != want {
		t.Errorf("tandem version printed\n%s\nwant\n%s", b.String(), want)
	}
	if v := version(); v != "v1.4.0 0123456789ab" {
		t.Errorf("version() = %q", v)
	}
	buildVersion, buildCommit = "", ""
	if v := readBuildInfo(); v.Version == "" || v.GoVersion != runtime.Version() || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("without -ldflags: %+v", v)
	}
}
