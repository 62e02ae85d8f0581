package record

import "bytes"

// promptTail is how much recent output is kept to spot a password prompt
// split across reads.
const promptTail = 256

// masker decides which input is hidden because it answers a password
// prompt. Masking starts when output ends with a prompt and stops at the
// first Enter, Ctrl-C or Ctrl-D typed afterwards. Output after the prompt
// does not stop it (prompts that echo '*' per key would otherwise leak the
// rest of the password); when in doubt, hiding a line is the safer error.
type masker struct {
	tail   []byte // last promptTail bytes of output
	masked bool
	noted  map[string]bool // persons whose hidden input was recorded this stretch
}

// output feeds terminal output.
func (m *masker) output(p []byte) {
	if len(p) >= promptTail {
		m.tail = append(m.tail[:0], p[len(p)-promptTail:]...)
	} else {
		if over := len(m.tail) + len(p) - promptTail; over > 0 {
			m.tail = append(m.tail[:0], m.tail[over:]...)
		}
		m.tail = append(m.tail, p...)
	}
	if endsWithPasswordPrompt(m.tail) {
		m.masked = true
	}
}

// input splits p into a hidden prefix and the part to record as typed.
// first reports whether this is person's first hidden input in the
// current stretch (so one hidden-input event is stored per person).
func (m *masker) input(person string, p []byte) (hidden int, first bool) {
	if !m.masked {
		return 0, false
	}
	end := bytes.IndexAny(p, "\r\n\x03\x04")
	if end < 0 {
		hidden = len(p)
	} else {
		hidden = end
	}
	if hidden > 0 && !m.noted[person] {
		if m.noted == nil {
			m.noted = map[string]bool{}
		}
		m.noted[person] = true
		first = true
	}
	if end >= 0 {
		m.masked = false
		m.tail = m.tail[:0]
		clear(m.noted)
	}
	return hidden, first
}

// endsWithPasswordPrompt reports whether the last line of out, without
// colour codes and trailing blanks, looks like "… password …:" or
// "… passphrase …:". This covers "[sudo] password for alice: ",
// "Password:", "alice@db1's password:" and "Enter passphrase for key …:".
func endsWithPasswordPrompt(out []byte) bool {
	if i := bytes.LastIndexAny(out, "\r\n"); i >= 0 {
		out = out[i+1:]
	}
	line := bytes.TrimRight(stripSGR(out), " \t")
	if len(line) == 0 || line[len(line)-1] != ':' {
		return false
	}
	lower := bytes.ToLower(line)
	return bytes.Contains(lower, []byte("password")) || bytes.Contains(lower, []byte("passphrase"))
}

// stripSGR removes colour sequences (ESC [ digits/; m), which some prompts
// wear. Other escape sequences stay, so cursor movement in a full-screen
// program does not look like the end of a prompt line.
func stripSGR(p []byte) []byte {
	if bytes.IndexByte(p, 0x1b) < 0 {
		return p
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == 0x1b && i+1 < len(p) && p[i+1] == '[' {
			j := i + 2
			for j < len(p) && (p[j] >= '0' && p[j] <= '9' || p[j] == ';') {
				j++
			}
			if j < len(p) && p[j] == 'm' {
				i = j
				continue
			}
		}
		out = append(out, p[i])
	}
	return out
}
