package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample: a person reading `--help` sees how the
// command is used, for every command Tandem has.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && !c.Hidden && c.Name() != "help" && !strings.HasPrefix(c.CommandPath(), "tandem completion") {
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%s --help has no example", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

// TestUsageErrors: a command line the command does not take prints the
// error and the usage once, and exits 2.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"lock"}, {"lock", "--bogus"}, {"audit", "verify", "--bogus"}, {"config", "check", "extra"}} {
		var out, errOut bytes.Buffer
		code := Main(args, &out, &errOut)
		text := errOut.String()
		if code != 2 || strings.Count(text, "Usage:") != 1 || !strings.HasPrefix(text, "tandem "+args[0]) {
			t.Errorf("tandem %s: exit %d, want 2 with the error and one usage:\n%s", strings.Join(args, " "), code, text)
		}
	}
}

// TestMissingConfig: the error names the path tried and how to get a
// configuration.
func TestMissingConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main([]string{"config", "check", "-c", "/nonexistent/tandem.yaml"}, &out, &errOut)
	for _, want := range []string{"/nonexistent/tandem.yaml", "tandem demo", "docs/CONFIG.md"} {
		if code == 0 || !strings.Contains(errOut.String(), want) {
			t.Errorf("missing config: exit %d, stderr lacks %q:\n%s", code, want, errOut.String())
		}
	}
}
