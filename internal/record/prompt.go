package record

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// maxPromptScan bounds the output IsSecretPrompt looks at: the prompt is
// on the last line, and a bound keeps the detector linear and cheap on any
// input (it runs on every chunk of terminal output).
const maxPromptScan = 2 << 10

// maxPromptLine is the longest last line taken for a prompt; longer lines
// are output (a log line that happens to end in "password:"), not a
// question.
const maxPromptLine = 200

// secretWords mark a prompt for a secret wherever they appear in the last
// line (lower case): passwords and passphrases of sudo, su, passwd, ssh,
// mysql, psql and gpg in English and German, and one-time codes.
var secretWords = [][]byte{
	[]byte("password"),   // Password:, [sudo] password for x:, x@h's password:, Enter password:, one-time password
	[]byte("passwort"),   // Passwort:, [sudo] Passwort für x:, Neues Passwort:, Einmalpasswort:
	[]byte("kennwort"),   // Kennwort:, Kennwort für x:
	[]byte("passphrase"), // Enter passphrase for key …:, Geben Sie die Passphrase … ein:
	[]byte("passcode"),
	[]byte("one-time"),
	[]byte("einmal"),            // Einmalcode:, Einmalkennwort:
	[]byte("verification code"), // Verification code: (Google Authenticator PAM)
	[]byte("bestätigungscode"),
	[]byte("verifizierungscode"),
	[]byte("sicherheitscode"),
	[]byte("security code"),
	[]byte("authentication code"),
	[]byte("authentifizierungscode"),
}

// secretTokens mark a prompt only as whole words: "PIN:" is a prompt,
// "Spinning:" is not.
var secretTokens = []string{"pin", "token", "otp", "totp", "hotp", "tan", "2fa", "mfa", "yubikey"}

// dialogPhrases are the texts of full-screen passphrase dialogs
// (pinentry-curses), which draw with cursor movement and end without a
// prompt line of their own: found anywhere on the last text line.
var dialogPhrases = [][]byte{
	[]byte("please enter the passphrase"),
	[]byte("please enter your passphrase"),
	[]byte("please enter the pin"),
	[]byte("please enter your pin"),
	[]byte("bitte geben sie die passphrase"),
	[]byte("bitte geben sie ihre passphrase"),
	[]byte("bitte geben sie die pin"),
	[]byte("bitte geben sie ihre pin"),
}

// IsSecretPrompt reports whether terminal output that ends with out is
// asking for a secret, so that the keystrokes typed next must not be
// stored in the readable recording. It is a pure function of out.
//
// The question is the last line of out: the text after the last line
// break, where cursor positioning (CSI H, f, G, d, A, B, E, F) counts as a
// line break too. Escape sequences (colours, erase, OSC titles) are
// removed first. The line is a secret prompt if it ends with ':' (blanks
// after it allowed), is at most 200 bytes long, and contains, in any case,
// one of secretWords ("password", "Passwort", "Kennwort", "passphrase",
// "verification code", "Bestätigungscode" …) or one of secretTokens as a
// whole word ("PIN", "Token", "OTP" …). This takes "[sudo] Passwort für
// deploy: ", "alice@db1's password: ", "Enter passphrase for key '…': ",
// "Password for user app: ", "Retype new password: ", "Verification
// code: " and "\x1b[1;31mPIN:\x1b[0m ". Independently, a pinentry dialog
// ("Please enter the passphrase …", "Bitte geben Sie die Passphrase …")
// anywhere on the last '\n'-terminated line counts, because curses draws
// the dialog with cursor movement instead of line breaks.
//
// It looks at no more than the last 2 KiB of out, so its cost is bounded
// whatever it is given.
func IsSecretPrompt(out []byte) bool {
	if len(out) > maxPromptScan {
		out = out[len(out)-maxPromptScan:]
	}
	line, screen := lastPromptLine(out)
	if isPromptLine(line) {
		return true
	}
	lower := bytes.ToLower(screen)
	for _, p := range dialogPhrases {
		if bytes.Contains(lower, p) {
			return true
		}
	}
	return false
}

// isPromptLine applies the prompt rule to one line without escapes.
func isPromptLine(line []byte) bool {
	line = bytes.TrimRightFunc(line, unicode.IsSpace)
	if len(line) == 0 || len(line) > maxPromptLine || line[len(line)-1] != ':' {
		return false
	}
	lower := bytes.ToLower(line)
	for _, w := range secretWords {
		if bytes.Contains(lower, w) {
			return true
		}
	}
	for _, w := range words(lower) {
		for _, t := range secretTokens {
			if w == t {
				return true
			}
		}
	}
	return false
}

// words splits s into runs of letters and digits.
func words(s []byte) []string {
	var out []string
	start := -1
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			out = append(out, string(s[start:i]))
			start = -1
		}
		i += n
	}
	if start >= 0 {
		out = append(out, string(s[start:]))
	}
	return out
}

// lastPromptLine returns the text of out after its last line break or
// cursor positioning, and after its last '\n' (the screen line for
// dialogs), both with escape sequences and control characters removed.
func lastPromptLine(out []byte) (line, screen []byte) {
	for i := 0; i < len(out); {
		c := out[i]
		switch {
		case c == '\n':
			line, screen = line[:0], screen[:0]
			i++
		case c == '\r':
			line = line[:0]
			i++
		case c == 0x1b:
			n, moves := escapeLen(out[i:])
			if moves {
				line = line[:0]
			}
			i += n
		case c == '\b':
			// A backspace takes the previous character back.
			if len(line) > 0 {
				_, sz := utf8.DecodeLastRune(line)
				line = line[:len(line)-sz]
			}
			i++
		case c < 0x20 || c == 0x7f:
			i++
		default:
			line = append(line, c)
			screen = append(screen, c)
			i++
		}
	}
	return line, screen
}

// escapeLen returns the length of the escape sequence at the start of p
// (p[0] is ESC) and whether it moves the cursor to another place. An
// unfinished sequence takes the rest of p.
func escapeLen(p []byte) (n int, moves bool) {
	if len(p) < 2 {
		return len(p), false
	}
	switch p[1] {
	case '[': // CSI: parameters and intermediates 0x20–0x3f, final 0x40–0x7e
		j := 2
		for j < len(p) && p[j] >= 0x20 && p[j] <= 0x3f {
			j++
		}
		if j == len(p) {
			return j, false
		}
		if p[j] < 0x40 || p[j] > 0x7e {
			return j, false // broken sequence: drop what was read
		}
		switch p[j] {
		case 'H', 'f', 'G', 'd', 'A', 'B', 'E', 'F':
			moves = true
		}
		return j + 1, moves
	case ']', 'P', '_', '^': // OSC, DCS, APC, PM: up to BEL or ST
		for j := 2; j < len(p); j++ {
			if p[j] == 0x07 {
				return j + 1, false
			}
			if p[j] == 0x1b && j+1 < len(p) && p[j+1] == '\\' {
				return j + 2, false
			}
		}
		return len(p), false
	default: // ESC, intermediates 0x20–0x2f, one final byte (ESC 7, ESC ( B …)
		j := 1
		for j < len(p) && p[j] >= 0x20 && p[j] <= 0x2f {
			j++
		}
		if j < len(p) {
			j++
		}
		return j, false
	}
}
