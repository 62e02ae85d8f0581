package disclose

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/audit/audittest"
	"tandem.dev/tandem/internal/record"
)

var day0 = time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)

func caseEvents(recipient string, approvals ...audit.Event) []audit.Event {
	return caseEventsEnd(recipient, nil, approvals...)
}

// caseEventsEnd is caseEvents with the session's recording summary in its
// session.end.
func caseEventsEnd(recipient string, rec *audit.RecordingSummary, approvals ...audit.Event) []audit.Event {
	s1 := audit.Target{Person: "alice", Source: "192.0.2.7:5000", Session: "s1", Tenant: "acme", Host: "db1", Login: "root"}
	other := audit.Target{Person: "gustav", Session: "g1", Tenant: "globex", Host: "gx1", Login: "root"}
	zero := uint32(0)
	ev := []audit.Event{
		audit.SessionStartEvent{Target: s1, Action: "exec", Mode: "user", Command: "cat /etc/shadow"}.Event(),
		audit.SessionStartEvent{Target: other, Action: "shell"}.Event(),
		audit.SessionEndEvent{Target: s1, ExitStatus: &zero, RecordingSummary: rec}.Event(),
		audit.DisclosureRequestedEvent{Conn: audit.Conn{Person: "lena"}, DisclosureCase: audit.DisclosureCase{Tenant: "acme", ID: "c1"},
			Scope: "session:s1", LegalBasis: "AG Nord 12 Gs 345/26", Reason: "investigation 4711", Recipient: "age x",
			RecipientKey: recipient, Contact: "it@acme.example"}.Event(),
	}
	return append(ev, approvals...)
}

func approval(person string, dpo bool) audit.Event {
	return audit.DisclosureApprovedEvent{Conn: audit.Conn{Person: person}, DisclosureCase: audit.DisclosureCase{Tenant: "acme", ID: "c1"}, DPO: dpo}.Event()
}

