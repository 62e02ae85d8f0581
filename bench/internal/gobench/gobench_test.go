package gobench

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: tandem.dev/tandem/internal/audit
cpu: AMD EPYC
BenchmarkAppendParallel/appenders=64-2         	   99625	     12299 ns/op	     81308 events/s
BenchmarkAppendParallel/appenders=1024-2       	  242374	      6157 ns/op	    162430 events/s
BenchmarkVerify-2                              	       2	 671614216 ns/op	    149043 leaves/s
BenchmarkAppendParallel
    crash_test.go:140: some log line
PASS
ok  	tandem.dev/tandem/internal/audit	9.464s
`

func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(got), got)
	}
	want := []struct {
		name  string
		procs int
		n     int
		unit  string
		value float64
	}{
		{"BenchmarkAppendParallel/appenders=64", 2, 99625, "events/s", 81308},
		{"BenchmarkAppendParallel/appenders=1024", 2, 242374, "events/s", 162430},
		{"BenchmarkVerify", 2, 2, "leaves/s", 149043},
	}
	for i, w := range want {
		r := got[i]
		if r.Name != w.name || r.Procs != w.procs || r.N != w.n || r.Metrics[w.unit] != w.value {
			t.Errorf("result %d = %+v, want %+v", i, r, w)
		}
		if len(r.Units) != 2 || r.Units[0] != "ns/op" {
			t.Errorf("result %d units = %v", i, r.Units)
		}
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		name string
	}{
		{"BenchmarkX-8 10 5 ns/op", true, "BenchmarkX"},
		{"BenchmarkX 10 5 ns/op", true, "BenchmarkX"},
		{"BenchmarkX-a-4 10 5 ns/op", true, "BenchmarkX-a"},
		{"BenchmarkX-8 ten 5 ns/op", false, ""},
		{"BenchmarkX-8 10 five ns/op", false, ""},
		{"BenchmarkX-8 10 5", false, ""},
		{"BenchmarkX-8 10 5 ns/op 6 ns/op", false, ""},
		{"TestX 10 5 ns/op", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		r, ok := ParseLine(tt.line)
		if ok != tt.ok || r.Name != tt.name {
			t.Errorf("ParseLine(%q) = %+v, %v; want name %q, %v", tt.line, r, ok, tt.name, tt.ok)
		}
	}
}

// FuzzParseLine: any input parses without panic, and an accepted line has
// one value per unit.
func FuzzParseLine(f *testing.F) {
	f.Add("BenchmarkVerify-2   2   671614216 ns/op   149043 leaves/s")
	f.Add("Benchmark-0 1 NaN x")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line)
		if !ok {
			return
		}
		if len(r.Units) != len(r.Metrics) {
			t.Fatalf("units %v vs metrics %v", r.Units, r.Metrics)
		}
		if !strings.HasPrefix(r.Name, "Benchmark") {
			t.Fatalf("name %q", r.Name)
		}
	})
}
