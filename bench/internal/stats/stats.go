// Package stats holds the small summary statistics the benchmark reports:
// nearest-rank percentiles of latency samples, medians of rates, and the
// Tandem/direct ratio with its direction (higher or lower is better).
package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// samples, or 0 for no samples. Nearest rank, not interpolation, so that
// every reported figure is a latency that was actually measured.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Median returns the middle value of xs (the mean of the two middle ones
// for an even count), or 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Seconds converts durations to float seconds, for Median.
func Seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

// Ratio is tandem/direct, or NaN when direct is 0 (nothing measured).
func Ratio(tandem, direct float64) float64 {
	if direct == 0 {
		return math.NaN()
	}
	return tandem / direct
}

// FormatRatio prints a ratio as "1.23×", or "–" when it is not a number.
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// Meets reports whether ratio r meets a target: at least target when
// higherIsBetter (throughput), at most target otherwise (latency). A ratio
// that is not a number meets nothing.
func Meets(r, target float64, higherIsBetter bool) bool {
	if math.IsNaN(r) {
		return false
	}
	if higherIsBetter {
		return r >= target
	}
	return r <= target
}
