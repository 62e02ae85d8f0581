package stats

import (
	"math"
	"testing"
	"time"
)

func ms(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median odd", ms(3, 1, 2), 50, 2 * time.Millisecond},
		{"median even takes lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"p100", ms(5, 9, 1), 100, 9 * time.Millisecond},
		{"tiny p clamps to first", ms(5, 9, 1), 0.0001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.samples, tt.p, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestPercentileKeepsInput(t *testing.T) {
	in := ms(3, 1, 2)
	Percentile(in, 50)
	if in[0] != 3*time.Millisecond {
		t.Errorf("Percentile reordered its input: %v", in)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}

func TestRatioAndMeets(t *testing.T) {
	tests := []struct {
		tandem, direct, target float64
		higher                 bool
		wantText               string
		wantMeets              bool
	}{
		{60, 100, 0.55, true, "0.60×", true},
		{50, 100, 0.55, true, "0.50×", false},
		{1.4, 1, 1.5, false, "1.40×", true},
		{1.7, 1, 1.6, false, "1.70×", false},
		{1, 0, 1.1, false, "–", false},
	}
	for _, tt := range tests {
		r := Ratio(tt.tandem, tt.direct)
		if got := FormatRatio(r); got != tt.wantText {
			t.Errorf("FormatRatio(Ratio(%v, %v)) = %q, want %q", tt.tandem, tt.direct, got, tt.wantText)
		}
		if got := Meets(r, tt.target, tt.higher); got != tt.wantMeets {
			t.Errorf("Meets(%v, %v, %v) = %v, want %v", r, tt.target, tt.higher, got, tt.wantMeets)
		}
	}
	if !math.IsNaN(Ratio(1, 0)) {
		t.Error("Ratio(1, 0) is a number")
	}
}
