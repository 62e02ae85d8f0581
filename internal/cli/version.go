package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildVersion is the release version, set by `make build` with
// -ldflags "-X tandem.dev/tandem/internal/cli.buildVersion=…" (from git
// describe); a plain `go build` leaves it empty and the module version the
// toolchain recorded is used instead.
var buildVersion string

// buildCommit is the commit, set by `make build` the same way (from git
// rev-parse, "-dirty" appended for uncommitted changes), as the Makefile
// builds with -buildvcs=false so that the binary depends on the commit
// alone. Empty: the toolchain's vcs.revision, when it recorded one.
var buildCommit string

// buildInfo is what `tandem version` prints and the audit log's
// gateway.start records: the version, the commit (with "-dirty" when the
// tree had uncommitted changes) and the Go toolchain.
type buildInfo struct {
	Version, Commit, GoVersion string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "(unknown)"
		}
		if buildCommit != "" {
			b.Commit = buildCommit
		}
		return b
	}
	if b.Version == "" {
		b.Version = bi.Main.Version
	}
	if buildCommit != "" {
		b.Commit = buildCommit
		return b
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		b.Commit += "-dirty"
	}
	return b
}

// version reports the version and the first 12 digits of the commit, the
// short form for logs and metrics.
func version() string {
	b := readBuildInfo()
	if len(b.Commit) >= 12 && b.Commit != "unknown" {
		return b.Version + " " + b.Commit[:12]
	}
	return b.Version
}

func writeVersion(w io.Writer) {
	b := readBuildInfo()
	fmt.Fprintf(w, "tandem %s\ncommit %s\ngo %s\n", b.Version, b.Commit, b.GoVersion)
}
