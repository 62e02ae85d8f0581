// Command auditdoc writes docs/AUDIT.md and docs/RETENTION-FIELDS.md from
// the audit event catalog (`go generate ./internal/audit` runs it).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"tandem.dev/tandem/internal/audit"
)

func main() {
	out := flag.String("o", "docs/AUDIT.md", "file to write")
	retention := flag.String("retention", "docs/RETENTION-FIELDS.md", "file to write the fields' retention classes to")
	flag.Parse()
	write(*out, audit.WriteDoc)
	write(*retention, audit.WriteRetentionFields)
}

func write(path string, doc func(io.Writer) error) {
	var b bytes.Buffer
	if err := doc(&b); err != nil {
		fmt.Fprintln(os.Stderr, "auditdoc:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "auditdoc:", err)
		os.Exit(1)
	}
}
