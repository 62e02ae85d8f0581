package auditcli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// A crafted SSH user name "login%host" reaches the audit log as login and
// host. `tandem audit show` prints it escaped, so it cannot forge or
// overwrite lines or set the window title; --json keeps the exact bytes.
func TestShowEscapesCraftedUserName(t *testing.T) {
	const user = "x\x1b]0;owned\x07%h\u202eost"
	login, host, _ := strings.Cut(user, "%")
	data := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: filepath.Join(data, "audit"), Key: testKey(t), Keys: keysOf(t, data)})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []audit.Event{
		{Type: audit.AuthFailure, Attrs: map[string]string{"user": user, "reason": "key \u009b refused\r\n1 forged"}},
		{Type: audit.SessionDenied, Person: "alice", Login: login, Host: host, Session: "s\u009b1",
			Tenant: "acme" /* a configured id, never the client's: v2 refuses others */, Request: "r\x7f", Attrs: map[string]string{"reason": "unknown host", "k\x1b": "v"}},
	} {
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := run(t, nil, "show", "--data", data, "--kek-file", kekOf(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		if r == 0x1b || r == 0x07 || r == '\r' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x202e || r == 0x200b {
			t.Fatalf("raw %U in audit show:\n%q", r, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("%d lines for 2 records:\n%s", n, out)
	}
	for _, want := range []string{
		`host=x\x1b]0;owned\x07@h\u202eost`, `session=s\u009b1`, `tenant=acme`, `request=r\x7f`, `k\x1b="v"`,
		`user="x\x1b]0;owned\a%h\u202eost"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit show lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, nil, "show", "--data", data, "--kek-file", kekOf(data), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Attrs map[string]string `json:"attrs"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.Attrs["user"] != user {
		t.Fatalf("--json changed the user name: %q %v", first.Attrs["user"], err)
	}
}