func load(t *testing.T, l *audittest.Log) *Case {
	t.Helper()
	c, err := Load(func(f audit.Filter, fn func(audit.Record) error) error { return audit.ReadKeys(l.Dir, l.Keys, f, fn) }, "c1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A case is approved by two persons other than its requester, one of
// them the data protection officer; nothing less.
func TestApprovalRules(t *testing.T) {
	for _, c := range []struct {
		name      string
		approvals []audit.Event
		ok        bool
	}{
		{"none", nil, false},
		{"the dpo alone", []audit.Event{approval("dora", true)}, false},
		{"two without the dpo", []audit.Event{approval("bob", false), approval("carol", false)}, false},
		{"the requester and the dpo", []audit.Event{approval("lena", false), approval("dora", true)}, false},
		{"the dpo twice", []audit.Event{approval("dora", true), approval("dora", true)}, false},
		{"the dpo and another", []audit.Event{approval("dora", true), approval("bob", false)}, true},
		{"two, then the dpo", []audit.Event{approval("bob", false), approval("carol", false), approval("dora", true)}, true},
	} {
		l := audittest.New(t, day0, caseEvents("age1x", c.approvals...)...)
		err := load(t, l).Approved()
		if (err == nil) != c.ok {
			t.Errorf("%s: approved %v (%v), want %v", c.name, err == nil, err, c.ok)
		}
	}
}

// An approved case exports to the recipient's age key: the recipient
// decrypts it, the manifest verifies against the log's key, every
// record of the session is there with all its fields, nothing of another
// tenant; a changed file or record fails verification.
func TestExportAndVerify(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	l := audittest.New(t, day0, caseEvents(id.Recipient().String(), approval("dora", true), approval("bob", false))...)
	c := load(t, l)
	kek := filepath.Join(filepath.Dir(l.Data), "kek")
	k, err := record.FileKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	v, err := record.OpenVault(filepath.Join(l.Data, "vault"), k)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "case.tar.age")
	var recorded *Result
	res, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Vault: v, Case: c, Out: out, Now: day0.Add(time.Hour),
		Record: func(r Result) error {
			if _, err := os.Stat(out); err == nil {
				t.Error("the file was there before the export was recorded")
			}
			recorded = &r
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if recorded == nil || recorded.SHA256 != res.SHA256 || res.Records != 2 {
		t.Fatalf("result %+v, recorded %+v", res, recorded)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	if _, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Vault: v, Case: c, Out: out, Now: day0}); err == nil {
		t.Error("an export replaced an existing file")
	}

	dir := unpack(t, out, id)
	checked, err := VerifyDir(dir, l.Key)
	if err != nil {
		t.Fatal(err)
	}
	if checked.Records != 2 || checked.Case.LegalBasis != "AG Nord 12 Gs 345/26" || len(checked.Case.Approvers) != 2 {
		t.Fatalf("%+v", checked)
	}
	events, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	for _, want := range []string{"cat /etc/shadow", "192.0.2.7:5000", `"session":"s1"`} {
		if !bytes.Contains(events, []byte(want)) {
			t.Errorf("events.jsonl lacks %q:\n%s", want, events)
		}
	}
	if bytes.Contains(events, []byte("gustav")) || bytes.Contains(events, []byte("globex")) {
		t.Errorf("events.jsonl holds another tenant's records:\n%s", events)
	}

	// Tampering.
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), append(events, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(dir, l.Key); err == nil || !strings.Contains(err.Error(), "events.jsonl") {
		t.Errorf("a changed file verified: %v", err)
	}
	dir = unpack(t, out, id)
	mf := filepath.Join(dir, "manifest.json")
	m, _ := os.ReadFile(mf)
	var man Manifest
	if err := json.Unmarshal(m, &man); err != nil {
		t.Fatal(err)
	}
	man.Records[0].Raw = strings.Replace(man.Records[0].Raw, `"tenant":"acme"`, `"tenant":"acmf"`, 1)
	b, _ := json.Marshal(man)
	if err := os.WriteFile(mf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(dir, l.Key); err == nil {
		t.Error("a changed record verified")
	}
	other, _, _ := audit.GenerateSigningKey("tandem/audit")
	if _, err := VerifyDir(unpack(t, out, id), other.Verifier()); err == nil {
		t.Error("a stranger's key verified the checkpoint")
	}
}

// recordS1 records session s1 into the data directory data under the
// vault there (the KEK beside it), always the same content, and returns
// its summary: the content hash does not depend on the key or nonces.
func recordS1(t *testing.T, data, output string) record.Summary {
	t.Helper()
	_, sum := recordS1In(t, data, record.Local(data), output)
	return sum
}

// recordS1In is recordS1 with the recording put in st (the keys stay in
// data's vault); it also returns the vault.
func recordS1In(t *testing.T, data string, st record.Storage, output string) (*record.Vault, record.Summary) {
	t.Helper()
	kek := filepath.Join(filepath.Dir(data), "kek")
	if _, err := os.Stat(kek); err != nil {
		if err := record.GenerateFileKEK(kek); err != nil {
			t.Fatal(err)
		}
	}
	k, err := record.FileKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	v, err := record.OpenVault(filepath.Join(data, "vault"), k)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return day0 }
	w, err := record.Create(v, st, record.Meta{SessionID: "s1", Tenant: "acme", Kind: record.KindPTY, Started: day0, Host: "db1", Login: "root", Owner: "alice"},
		record.Options{Now: now, Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output([]byte(output)); err != nil {
		t.Fatal(err)
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return v, sum
}

// The recordings handed to an authority are the ones the audit log
// vouches for: a recording whose content is not what session.end
// recorded (rewritten by whoever holds the gateway host and its KEK, or
// another session's file put in its place) is refused, not exported as
// genuine.
func TestExportChecksRecordingsAgainstTheLog(t *testing.T) {
	sum := recordS1(t, filepath.Join(t.TempDir(), "data"), "uid=0(root)\r\n") // what the gateway recorded and logged
	id, _ := age.GenerateX25519Identity()
	for _, c := range []struct {
		name, output string
		ok           bool
	}{
		{"as logged", "uid=0(root)\r\n", true},
		{"rewritten", "nothing to see\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := audittest.New(t, day0, caseEventsEnd(id.Recipient().String(), &audit.RecordingSummary{Path: "x", SHA256: sum.SHA256, FileSHA256: sum.FileSHA256},
				approval("dora", true), approval("bob", false))...)
			recordS1(t, l.Data, c.output)
			k, _ := record.FileKEK(filepath.Join(filepath.Dir(l.Data), "kek"))
			v, _ := record.OpenVault(filepath.Join(l.Data, "vault"), k)
			out := filepath.Join(t.TempDir(), "case.tar.age")
			res, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Vault: v, Case: load(t, l), Out: out, Now: day0.Add(time.Hour),
				Record: func(Result) error { return nil }})
			if c.ok {
				if err != nil || res.Recordings != 1 {
					t.Fatalf("%+v %v", res, err)
				}
				if _, err := VerifyDir(unpack(t, out, id), l.Key); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "session.end") {
				t.Fatalf("a recording that is not the logged one exported: %+v %v", res, err)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Fatal("the export left a file")
			}
		})
	}
}

