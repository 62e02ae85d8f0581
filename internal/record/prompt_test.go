package record

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestIsSecretPrompt(t *testing.T) {
	tests := []struct {
		out  string
		want bool
	}{
		// sudo, su, passwd in English and German.
		{"$ sudo -i\r\n[sudo] password for alice: ", true},
		{"[sudo] Passwort für deploy: ", true},
		{"[sudo] Kennwort für deploy:", true},
		{"Password: ", true},
		{"Passwort: ", true},
		{"Kennwort: ", true},
		{"Changing password for alice.\r\nCurrent password: ", true},
		{"(current) UNIX password: ", true},
		{"New password: ", true},
		{"Retype new password: ", true},
		{"Aktuelles Passwort: ", true},
		{"Neues Passwort: ", true},
		{"Geben Sie das neue Passwort erneut ein: ", true},
		// ssh, ssh-keygen.
		{"alice@db1's password: ", true},
		{"Enter passphrase for key '/root/.ssh/id_ed25519': ", true},
		{"Geben Sie die Passphrase für den Schlüssel '/root/.ssh/id_ed25519' ein: ", true},
		{"Enter passphrase (empty for no passphrase): ", true},
		// mysql, psql.
		{"Enter password: ", true},
		{"Password for user app: ", true},
		{"Passwort für Benutzer app: ", true},
		// gpg.
		{"Passphrase: ", true},
		{"\x1b[2;3HPlease enter the passphrase to unlock the OpenPGP secret key:\x1b[5;3HPassphrase: \x1b[5;15H", true},
		{"\x1b[2;3HPlease enter the passphrase to unlock the OpenPGP secret key\x1b[7;20H", true},
		{"\x1b[2;3HBitte geben Sie die Passphrase ein, um den geheimen Schlüssel zu entsperren\x1b[7;20H", true},
		// PIN, token, one-time codes.
		{"PIN: ", true},
		{"Enter PIN for 'PIV Card Holder pin (PIV_II)': ", true},
		{"Token: ", true},
		{"OTP: ", true},
		{"Verification code: ", true},
		{"One-time password (OATH) for `alice': ", true},
		{"Einmalpasswort: ", true},
		{"Bestätigungscode: ", true},
		{"BESTÄTIGUNGSCODE:", true},
		{"TAN: ", true},
		// Colours, cursor moves, titles, [sudo] prefix, line editing.
		{"\x1b[1;31m[sudo] Passwort für deploy:\x1b[0m ", true},
		{"\x1b]0;root@db1: ~\x07\x1b[01;32mPIN\x1b[00m: ", true},
		{"\r\x1b[KPassword: ", true},
		{"Password: \x1b[?25l", true},
		{"foo\x1b[12;1HPassword:", true},
		// Not prompts.
		{"", false},
		{"Name: ", false},
		{"password stored\r\n$ ", false},
		{"[sudo] password for alice: \r\nSorry, try again.\r\n$ ", false},
		{"Password: \x1b[3;1H", false}, // the cursor left the prompt line
		{"Spinning: ", false},
		{"Tokens used: 5\r\n$ ", false},
		{"Shipping:", false},
		{"passwords.txt  notes.txt\r\nroot@db1:~# ", false},
		{"root@db1:~# ", false},
		{"Please enter the passphrase\r\n$ ", false},
		{"log: user failed to enter " + strings.Repeat("x", 200) + " password:", false},
		{"Password: ok\r\n", false},
	}
	for _, tc := range tests {
		if got := IsSecretPrompt([]byte(tc.out)); got != tc.want {
			t.Errorf("IsSecretPrompt(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}

// FuzzPromptDetector: the detector never panics and stays cheap whatever
// the output, because it runs on every chunk a target prints.
func FuzzPromptDetector(f *testing.F) {
	for _, s := range []string{"[sudo] Passwort für deploy: ", "\x1b[1mPIN\x1b[0m: ", "\x1b]0;t\x07Password:",
		"\x1b[", "\x1b]", "\x1b(", "\xff\xfe:", "Bestätigungscode:", strings.Repeat("\x1b[1;2;3", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		start := time.Now()
		IsSecretPrompt(out)
		// Bounded: it looks at 2 KiB at most.
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("IsSecretPrompt took %v on %d bytes", d, len(out))
		}
		// A line break after anything ends the question (unless an
		// unfinished escape sequence swallows it, as a terminal would).
		if !bytes.Contains(out, []byte{0x1b}) && IsSecretPrompt(append(out, "\r\n$ "...)) {
			t.Fatalf("IsSecretPrompt(%q + a new line) is true", out)
		}
	})
}

func TestIsSecretPromptHuge(t *testing.T) {
	big := []byte(strings.Repeat("a\x1b[1;1H", 1<<20) + "Password: ")
	start := time.Now()
	if !IsSecretPrompt(big) {
		t.Fatal("prompt after 7 MiB of output not found")
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("IsSecretPrompt took %v on %d bytes", d, len(big))
	}
}
