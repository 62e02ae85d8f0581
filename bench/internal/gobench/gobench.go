// Package gobench reads the result lines that `go test -bench` prints, so
// the benchmark suite can put the audit log's own Go benchmarks into its
// report without a dependency on benchstat.
package gobench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one benchmark line, e.g.
//
//	BenchmarkVerify-2   2   671614216 ns/op   149043 leaves/s
type Result struct {
	// Name without the "-GOMAXPROCS" suffix, e.g.
	// "BenchmarkAppendParallel/appenders=64".
	Name  string
	Procs int // the GOMAXPROCS suffix; 0 when the line has none
	N     int // iterations
	// Metrics maps each unit ("ns/op", "events/s", …) to its value.
	Metrics map[string]float64
	// Units keeps the units in the order the line gave them.
	Units []string
}

// maxLine bounds one line of input; go test prints far shorter ones.
const maxLine = 1 << 20

// Parse returns every benchmark result line of r in order. Other lines
// (goos:, PASS, ok, log output) are skipped; a line that starts with
// "Benchmark" but is not a result (a sub-benchmark header, a log line) is
// skipped too.
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for sc.Scan() {
		if res, ok := ParseLine(sc.Text()); ok {
			out = append(out, res)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

// ParseLine parses one result line and reports whether it was one: a name
// starting with "Benchmark", an iteration count, then value–unit pairs.
func ParseLine(line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return Result{}, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return Result{}, false
	}
	res := Result{Name: f[0], N: n, Metrics: make(map[string]float64, (len(f)-2)/2)}
	if i := strings.LastIndexByte(f[0], '-'); i > 0 {
		if p, err := strconv.Atoi(f[0][i+1:]); err == nil && p > 0 {
			res.Name, res.Procs = f[0][:i], p
		}
	}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		unit := f[i+1]
		if _, dup := res.Metrics[unit]; dup {
			return Result{}, false
		}
		res.Metrics[unit] = v
		res.Units = append(res.Units, unit)
	}
	return res, true
}
