// Package safetext makes person-supplied text safe to print on a terminal.
//
// Text that a person typed (a lock reason, a request reason, an SSH user
// name, a command) reaches other people's terminals: in listings, notices,
// refusals and the audit log's human-readable form. Raw control characters
// in it could move the cursor, overwrite lines, set window titles, or, as
// bidi overrides and invisible format characters, disguise what an
// approver approves. Line shows every such character as a visible escape
// and keeps everything else (umlauts, emoji, CJK) as it is. Storage keeps
// the original bytes; only what is printed for people goes through Line.
package safetext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s as one terminal line without any character that a
// terminal would interpret or that would be invisible. The escapes are
//
//	\\          a backslash (doubled, so an escape cannot be faked)
//	\xHH        a C0 control (including \n, \r, \t), DEL, or a byte
//	            that is not valid UTF-8 (such as a raw 0x9b)
//	\uHHHH      a C1 control (U+0080–U+009F), a bidi control, a line or
//	            paragraph separator, or another format character
//	            (Unicode category Cf: zero-width spaces and joiners,
//	            U+FEFF, ...)
//	\UHHHHHHHH  such a character above U+FFFF (tag characters)
//
// in lower-case hex. The mapping is injective: different inputs never give
// the same output. Callers that print several lines sanitize each line and
// print the line breaks themselves.
func Line(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if c >= utf8.RuneSelf && !(r == utf8.RuneError && size == 1) && !escaped(r) {
			i += size
			continue
		}
		break
	}
	if i == len(s) {
		return s // the common case: nothing to escape, no allocation
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			hexEscape(&b, `\x`, uint32(s[i]), 2)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			hexEscape(&b, `\x`, uint32(r), 2)
		case escaped(r):
			if r > 0xffff {
				hexEscape(&b, `\U`, uint32(r), 8)
			} else {
				hexEscape(&b, `\u`, uint32(r), 4)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// escaped reports whether a valid rune at or above U+0080 is shown as an
// escape: C1 controls, format characters (bidi controls, zero-width
// characters, tags, U+FEFF, ...) and the line and paragraph separators.
func escaped(r rune) bool {
	if r < utf8.RuneSelf {
		return false
	}
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) ||
		unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) ||
		(r >= 0xe0000 && r <= 0xe007f) // the whole tag block, unassigned ones too
}

func hexEscape(b *strings.Builder, prefix string, v uint32, digits int) {
	b.WriteString(prefix)
	h := strconv.FormatUint(uint64(v), 16)
	for n := len(h); n < digits; n++ {
		b.WriteByte('0')
	}
	b.WriteString(h)
}

// Lines is Line for text of several lines, such as an error with a usage
// text or a refusal with a hint: every line is passed through Line, and
// the line breaks (\n) and tabs between them are kept for the caller's
// layout. Use Line wherever one line is meant.
func Lines(s string) string {
	if Line(s) == s {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cells := strings.Split(l, "\t")
		for j, c := range cells {
			cells[j] = Line(c)
		}
		lines[i] = strings.Join(cells, "\t")
	}
	return strings.Join(lines, "\n")
}
