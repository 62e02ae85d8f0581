package audit

import (
	"context"
	"testing"
	"time"
)

// An event with bytes that are not UTF-8 (an SSH user name sent before
// authentication can be anything) is stored readably: the log stays
// readable and verifiable, the invalid bytes shown as U+FFFD.
func TestInvalidUTF8StaysReadable(t *testing.T) {
	bad := "ro\x9bot%h\xffost"
	e := Event{Time: time.Unix(1700000000, 0), Type: AuthFailure, Login: bad, Host: bad, Source: "127.0.0.1:1",
		Attrs: map[string]string{"user": bad, "k\xfe": "v"}}
	raw, err := EncodeRecord(7, e)
	if err != nil {
		t.Fatal(err)
	}
	idx, got, err := DecodeRecord(raw)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, raw)
	}
	if idx != 7 || got.Attrs["user"] != "ro\uFFFDot%h\uFFFDost" || got.Login != "ro\uFFFDot%h\uFFFDost" || got.Attrs["k\uFFFD"] != "v" {
		t.Fatalf("got %+v", got)
	}

	o := testOpts(t)
	l := mustOpen(t, o)
	if err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyDeep(o.Dir, pubKey(t, o.Dir), o.WitnessFile, o.Keys); err != nil || !rep.OK() {
		t.Fatalf("verify --deep of a log with an event that had invalid UTF-8: %v %+v", err, rep)
	}
	if recs := readAll(t, o.Dir); len(recs) == 0 || recs[0].Event.Attrs["user"] != "ro\uFFFDot%h\uFFFDost" {
		t.Fatalf("read back %+v", recs)
	}
}
