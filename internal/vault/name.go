package vault

import (
	"fmt"
	"time"
)

const (
	dayLayout = "2006-01-02"
	maxName   = 128
)

// Day returns the UTC day a time falls on, as used in key paths, recording
// paths and headers.
func Day(t time.Time) string {
	// Every audit append takes the day of each of its parts and of their
	// key, and time.Format reads its layout each time: the digits are
	// written here instead, as Format writes them for years 0 to 9999.
	y, m, d := t.UTC().Date()
	if y < 0 || y > 9999 {
		return t.UTC().Format(dayLayout)
	}
	b := [len(dayLayout)]byte{
		byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + m/10), byte('0' + m%10), '-', byte('0' + d/10), byte('0' + d%10),
	}
	return string(b[:])
}

// ParseDay is the inverse of Day.
func ParseDay(s string) (time.Time, error) { return time.Parse(dayLayout, s) }

// CheckName accepts identifiers that are safe as one path element:
// letters, digits, '.', '_', '-', not starting with '.', 1..128 bytes.
func CheckName(what, s string) error {
	if s == "" || len(s) > maxName {
		return fmt.Errorf("%s must be 1 to %d characters", what, maxName)
	}
	if s[0] == '.' {
		return fmt.Errorf("%s %q must not start with '.'", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%s %q: only letters, digits, '.', '_' and '-' are allowed", what, s)
		}
	}
	return nil
}
