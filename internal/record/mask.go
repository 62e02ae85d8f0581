package record

import "bytes"

// promptTail is how much recent output is kept to spot a secret prompt
// split across reads (also a coloured one, or a pinentry dialog line).
const promptTail = 1 << 10

// masker decides which input answers a secret prompt (IsSecretPrompt) and
// is therefore sealed instead of recorded. Masking starts when output ends
// with a prompt and stops at the first Enter, Ctrl-C or Ctrl-D typed
// afterwards. Output after the prompt does not stop it (prompts that echo
// '*' per key would otherwise leak the rest of the secret); when in doubt,
// sealing a line is the safer error, and a session that seals more than a
// few secrets' worth is flagged (SealedSummary.Flagged).
type masker struct {
	tail   []byte // last promptTail bytes of output
	masked bool
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
	if !m.masked && IsSecretPrompt(m.tail) {
		m.masked = true
	}
}

// input splits p into a prefix to seal (hidden bytes) and the rest, which
// is recorded as typed. ended reports that p ends the masked stretch (an
// Enter, Ctrl-C or Ctrl-D follows the hidden prefix).
func (m *masker) input(p []byte) (hidden int, ended bool) {
	if !m.masked {
		return 0, false
	}
	end := bytes.IndexAny(p, "\r\n\x03\x04")
	if end < 0 {
		return len(p), false
	}
	m.masked = false
	m.tail = m.tail[:0]
	return end, true
}
