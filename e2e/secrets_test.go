package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestRecordingSealsSecrets (issue 13, item 7): in a session through the
// gateway, a real sudo in a German locale asks "[sudo] Passwort für …:"
// and a real su asks "Passwort:"; the password typed at both is sealed,
// not recorded: the export (local and over SSH) lacks it and shows a
// "… keystrokes sealed (secret prompt)" marker at each prompt,
// session.end counts the sealed keystrokes, the listing shows them, and
// no file under data_dir holds the password in plaintext.
func TestRecordingSealsSecrets(t *testing.T) {
	t.Parallel()
	testenv.RequireProgram(t, "sudo")
	testenv.RequireProgram(t, "su")
	testenv.RequireProgram(t, "useradd")
	if os.Geteuid() != 0 {
		t.Skip("creating a test user with a password needs root")
	}
	e := newRecordingEnv(t)
	user := "tdm" + nonce(t)[:8]
	password := "Pw-" + nonce(t)
	if out, err := exec.Command("useradd", "-M", "-s", "/bin/sh", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", user, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", user).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", user, err, out)
		}
	})
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(user + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}

	tm := e.open(t, "alice", e.dest("tst1")...)
	terms := []*feTerm{tm}
	// German messages: sudo and PAM are translated (LANGUAGE works with
	// the C.UTF-8 locale, so no German locale needs to be generated).
	tm.send(t, "export LANG=C.UTF-8 LANGUAGE=de; su "+user+"\r")
	tm.send(t, "echo SUDO-NEXT; sudo -k; sudo true\r")
	prompt := "[sudo] Passwort für " + user + ":"
	if !tm.waitFor(prompt, 20*time.Second) {
		e.fail(t, terms, "sudo did not ask %q", prompt)
	}
	tm.send(t, password+"\r")
	// The user is not in sudoers: sudo says so after checking the password.
	if !tm.waitFor("sudoers", 20*time.Second) {
		e.fail(t, terms, "sudo did not answer after the password")
	}
	tm.send(t, "echo SU-NEXT; su "+user+" -c 'echo SU-$((40+2))'\r")
	suPrompt := testenv.WaitFor(20*time.Second, func() bool {
		s := tm.screen.String()
		i := strings.LastIndex(s, "SU-NEXT")
		return i >= 0 && strings.Contains(s[i:], "Passwort:")
	})
	if !suPrompt {
		e.fail(t, terms, "su did not ask %q", "Passwort:")
	}
	tm.send(t, password+"\r")
	if !tm.waitFor("SU-42", 20*time.Second) {
		e.fail(t, terms, "su did not run the command after the password")
	}
	tm.send(t, "exit\r")
	tm.send(t, "exit\r")
	if !tm.waitExit(10 * time.Second) {
		e.fail(t, terms, "alice's ssh did not end after exit")
	}
	if strings.Contains(tm.screen.String(), password) {
		t.Fatalf("the password was echoed to the terminal; the test cannot tell sealing from output")
	}

	end := e.sessionEnd(t, "alice", "tst1")
	t.Logf("session.end of %s: %v", end.Session, end.Attrs)
	keys := strconv.Itoa(2 * len(password))
	if end.Attrs["sealed_prompts"] != "2" || end.Attrs["sealed_keystrokes"] != keys || end.Attrs["sealed_flag"] != "" ||
		end.Attrs["sealed_file_sha256"] == "" {
		t.Errorf("session.end: want sealed_prompts=2 sealed_keystrokes=%s, a sealed_file_sha256 and no sealed_flag; attrs: %v", keys, end.Attrs)
	}

	cast := e.mustExport(t, end.Session, "rita")
	_, evs := parseCast(t, cast)
	if strings.Contains(cast, password) {
		t.Errorf("the export holds the password:\n%s", clipTail(cast, 3000))
	}
	marker := strconv.Itoa(len(password)) + " keystrokes sealed (secret prompt)"
	if n := strings.Count(joined(evs, "m"), marker); n != 2 {
		t.Errorf("the export has %d markers %q, want 2 (sudo and su); markers:\n%s", n, marker, joined(evs, "m"))
	}
	if out := joined(evs, "o"); !strings.Contains(out, prompt) || !strings.Contains(out, "SU-42") {
		t.Errorf("the export lacks the sudo prompt or SU-42:\n%s", clipTail(out, 2000))
	}
	r := e.clients["rita"].SSH(t, "gw", "export", end.Session)
	if r.Code != 0 || r.Stdout != cast {
		t.Errorf("ssh gw export %s: code %d, same as the local export: %v", end.Session, r.Code, r.Stdout == cast)
	}
	r = e.clients["rita"].SSH(t, "gw", "recordings", "--host", "tst1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "SEALED") {
		t.Fatalf("ssh gw recordings: %s", r)
	}
	listed := false
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(line, end.Session) {
			listed = strings.Contains(line, "  "+keys+"  ")
		}
	}
	if !listed {
		t.Errorf("ssh gw recordings: want %s with %s sealed keystrokes in the SEALED column:\n%s", end.Session, keys, r.Stdout)
	}

	// The password lies nowhere under data_dir in plaintext; the sealed
	// keystrokes are there, encrypted, apart from the recordings.
	sealed := 0
	testenv.EachFile(t, e.DataDir, func(p string, d fs.DirEntry, b []byte) {
		if bytes.Contains(b, []byte(password)) {
			t.Errorf("the password is in plaintext in %s", p)
		}
		if strings.HasSuffix(p, ".sealed") {
			sealed++
			if info, _ := d.Info(); info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", p, info.Mode().Perm())
			}
		}
	})
	if sealed != 1 || end.Attrs["sealed"] == "" || !strings.HasPrefix(end.Attrs["sealed"], filepath.Join(e.DataDir, "sealed")) {
		t.Errorf("want one .sealed file under %s/sealed, found %d; session.end names %q", e.DataDir, sealed, end.Attrs["sealed"])
	}
}
