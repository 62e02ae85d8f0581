package auditcli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// makeLog writes a small log under data/audit and returns the data dir.
func makeLog(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	var mu sync.Mutex
	clock := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	l, err := audit.Open(audit.Options{Dir: filepath.Join(data, "audit"), Key: testKey(t), Keys: keysOf(t, data), CheckpointEvents: 5, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Minute)
		return clock
	}})
	if err != nil {
		t.Fatal(err)
	}
	events := []audit.Event{
		{Type: audit.AuthSuccess, Person: "alice"},
		{Type: audit.SessionStart, Person: "alice", Host: "db1", Login: "root", Session: "s1", Tenant: "acme"},
		{Type: audit.Exec, Person: "alice", Host: "db1", Session: "s1", Attrs: map[string]string{"cmd": "uptime"}},
		{Type: audit.AuthFailure, Person: "bob", Request: "r7"},
		{Type: audit.SessionEnd, Person: "alice", Session: "s1"},
		{Type: audit.Exec, Person: "bob", Host: "db2", Session: "s2"},
	}
	for _, e := range events {
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

// kekOf is the key-encryption key of the vault in data: beside data, as
// the configuration asks (never inside the data directory).
func kekOf(data string) string { return data + ".kek" }

// keysOf opens the vault in data, creating its KEK on first use.
func keysOf(t *testing.T, data string) *vault.Vault {
	t.Helper()
	if _, err := os.Stat(kekOf(data)); err != nil {
		if err := vault.GenerateFileKEK(kekOf(data)); err != nil {
			t.Fatal(err)
		}
	}
	kek, err := vault.FileKEK(kekOf(data))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(filepath.Join(data, "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func run(t *testing.T, resolve Resolver, args ...string) (string, error) {
	t.Helper()
	c := Command(resolve)
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestVerify(t *testing.T) {
	data := makeLog(t)
	pub := filepath.Join(t.TempDir(), "audit.pub")
	key, err := audit.PublicKey(filepath.Join(data, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resolve := func(cfg string) (Paths, error) {
		if cfg != "tandem.yaml" {
			return Paths{}, errors.New("unknown config")
		}
		return Paths{DataDir: data}, nil
	}
	out, err := run(t, resolve, "verify", "--config", "tandem.yaml")
	if err != nil || !strings.Contains(out, "result:          OK") || !strings.Contains(out, "--pubkey") {
		t.Fatalf("%s %v", out, err)
	}
	if out, err = run(t, nil, "verify", "--data", data, "--pubkey", pub); err != nil || !strings.Contains(out, "records:         7") {
		t.Fatalf("%s %v", out, err)
	}
	if _, err := run(t, nil, "verify", "--data", data, "--config", "x"); err == nil {
		t.Fatal("both --data and --config accepted")
	}
	// Tamper with record 3 (bob's failed login) and fix its CRC.
	p := filepath.Join(data, "audit", "records.log")
	b, _ := os.ReadFile(p)
	for i := 0; i < 3; i++ {
		b = b[8+binary.BigEndian.Uint32(b):]
	}
	n := binary.BigEndian.Uint32(b)
	payload := bytes.Replace(b[4:4+n], []byte(`"_gateway"`), []byte(`"_gatewbx"`), 1)
	whole, _ := os.ReadFile(p)
	off := len(whole) - len(b)
	copy(whole[off+4:], payload)
	crc := crc32c(payload)
	binary.BigEndian.PutUint32(whole[off+4+int(n):], crc)
	if err := os.WriteFile(p, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, nil, "verify", "--data", data, "--pubkey", pub)
	if err == nil || !strings.Contains(err.Error(), "first bad record 3") || !strings.Contains(out, "FAILED") {
		t.Fatalf("tampering not reported: %s %v", out, err)
	}
}

func TestShow(t *testing.T) {
	data := makeLog(t)
	tests := []struct {
		args []string
		want []string // substrings, one per expected line
	}{
		{[]string{"--person", "bob"}, []string{"auth.failure person=bob", "exec person=bob host=db2"}},
		{[]string{"--type", "exec,session.end"}, []string{"exec person=alice", "session.end", "exec person=bob"}},
		{[]string{"--type", "exec", "--type", "auth.failure", "--session", "s1"}, []string{`cmd="uptime"`}},
		{[]string{"--request", "r7"}, []string{"request=r7"}},
		{[]string{"--tenant", "acme"}, []string{"person=alice host=root@db1 session=s1 tenant=acme"}},
		{[]string{"--since", "2030-05-01T12:03:00Z", "--until", "2030-05-01T12:05:00Z"}, []string{"exec", "auth.failure"}},
	}
	for _, tc := range tests {
		out, err := run(t, nil, append([]string{"show", "--data", data, "--kek-file", kekOf(data)}, tc.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(tc.want) {
			t.Fatalf("%v: got\n%s", tc.args, out)
		}
		for i, w := range tc.want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("%v: line %q lacks %q", tc.args, lines[i], w)
			}
		}
	}
	out, err := run(t, nil, "show", "--data", data, "--kek-file", kekOf(data), "--json", "--person", "bob")
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Index  uint64 `json:"index"`
		Type   string `json:"type"`
		Person string `json:"person"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.Index != 3 || first.Type != "auth.failure" {
		t.Fatalf("%s %+v %v", out, first, err)
	}
	if _, err := run(t, nil, "show", "--data", data, "--kek-file", kekOf(data), "--since", "yesterday"); err == nil {
		t.Fatal("bad --since accepted")
	}
}

func TestProof(t *testing.T) {
	data := makeLog(t)
	out, err := run(t, nil, "proof", "--data", data, "--index", "2")
	if err != nil || !strings.Contains(out, "record:    2 of") || !strings.Contains(out, "checkpoint:") {
		t.Fatalf("%s %v", out, err)
	}
	out, err = run(t, nil, "proof", "--data", data, "--index", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var p audit.Proof
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	key, _ := audit.PublicKey(filepath.Join(data, "audit"))
	if err := p.Verify(key); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, nil, "proof", "--data", data); err == nil {
		t.Fatal("missing --index accepted")
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", time.Time{}, false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"90m ago", now.Add(-90 * time.Minute), false},
		{"2030-01-01T10:00:00+02:00", time.Date(2030, 1, 1, 8, 0, 0, 0, time.UTC), false},
		{"-5h", time.Time{}, true},
		{"tomorrow", time.Time{}, true},
	}
	for _, tc := range tests {
		got, err := ParseTime(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"", "24h", "1h ago", "2030-01-01T00:00:00Z", "x"} {
		f.Add(s)
	}
	now := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s, now)
		if err == nil && strings.TrimSpace(s) != "" && got.IsZero() && !strings.Contains(s, "0001") {
			t.Fatalf("ParseTime(%q) gave no time and no error", s)
		}
	})
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// testKey is a fresh checkpoint signing key, kept in memory as the real one
// is kept outside the data directory.
func testKey(t testing.TB) *audit.SigningKey {
	t.Helper()
	k, _, err := audit.GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	return k
}