// With recording.storage: store the recordings are not under the data
// directory: the export reads them, and the sealed keystrokes, where
// ExportOptions.Recordings says, instead of finding none there and
// handing over a case without its recordings.
func TestExportReadsTheRecordingStorage(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	l := audittest.New(t, day0, caseEvents(id.Recipient().String(), approval("dora", true), approval("bob", false))...)
	shared := record.Local(t.TempDir()) // stands for the cluster's database
	v, _ := recordS1In(t, l.Data, shared, "uid=0(root)\r\n")
	for _, c := range []struct {
		name string
		rs   record.Storage
		want int
	}{{"data directory", nil, 0}, {"shared storage", shared, 1}} {
		out := filepath.Join(t.TempDir(), "case.tar.age")
		res, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Recordings: c.rs, Vault: v, Case: load(t, l), Out: out, Now: day0.Add(time.Hour),
			Record: func(Result) error { return nil }})
		if err != nil || res.Recordings != c.want {
			t.Fatalf("%s: %+v %v, want %d recording(s)", c.name, res, err, c.want)
		}
	}
}

// An unapproved case does not export.
func TestExportNeedsApproval(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	l := audittest.New(t, day0, caseEvents(id.Recipient().String(), approval("dora", true))...)
	_, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Case: load(t, l), Out: filepath.Join(t.TempDir(), "x")})
	if err == nil || !strings.Contains(err.Error(), "1 of 2 approvals") {
		t.Fatalf("%v", err)
	}
}

func unpack(t *testing.T, file string, id age.Identity) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"session:abc", "period:2030-01-01..2030-01-31", "period:2030-01-01", "period:x..y", "", "session:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		again, err := ParseScope(sc.String())
		if err != nil || again != sc {
			t.Fatalf("%q -> %q -> %v %v", s, sc.String(), again, err)
		}
	})
}

func FuzzParseRecipient(f *testing.F) {
	id, _ := age.GenerateX25519Identity()
	for _, s := range []string{id.Recipient().String(), "ssh-ed25519 AAAA", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----", "age1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipient(s)
		if err != nil {
			return
		}
		if _, err := r.Encrypt(io.Discard); err != nil {
			t.Fatalf("a recipient that parses cannot encrypt: %v", err)
		}
	})
}

// The manifest is not signed: its hashes show only that the files are the
// ones it names. events.jsonl is what the recipient reads, so verify ties
// it to the proven records: a line changed, added or dropped, with the
// manifest's hash made to fit, fails.
func TestVerifyTiesEventsToTheProvenRecords(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	l := audittest.New(t, day0, caseEvents(id.Recipient().String(), approval("dora", true), approval("bob", false))...)
	k, _ := record.FileKEK(filepath.Join(filepath.Dir(l.Data), "kek"))
	v, _ := record.OpenVault(filepath.Join(l.Data, "vault"), k)
	out := filepath.Join(t.TempDir(), "case.tar.age")
	if _, err := Export(ExportOptions{AuditDir: l.Dir, DataDir: l.Data, Vault: v, Case: load(t, l), Out: out, Now: day0.Add(time.Hour),
		Record: func(Result) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(unpack(t, out, id), l.Key); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func([]byte) []byte{
		"command changed": func(b []byte) []byte { return bytes.Replace(b, []byte("cat /etc/shadow"), []byte("id"), 1) },
		"line added": func(b []byte) []byte {
			return append(b, `{"index":99,"time":"2030-05-01T09:30:00Z","type":"session.start","person":"mallory"}`+"\n"...)
		},
		"line dropped": func(b []byte) []byte { _, rest, _ := bytes.Cut(b, []byte("\n")); return rest },
		"field added":  func(b []byte) []byte { return bytes.Replace(b, []byte(`{"index"`), []byte(`{"note":"x","index"`), 1) },
	} {
		dir := unpack(t, out, id)
		ev := filepath.Join(dir, "events.jsonl")
		b, _ := os.ReadFile(ev)
		b = change(b)
		if err := os.WriteFile(ev, b, 0o600); err != nil {
			t.Fatal(err)
		}
		mf := filepath.Join(dir, "manifest.json")
		var man Manifest
		mb, _ := os.ReadFile(mf)
		if err := json.Unmarshal(mb, &man); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		for i := range man.Files {
			if man.Files[i].Name == "events.jsonl" {
				man.Files[i].SHA256, man.Files[i].Size = hex.EncodeToString(sum[:]), int64(len(b))
			}
		}
		mb, _ = json.Marshal(man)
		if err := os.WriteFile(mf, mb, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyDir(dir, l.Key); err == nil || !strings.Contains(err.Error(), "events.jsonl") {
			t.Errorf("%s: verified (%v)", name, err)
		}
	}
}
