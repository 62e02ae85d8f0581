package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"time"

	"tandem.dev/tandem/bench/internal/gobench"
)

// auditBenchPattern selects the audit log's Go benchmarks for (e).
const auditBenchPattern = "BenchmarkAppendEncrypted|BenchmarkVerify"

// runAudit measures (e) by running the audit package's own Go benchmarks
// in the repository. Quick mode runs each once (-benchtime 1x), which
// proves they run but gives no meaningful rate.
func runAudit(ctx context.Context, goTool, repo string, quick bool) ([]gobench.Result, string, error) {
	args := []string{"test", "-run", "^$", "-bench", auditBenchPattern}
	if quick {
		args = append(args, "-benchtime", "1x")
	}
	args = append(args, "./internal/audit/")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = repo
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmdline := "go " + joinArgs(args)
	if err := cmd.Run(); err != nil {
		return nil, cmdline, fmt.Errorf("%s: %w\n%s", cmdline, err, out.String())
	}
	res, err := gobench.Parse(&out)
	if err != nil {
		return nil, cmdline, err
	}
	if len(res) == 0 {
		return nil, cmdline, fmt.Errorf("%s printed no benchmark results:\n%s", cmdline, out.String())
	}
	return res, cmdline, nil
}

// joinArgs quotes arguments that a shell would split or expand.
func joinArgs(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || bytes.ContainsAny([]byte(a), " |^$*?'\"") {
			fmt.Fprintf(&b, "'%s'", a)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
