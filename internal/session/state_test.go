package session

import (
	"bytes"
	"strings"
	"testing"
)

func TestNext(t *testing.T) {
	states := []State{Waiting, Live, Paused, Ended}
	events := []Event{SecondJoined, SecondLeft, WaitTimeout, GraceExpired, EndEvent}
	// want[state][event]; a missing entry means "no change".
	want := map[State]map[Event]State{
		Waiting: {SecondJoined: Live, WaitTimeout: Ended, EndEvent: Ended},
		Live:    {SecondLeft: Paused, EndEvent: Ended},
		Paused:  {SecondJoined: Live, GraceExpired: Ended, EndEvent: Ended},
		Ended:   {},
	}
	for _, s := range states {
		for _, e := range events {
			exp, ok := want[s][e]
			if !ok {
				exp = s
			}
			got, changed := Next(s, e)
			if got != exp || changed != (exp != s) {
				t.Errorf("Next(%s, %s) = %s, %v; want %s, %v", s, e, got, changed, exp, exp != s)
			}
		}
	}
}

func TestScreenTail(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		in    []string
		want  string // after the clear-screen prefix
	}{
		{"short", 100, []string{"a\r\n", "b"}, "a\r\nb"},
		{"after clear", 100, []string{"old\r\n\x1b[2J", "new"}, "\x1b[2Jnew"},
		{"clear split over chunks", 100, []string{"old\x1b[", "2Jnew"}, "\x1b[2Jnew"},
		{"reset", 100, []string{"old\x1bcnew"}, "\x1bcnew"},
		{"cut at line", 10, []string{"line1\r\nline2\r\nline3"}, "line3"},
		{"cut without newline", 4, []string{"abcdefgh"}, "efgh"},
		{"disabled", 0, []string{"abc"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := screenTail{limit: tt.limit}
			for _, c := range tt.in {
				st.add([]byte(c))
			}
			got := st.replay()
			if !bytes.HasPrefix(got, []byte(clearScreen)) {
				t.Fatalf("replay %q does not clear first", got)
			}
			if g := strings.TrimPrefix(string(got), clearScreen); g != tt.want {
				t.Fatalf("replay = %q, want %q", g, tt.want)
			}
		})
	}
	// Bounded memory over much output.
	st := screenTail{limit: 1024}
	chunk := bytes.Repeat([]byte("x\n"), 500)
	for range 10000 {
		st.add(chunk)
	}
	if len(st.buf) > 1024 || cap(st.buf) > 4*1024+2*len(chunk) {
		t.Fatalf("tail holds %d bytes, cap %d", len(st.buf), cap(st.buf))
	}
}
