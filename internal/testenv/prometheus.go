package testenv

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Samples reads Prometheus's text format into its series, keyed as the
// format writes them: `name{label="value",…}` (labels sorted), or the bare
// name.
func Samples(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Promtool runs promtool (Debian package prometheus) with args and stdin,
// and fails the test with its output when it finds a problem. A missing
// promtool skips the test, or fails it under CI=true.
func Promtool(t testing.TB, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(RequireProgram(t, "promtool"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
