package main

import (
	"testing"
	"time"
)

func TestParseMachineCPU(t *testing.T) {
	for _, tc := range []struct {
		line      string
		busy, tot time.Duration
		bad       bool
	}{
		{line: "cpu  100 5 50 1000 20 3 2 0 7 0\n", busy: 1600 * time.Millisecond, tot: 11800 * time.Millisecond},
		{line: "cpu 1 0 0 0 0 0 0 0", busy: 10 * time.Millisecond, tot: 10 * time.Millisecond},
		{line: "cpu0 1 2 3 4 5 6 7 8", bad: true},
		{line: "cpu 1 2 3", bad: true},
		{line: "cpu 1 2 x 4 5 6 7 8", bad: true},
		{line: "cpu 1 2 -3 4 5 6 7 8", bad: true},
		{line: "", bad: true},
	} {
		got, err := parseMachineCPU(tc.line)
		if tc.bad {
			if err == nil {
				t.Errorf("parseMachineCPU(%q) = %+v, want an error", tc.line, got)
			}
			continue
		}
		if err != nil || got.Busy != tc.busy || got.Total != tc.tot {
			t.Errorf("parseMachineCPU(%q) = %+v, %v; want busy %v total %v", tc.line, got, err, tc.busy, tc.tot)
		}
	}
	if _, err := readMachineCPU(); err != nil {
		t.Errorf("readMachineCPU on this machine: %v", err)
	}
}

func FuzzParseMachineCPU(f *testing.F) {
	f.Add("cpu  100 5 50 1000 20 3 2 0 7 0\n")
	f.Add("cpu 1 2")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMachineCPU(line)
		if err == nil && (m.Busy < 0 || m.Total < m.Busy) {
			t.Errorf("parseMachineCPU(%q) = %+v: busy above total", line, m)
		}
	})
}
