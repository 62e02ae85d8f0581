package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManPagesCmd writes the man pages of every command, generated from
// the command tree itself, so they cannot drift from --help. The Debian
// package (make deb) calls it; it is hidden from the command list.
func newManPagesCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man-pages --dir DIR",
		Short:  "write the man pages of every command (tandem.1, tandem-serve.1, …) into a directory",
		Hidden: true,
		Long: `Write one man page per command into DIR, from the same text as --help.
The date in their header is SOURCE_DATE_EPOCH when set (reproducible
builds), today otherwise.`,
		Example: `  tandem man-pages --dir /tmp/man && man /tmp/man/tandem-serve.1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("name the directory: --dir DIR")}
			}
			date, err := sourceDate()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, &doc.GenManHeader{Title: "TANDEM", Section: "1", Source: "Tandem " + readBuildInfo().Version, Manual: "Tandem Manual", Date: &date}, dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the pages into")
	return cmd
}

// sourceDate is SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/)
// or now.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC(), nil
	}
	var sec int64
	if _, err := fmt.Sscanf(s, "%d", &sec); err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}
