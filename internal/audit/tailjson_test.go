package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"tandem.dev/tandem/internal/vault"
)

// sameTailJSON fails unless tailAndLeaf gives encoding/json's bytes and
// the leaf form by its definition (the scan), or the scan's error.
func sameTailJSON(t *testing.T, tl tailV2) {
	t.Helper()
	want, err := json.Marshal(tl)
	if err != nil {
		t.Fatal(err)
	}
	wantLeaf, wantErr := leafForm(nil, want[1:], false)
	tail, leaf, err := tailAndLeaf(&tl)
	if !bytes.Equal(tail, want) {
		t.Fatalf("appendTailV2 %q\nencoding/json %q", tail, want)
	}
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || err == nil && !bytes.Equal(leaf, wantLeaf) {
		t.Fatalf("leaf form while encoding %q, %v\nby the scan %q, %v", leaf, err, wantLeaf, wantErr)
	}
	// A buffer used before (as preEncodeV2's pool hands them out), too
	// small or large enough, gives the same bytes.
	for _, n := range []int{1, 64, 4096} {
		dirty := bytes.Repeat([]byte{'"'}, n)
		tail2, leaf2, _, err2 := tailAndLeafIn(dirty[:0], &tl)
		if !bytes.Equal(tail2, tail) || !bytes.Equal(leaf2, leaf) || fmt.Sprint(err2) != fmt.Sprint(err) {
			t.Fatalf("in a used buffer of %d bytes: %q, %q, %v\nin a new one %q, %q, %v", n, tail2, leaf2, err2, tail, leaf, err)
		}
	}
}

// tailFrom builds a tail from arbitrary strings, its ciphertexts and
// their hashes shaped as the writer's are (base64, 64 hex digits).
func tailFrom(a, b, c string, n int) tailV2 {
	tl := tailV2{Tenant: a, Time: b, Type: Type(c), V: n}
	ct := func(s string) (string, string) {
		sum := sha256.Sum256([]byte(s))
		return base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString(sum[:])
	}
	if n%3 != 0 {
		x, h := ct(b)
		tl.Parts = []part{{Class: vault.Class(a), CT: x, CTSHA256: h, Day: a + b, Key: c + a}}
	}
	if n%3 == 2 {
		_, h := ct(c)
		tl.Parts = append(tl.Parts, part{Class: vault.Class(c), CTSHA256: h, Day: b, Key: a})
	}
	if n%2 == 1 {
		tl.Unencrypted = map[string]string{a: b, c: a, b + "x": c}
	}
	return tl
}

// samePlainJSON fails unless appendPlain gives encoding/json's bytes.
func samePlainJSON(t *testing.T, p plain) {
	t.Helper()
	want, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendPlain([]byte("x"), &p); !bytes.Equal(got[1:], want) || got[0] != 'x' {
		t.Fatalf("appendPlain %q\nencoding/json %q", got, want)
	}
}

// plainFrom builds a part's clear text from arbitrary strings, every
// field present or not as n's bits say.
func plainFrom(a, b, c string, n int) plain {
	var p plain
	for i, f := range []*string{&p.Host, &p.Login, &p.Person, &p.Request, &p.Session, &p.Source} {
		if n>>i&1 == 1 {
			*f = []string{a, b, c}[i%3]
		}
	}
	if n>>6&1 == 1 {
		p.Attrs = map[string]string{a: b, b + c: a, c: ""}
	}
	return p
}

func TestTailV2JSON(t *testing.T) {
	odd := []string{"", "acme", `q"uote\back`, "<html>&amp;", "\x00\x01\b\f\n\r\t\x1f\x7f",
		"caf\xc3\xa9 \xe2\x80\xa8 \xe2\x80\xa9 \xf0\x9f\x98\x80", "bad \xff\xfe utf8 \xc3", "2030-01-02T03:04:05.000000006Z"}
	for i, a := range odd {
		for j, b := range odd {
			sameTailJSON(t, tailFrom(a, b, odd[(i+j)%len(odd)], i*len(odd)+j))
			for n := range 128 {
				samePlainJSON(t, plainFrom(a, b, odd[(i+j+n)%len(odd)], n))
			}
		}
	}
	sameTailJSON(t, tailV2{Parts: []part{}, V: recordV2})
	sameTailJSON(t, tailV2{V: -7})
	// A clear attribute named ct reads as a part's ct: refused, as before.
	sameTailJSON(t, tailV2{Unencrypted: map[string]string{"ct": "x", "a": "b"}, V: recordV2})
}

func FuzzTailV2JSON(f *testing.F) {
	f.Add("acme", "2030-01-02T03:04:05Z", "exec", 2)
	f.Add("<&>", "\u2028\xff", `"\`, 7)
	f.Fuzz(func(t *testing.T, a, b, c string, n int) {
		sameTailJSON(t, tailFrom(a, b, c, n))
		samePlainJSON(t, plainFrom(a, b, c, n))
	})
}

// BenchmarkPreEncodeV2 is one appender's CPU per event: split, encrypt
// and encode, and the leaf form.
func BenchmarkPreEncodeV2(b *testing.B) {
	keys := keysFor(b, b.TempDir()+"/audit")
	e := ev(1)
	e.Time = newClock().Now()
	for b.Loop() {
		if _, err := preEncodeV2(e, keys); err != nil {
			b.Fatal(err)
		}
	}
}
