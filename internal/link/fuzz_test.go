package link

import (
	"testing"
)

// FuzzParseJoin: a peer's join request is either refused or yields
// fields within their bounds that encode back to the same bytes.
func FuzzParseJoin(f *testing.F) {
	f.Add(goodJoin.Marshal())
	f.Add(Join{Session: "ff", Person: "ä ö", Mode: "observer", External: true, KeyFP: goodJoin.KeyFP}.Marshal())
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJoin(b)
		if err != nil {
			return
		}
		if !printable(j.Person, 256) || !printable(j.Source, 256) || !sessionID.MatchString(j.Session) {
			t.Fatalf("accepted %+v", j)
		}
		if string(j.Marshal()) != string(b) {
			t.Fatalf("%+v does not encode back to its %d bytes", j, len(b))
		}
	})
}
