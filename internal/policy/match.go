package policy

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"
)

// Host selectors: there is one match, config.Selector.Matches. It lives with
// the Selector type because configuration validation needs it too (a rule's
// logins are checked against the hosts it matches) and config cannot import
// this package; every decision here calls that one function.

// splitDest splits "host:port" into a lower-cased host and a port in
// 1..65535. IPv6 literals are written in brackets ("[::1]:22").
func splitDest(dest string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(dest)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", dest)
	}
	if h == "" {
		return "", 0, fmt.Errorf("%q names no host", dest)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || p != strconv.Itoa(n) {
		return "", 0, fmt.Errorf("%q has no valid port", dest)
	}
	return strings.ToLower(h), n, nil
}

// forwardAllowed reports whether a Forward entry ("host:port", host a glob)
// admits the destination. Ports compare exactly; host names compare without
// regard to case, as DNS does.
func forwardAllowed(entries []string, host string, port int) bool {
	for _, entry := range entries {
		pat, ps, ok := splitForwardEntry(entry)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(ps)
		if err != nil || n != port {
			continue
		}
		if ok, err := path.Match(strings.ToLower(pat), host); err == nil && ok {
			return true
		}
	}
	return false
}

// splitForwardEntry splits a Forward entry into host glob and port. An
// IPv6 literal is written in brackets ("[::1]:22"); otherwise the port
// follows the last colon, so glob classes such as "db[12]:22" still work.
func splitForwardEntry(entry string) (pat, port string, ok bool) {
	if strings.HasPrefix(entry, "[") {
		if j := strings.LastIndex(entry, "]:"); j > 0 {
			return entry[1:j], entry[j+2:], true
		}
	}
	i := strings.LastIndexByte(entry, ':')
	if i <= 0 {
		return "", "", false
	}
	return entry[:i], entry[i+1:], true
}

// day returns the calendar day of t in UTC, as midnight UTC.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func formatDay(t time.Time) string { return t.UTC().Format("2006-01-02") }

// formatInstant prints an instant as a day when it falls on midnight UTC
// (the usual case: days are added to a registration day), else with the
// time of day, so the person is never told a day that is off by one.
func formatInstant(t time.Time) string {
	u := t.UTC()
	if u.Equal(day(u)) {
		return formatDay(u)
	}
	return u.Format("2006-01-02 15:04 UTC")
}

// formatAge prints a maximum age the way the config file writes it.
func formatAge(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		n := int64(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", n)
	}
	return d.String()
}

// oneLine keeps text that came from elsewhere (a lock reason) on one line
// of a decision's reason, which the audit log records as it is. It does
// not escape for terminals: every print site passes person-supplied text
// through safetext, and escaping here as well would double the escapes.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
