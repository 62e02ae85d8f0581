package session

import (
	"bytes"
	"testing"
)

func TestInputFilter(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
		act    Action
	}{
		{"plain", []string{"ls -l\r"}, "ls -l\r", ActNone},
		{"end", []string{"ab\x1dqcd"}, "ab", ActEnd},
		{"end split", []string{"ab\x1d", "qcd"}, "ab", ActEnd},
		{"end then more input is discarded", []string{"\x1dq", "rm -rf /\r"}, "", ActEnd},
		{"literal escape", []string{"a\x1d\x1db"}, "a\x1db", ActNone},
		{"literal escape split", []string{"a\x1d", "\x1db"}, "a\x1db", ActNone},
		{"other byte passes both", []string{"\x1dx"}, "\x1dx", ActNone},
		{"help", []string{"\x1d?"}, "", ActHelp},
		{"trailing escape held", []string{"a\x1d"}, "a", ActNone},
		{"openssh escape untouched", []string{"\r~."}, "\r~.", ActNone},
		{"double literal then end", []string{"\x1d\x1d\x1dq"}, "\x1d", ActEnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f InputFilter
			var got []byte
			act := ActNone
			for _, c := range tt.chunks {
				out, a := f.Filter([]byte(c))
				got = append(got, out...)
				if a != ActNone && act == ActNone {
					act = a
				}
			}
			if string(got) != tt.want || act != tt.act {
				t.Fatalf("got %q, %v; want %q, %v", got, act, tt.want, tt.act)
			}
		})
	}
}

// TestInputFilterDropHeld: a Ctrl-] held at the end of a chunk typed while
// input was discarded is left out when the next byte makes it input, and
// still works as the escape.
func TestInputFilterDropHeld(t *testing.T) {
	for _, tt := range []struct {
		name          string
		first, second string
		want          string
		act           Action
	}{
		{"other byte", "a\x1d", "x", "ax", ActNone},
		{"literal escape", "a\x1d", "\x1db", "ab", ActNone},
		{"end", "\x1d", "q", "", ActEnd},
		{"help", "\x1d", "?x", "x", ActHelp},
		{"only the held one", "\x1d", "x\x1dy", "x\x1dy", ActNone},
		{"nothing held", "a", "\x1dx", "a\x1dx", ActNone},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f InputFilter
			got, _ := f.Filter([]byte(tt.first))
			got = append([]byte(nil), got...)
			f.dropHeld()
			out, act := f.Filter([]byte(tt.second))
			got = append(got, out...)
			if string(got) != tt.want || act != tt.act {
				t.Fatalf("got %q, %v; want %q, %v", got, act, tt.want, tt.act)
			}
		})
	}
}

// filterAll feeds chunks and returns the forwarded bytes and whether the
// session would end.
func filterAll(chunks [][]byte) ([]byte, bool) {
	var f InputFilter
	var out []byte
	for _, c := range chunks {
		o, a := f.Filter(c)
		out = append(out, o...)
		if a == ActEnd {
			return out, true
		}
	}
	return out, false
}

func FuzzInputFilter(f *testing.F) {
	f.Add([]byte("ls\r"), 1)
	f.Add([]byte("a\x1dqb"), 2)
	f.Add([]byte("\x1d\x1d\x1d?x\x1d"), 3)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		whole, endWhole := filterAll([][]byte{in})
		// Splitting the input anywhere (every byte on its own, or at one
		// point) must not change the result: typists are slow.
		var bytewise [][]byte
		for i := range in {
			bytewise = append(bytewise, in[i:i+1])
		}
		one, endOne := filterAll(bytewise)
		if !bytes.Equal(whole, one) || endWhole != endOne {
			t.Fatalf("bytewise differs: %q/%v vs %q/%v", whole, endWhole, one, endOne)
		}
		if len(in) > 0 {
			k := split % (len(in) + 1)
			if k < 0 {
				k = -k
			}
			two, endTwo := filterAll([][]byte{in[:k], in[k:]})
			if !bytes.Equal(whole, two) || endWhole != endTwo {
				t.Fatalf("split at %d differs", k)
			}
			// Dropping a Ctrl-] held at the split leaves out that one
			// byte at most, and never changes the end.
			var g InputFilter
			first, _ := g.Filter(in[:k])
			first = append([]byte(nil), first...)
			g.dropHeld()
			rest, _ := g.Filter(in[k:])
			dropped := append(first, rest...)
			if g.ended != endWhole {
				t.Fatalf("dropHeld at %d changed the end", k)
			}
			if !bytes.Equal(dropped, whole) &&
				!bytes.Equal(append(append(append([]byte(nil), first...), EscapeByte), rest...), whole) {
				t.Fatalf("dropHeld at %d: %q, want %q or it without one Ctrl-] after %q", k, dropped, whole, first)
			}
		}
		if len(whole) > len(in) {
			t.Fatalf("output longer than input")
		}
		if !bytes.Contains(in, []byte{EscapeByte}) && !bytes.Equal(whole, in) {
			t.Fatalf("input without escape changed: %q -> %q", in, whole)
		}
		if bytes.Contains(in, []byte{EscapeByte, 'q'}) != endWhole && !bytes.Contains(in, []byte{EscapeByte, EscapeByte}) {
			t.Fatalf("end detection wrong for %q", in)
		}
	})
}
