package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Day is the unit of the "d" suffix of Duration.
const Day = 24 * time.Hour

// maxDays bounds the "d" suffix so that the result fits a time.Duration.
const maxDays = int64(1<<63-1) / int64(Day)

// ParseDuration reads a Go duration ("90s", "5m", "1h30m") or a whole number
// of days ("180d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > maxDays || strings.HasPrefix(days, "+") {
			return 0, fmt.Errorf("invalid duration %q: the d suffix takes a whole number of days, like 180d", s)
		}
		return time.Duration(n) * Day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: write it like 90s, 5m, 8h or 180d", s)
	}
	return d, nil
}

// UnmarshalYAML reads a duration scalar. Errors are yaml type errors so
// that decoding goes on and every problem of a file is reported.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "a duration must be a single value like 90s, 5m, 8h or 180d")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return typeError(n, "%v", err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration in the form UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats whole days as "180d" and anything else in Go's form
// without trailing zero units ("5m", "1h30m", "90s").
func (d Duration) String() string {
	v := d.Duration
	if v >= Day && v%Day == 0 {
		return strconv.FormatInt(int64(v/Day), 10) + "d"
	}
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// dateLayout is the only accepted form of a Date.
const dateLayout = "2006-01-02"

// ParseDate reads a day written as YYYY-MM-DD; the result is midnight UTC.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil || len(s) != len(dateLayout) {
		return Date{}, fmt.Errorf("invalid date %q: write it as YYYY-MM-DD", s)
	}
	return Date{t.UTC()}, nil
}

// UnmarshalYAML reads a date scalar. yaml decodes an unquoted 2026-10-01 as
// a timestamp; the text of the node is read instead, so that quoted and
// unquoted dates behave the same and no time of day can slip in.
func (d *Date) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "a date must be a single value written as YYYY-MM-DD")
	}
	v, err := ParseDate(n.Value)
	if err != nil {
		return typeError(n, "%v", err)
	}
	*d = v
	return nil
}

// MarshalYAML writes the date as YYYY-MM-DD, or null when it is not set.
func (d Date) MarshalYAML() (any, error) {
	if d.IsZero() {
		return nil, nil
	}
	return d.String(), nil
}

// String returns YYYY-MM-DD, or "" for the zero Date (not set).
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.UTC().Format(dateLayout)
}

// typeError builds an error the yaml decoder collects instead of stopping
// at it; the line prefix is the form the decoder uses for its own errors.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}
