// Command tandem is the Tandem privileged-access gateway. All of its work
// happens in internal packages; main only hands over the arguments.
package main

import (
	"os"

	"tandem.dev/tandem/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
