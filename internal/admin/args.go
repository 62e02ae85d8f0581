package admin

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// maxCommandLine bounds a gateway command line; nothing legitimate is longer.
const maxCommandLine = 4096

// splitArgs splits a command line the way a POSIX shell would for plain
// words: blanks separate words, single quotes keep everything, double
// quotes keep everything but \" and \\, a backslash escapes the next
// character. No expansion of any kind happens.
func splitArgs(line string) ([]string, error) {
	if len(line) > maxCommandLine {
		return nil, errors.New("command line too long")
	}
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case ch == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// commandArgs is the one argument reader of the gateway commands. A
// command takes at most one operand (a request id, a person, a session
// id), and flags; the operand comes first (`lock bob --reason …`), or
// after the flags when no free text precedes it.
//
// Free text may be the last flag without quotes: the remote shell — ssh
// itself — joins its arguments with blanks, so `--reason "left the
// company"` arrives as three words. Words after the text flag (textFlag,
// "" for none) belong to it; other extra words are an error. want says
// whether the operand is required (an error names it when missing);
// commands without an operand pass what == "".
func commandArgs(fs *flag.FlagSet, args []string, textFlag, what string) (operand string, err error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		operand, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", usageOf(fs)
	}
	rest := fs.Args()
	if operand == "" && what != "" && len(rest) > 0 && !flagSet(fs, textFlag) {
		operand = rest[0]
		if err := fs.Parse(rest[1:]); err != nil {
			return "", usageOf(fs)
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		if textFlag == "" || !flagSet(fs, textFlag) {
			return "", fmt.Errorf("unexpected arguments %q (put free text last, after --%s)\n%v", rest, orText(textFlag), usageOf(fs))
		}
		f := fs.Lookup(textFlag)
		_ = f.Value.Set(strings.Join(append([]string{f.Value.String()}, rest...), " "))
	}
	if operand != "" && what == "" {
		return "", fmt.Errorf("unexpected argument %q\n%v", operand, usageOf(fs))
	}
	if operand == "" && what != "" {
		return "", fmt.Errorf("name the %s\n%v", what, usageOf(fs))
	}
	return operand, nil
}

func orText(name string) string {
	if name == "" {
		return "reason"
	}
	return name
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// usageOf is a usage error that shows the flags.
func usageOf(fs *flag.FlagSet) error {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return fmt.Errorf("usage: %s\n%s", fs.Name(), b.String())
}
