// Command auditdoc writes docs/AUDIT.md from the audit event catalog
// (`go generate ./internal/audit` runs it).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"tandem.dev/tandem/internal/audit"
)

func main() {
	out := flag.String("o", "docs/AUDIT.md", "file to write")
	flag.Parse()
	var b bytes.Buffer
	if err := audit.WriteDoc(&b); err != nil {
		fmt.Fprintln(os.Stderr, "auditdoc:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "auditdoc:", err)
		os.Exit(1)
	}
}
