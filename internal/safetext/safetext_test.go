package safetext

import (
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "deploy of release 4.2", "deploy of release 4.2"},
		{"umlauts", "Prüfung für Jürgen, Größe", "Prüfung für Jürgen, Größe"},
		{"emoji", "ok 🚀 👍🏽", "ok 🚀 👍🏽"},
		{"cjk", "维护窗口", "维护窗口"},
		{"backslash", `C:\temp\x1b`, `C:\\temp\\x1b`},
		{"esc", "x\x1b[2Jy", `x\x1b[2Jy`},
		{"osc title", "x\x1b]0;owned\x07", `x\x1b]0;owned\x07`},
		{"newline", "a\nb", `a\x0ab`},
		{"carriage return", "ok\rforged", `ok\x0dforged`},
		{"tab", "a\tb", `a\x09b`},
		{"nul", "a\x00b", `a\x00b`},
		{"del", "a\x7fb", `a\x7fb`},
		{"c1 csi rune", "a\u009b2Jb", `a\u009b2Jb`},
		{"c1 nel rune", "a\u0085b", `a\u0085b`},
		{"c1 raw byte", "a\x9b2Jb", `a\x9b2Jb`},
		{"invalid bytes", "a\xff\xfeb", `a\xff\xfeb`},
		{"truncated utf8", "a\xc3", `a\xc3`},
		{"surrogate encoded", "a\xed\xa0\x80b", `a\xed\xa0\x80b`},
		{"literal replacement char", "a\ufffdb", "a\ufffdb"},
		{"rlo", "approve\u202egnp.exe", `approve\u202egnp.exe`},
		{"bidi embeddings", "\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
		{"marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width", "a\u200bb\u200cc\u200dd", `a\u200bb\u200cc\u200dd`},
		{"word joiner etc", "\u2060\u2061\u2062\u2063\u2064", `\u2060\u2061\u2062\u2063\u2064`},
		{"bom", "\ufeffroot", `\ufeffroot`},
		{"soft hyphen", "ro\u00adot", `ro\u00adot`},
		{"line separator", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"tags", "a\U000e0001\U000e0041\U000e007f", `a\U000e0001\U000e0041\U000e007f`},
		{"unassigned tag", "\U000e0000", `\U000e0000`},
		{"escape cannot be faked", `\u202e` + "\u202e", `\\u202e\u202e`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.in); got != tc.want {
				t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := unescape(t, Line(tc.in)); got != tc.in {
				t.Errorf("unescape(Line(%q)) = %q", tc.in, got)
			}
		})
	}
}

func TestLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"usage: lock\n  -for duration\n    \tlift it", "usage: lock\n  -for duration\n    \tlift it"},
		{"locked: x\x1b]0;t\x07\n  ask \u202eadmin", "locked: x\\x1b]0;t\\x07\n  ask \\u202eadmin"},
		{"a\r\nb", "a\\x0d\nb"},
		{"\x9b\t\\", "\\x9b\t\\\\"},
	} {
		if got := Lines(tc.in); got != tc.want {
			t.Errorf("Lines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLineNoAllocation(t *testing.T) {
	s := "Prüfung für Jürgen 🚀"
	if n := testing.AllocsPerRun(100, func() { _ = Line(s) }); n != 0 {
		t.Errorf("Line allocates %v times for clean text", n)
	}
}

func FuzzLine(f *testing.F) {
	for _, s := range []string{"", "plain", "x\x1b]0;owned\x07%h\u202eost", "\u009b\x9b", `\x9b`, "\\", "Grüße 🚀", "\U000e0041", "\xed\xa0\x80", "\u2028"} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		la, lb := Line(a), Line(b)
		checkSafe(t, la)
		checkSafe(t, lb)
		if la == lb && a != b {
			t.Fatalf("Line(%q) == Line(%q) == %q", a, b, la)
		}
		if got := unescape(t, la); got != a {
			t.Fatalf("unescape(Line(%q)) = %q", a, got)
		}
		// Lines keeps only line breaks and tabs, and is injective too.
		m := Lines(a)
		checkSafe(t, strings.NewReplacer("\n", "", "\t", "").Replace(m))
		if got := unescape(t, m); got != a {
			t.Fatalf("unescape(Lines(%q)) = %q", a, got)
		}
	})
}

// checkSafe asserts what a terminal sees: valid UTF-8 without controls,
// format characters or separators.
func checkSafe(t *testing.T, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output %q is not valid UTF-8", out)
	}
	for _, r := range out {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) ||
			unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) ||
			(r >= 0xe0000 && r <= 0xe007f) {
			t.Fatalf("output %q contains %U", out, r)
		}
	}
}

// unescape inverts Line; it fails on anything Line cannot have produced,
// so a round trip proves that Line is injective.
func unescape(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		if i+1 >= len(s) {
			t.Fatalf("unescape(%q): lone backslash at the end", s)
		}
		n := 0
		switch s[i+1] {
		case '\\':
			b.WriteByte('\\')
			i += 2
			continue
		case 'x':
			n = 2
		case 'u':
			n = 4
		case 'U':
			n = 8
		default:
			t.Fatalf("unescape(%q): unknown escape %q", s, s[i:i+2])
		}
		if i+2+n > len(s) {
			t.Fatalf("unescape(%q): short escape", s)
		}
		h := s[i+2 : i+2+n]
		if strings.ToLower(h) != h {
			t.Fatalf("unescape(%q): upper-case hex %q", s, h)
		}
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			t.Fatalf("unescape(%q): %v", s, err)
		}
		if n == 2 {
			b.WriteByte(byte(v))
		} else {
			b.WriteRune(rune(v))
		}
		i += 2 + n
	}
	return b.String()
}
