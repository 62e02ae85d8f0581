package admin

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"whoami", []string{"whoami"}, false},
		{"  lock  bob ", []string{"lock", "bob"}, false},
		{`request --reason "ticket 42: fix \"db\""`, []string{"request", "--reason", `ticket 42: fix "db"`}, false},
		{`a 'b c' d`, []string{"a", "b c", "d"}, false},
		{`a''b`, []string{"ab"}, false},
		{`''`, []string{""}, false},
		{`a\ b`, []string{"a b"}, false},
		{`"unterminated`, nil, true},
		{`'unterminated`, nil, true},
		{`trailing\`, nil, true},
		{strings.Repeat("x", maxCommandLine+1), nil, true},
	}
	for _, c := range cases {
		got, err := splitArgs(c.in)
		if (err != nil) != c.err {
			t.Errorf("splitArgs(%q) err = %v, want err %v", c.in, err, c.err)
			continue
		}
		if !c.err && !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"whoami", `a "b c" 'd'`, `x\ y`, `"`, "\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args, err := splitArgs(line)
		if err != nil {
			return
		}
		total := 0
		for _, a := range args {
			total += len(a)
		}
		if total > len(line) {
			t.Fatalf("words longer than the line: %q -> %q", line, args)
		}
	})
}

// TestCommandArgs: one reader for every gateway command; free text may
// run unquoted to the end of the line (ssh joins its arguments with
// blanks), and everything else is an error that says what is wrong.
func TestCommandArgs(t *testing.T) {
	cases := []struct {
		line        string
		text, what  string
		wantOperand string
		wantReason  string
		wantFor     string
		wantErr     string
	}{
		{"bob --reason left the company", "reason", "person", "bob", "left the company", "0s", ""},
		{"bob --for 1h --reason left the company", "reason", "person", "bob", "left the company", "1h0m0s", ""},
		{"--reason x bob", "reason", "person", "", "x bob", "0s", "name the person"},
		{"--for 2h bob --reason on leave", "reason", "person", "bob", "on leave", "2h0m0s", ""},
		{"bob", "reason", "person", "bob", "", "0s", ""},
		{"", "", "person", "", "", "0s", "name the person"},
		{"bob alice", "", "person", "", "", "0s", "unexpected arguments"},
		{"bob --bogus", "reason", "person", "", "", "0s", "usage: t"},
		{"--reason fix the db", "reason", "", "", "fix the db", "0s", ""},
		{"stray --reason fix", "reason", "", "", "", "0s", "unexpected argument \"stray\""},
	}
	for _, c := range cases {
		t.Run(c.line, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			reason := fs.String("reason", "", "why")
			dur := fs.Duration("for", 0, "how long")
			args, _ := splitArgs(c.line)
			got, err := commandArgs(fs, args, c.text, c.what)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.wantOperand || *reason != c.wantReason || dur.String() != c.wantFor {
				t.Fatalf("got %q %q %s, want %q %q %s", got, *reason, dur, c.wantOperand, c.wantReason, c.wantFor)
			}
		})
	}
}

// FuzzCommandArgs: any command line a person can type is read without a
// panic, and a line that is accepted names its operand. (After "--" an
// operand may look like a flag, as with every Go flag set.)
func FuzzCommandArgs(f *testing.F) {
	f.Add("bob --reason left the company")
	f.Add("--for 2h bob --reason x")
	f.Add("-- --reason")
	f.Fuzz(func(t *testing.T, line string) {
		args, err := splitArgs(line)
		if err != nil {
			return
		}
		fs := flag.NewFlagSet("f", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("reason", "", "")
		fs.Duration("for", 0, "")
		op, err := commandArgs(fs, args, "reason", "person")
		if err == nil && op == "" {
			t.Fatalf("%q: operand %q", line, op)
		}
	})
}
