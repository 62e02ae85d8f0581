package link

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParseJoin: a peer's join request is either refused or yields
// fields within their bounds that encode back to the same bytes. The
// bounds are checked here independently of the parser's own helpers: no
// control character (C0, DEL, C1) or invalid UTF-8 in the text a holding
// node logs and audits, a mode that is one of the two, a fingerprint of
// SHA256's shape.
func FuzzParseJoin(f *testing.F) {
	f.Add(goodJoin.Marshal())
	f.Add(Join{Session: "ff", Person: "ä ö", Mode: "observer", External: true, KeyFP: goodJoin.KeyFP}.Marshal())
	f.Add(Join{Session: "ff", Person: "bob\u0085", Mode: "peer", KeyFP: goodJoin.KeyFP}.Marshal())
	f.Add(Join{Session: "ff", Person: "bob", Mode: "peer", KeyFP: goodJoin.KeyFP, Source: "\x1b[2J"}.Marshal())
	f.Add([]byte{0, 0, 0, 1})
	clean := func(s string, max int) bool {
		return len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJoin(b)
		if err != nil {
			return
		}
		switch {
		case len(b) > maxJoin,
			j.Person == "" || !clean(j.Person, 256) || !clean(j.Source, 256),
			j.Session == "" || len(j.Session) > 64 || strings.Trim(j.Session, "0123456789abcdef") != "",
			j.Mode != "peer" && j.Mode != "observer",
			len(j.KeyFP) != len("SHA256:")+43 || !strings.HasPrefix(j.KeyFP, "SHA256:") || !clean(j.KeyFP, 64):
			t.Fatalf("accepted %+v", j)
		}
		if string(j.Marshal()) != string(b) {
			t.Fatalf("%+v does not encode back to its %d bytes", j, len(b))
		}
	})
}
