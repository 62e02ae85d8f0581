package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/testenv"
)

// TestWriteKRL: a certificate of the user CA revoked by serial, and one
// revoked by key id, are reported revoked by ssh-keygen -Q against the
// written list; one of the same CA that the list does not name is not,
// and a certificate signed by the second trusted CA (rotation or
// break-glass) is revoked by serial too.
func TestWriteKRL(t *testing.T) {
	keygen := testenv.RequireProgram(t, "ssh-keygen")
	dir := t.TempDir()
	keys, err := ca.LoadOrCreate(filepath.Join(dir, "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.LoadOrCreate(filepath.Join(dir, "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(k *ca.Keys, id string) (path string, serial uint64) {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, _ := ssh.NewPublicKey(&priv.PublicKey)
		c, err := k.SignUser(ca.UserCert{Key: pub, KeyID: id, Principals: []string{"root"}, Validity: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(dir, strings.ReplaceAll(id, " ", "_")+"-cert.pub")
		if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(c), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, c.Serial
	}
	bySerial, serial := cert(keys, "tandem session=a")
	byID, _ := cert(keys, "tandem session=b person=bob host=db1")
	kept, _ := cert(keys, "tandem session=c")
	otherCA, otherSerial := cert(other, "tandem session=d")
	spec := filepath.Join(dir, "revoked.txt")
	content := "# revoked after INC-7\nserial: " + strconv.FormatUint(serial, 10) + "\nid: tandem session=b person=bob host=db1\nserial: " + strconv.FormatUint(otherSerial, 10) + "\n"
	if err := os.WriteFile(spec, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cas, _ := keys.PublicLines(ca.User)
	otherLines, _ := other.PublicLines(ca.User)
	out := filepath.Join(dir, "tandem_revoked_keys")
	if err := writeKRL(context.Background(), out, spec, append(cas, otherLines...), time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("KRL file: %v %v", fi, err)
	}
	query := func(krl, certFile string) bool {
		b, err := exec.Command(keygen, "-Q", "-f", krl, certFile).CombinedOutput()
		if err != nil && !strings.Contains(string(b), "REVOKED") {
			t.Fatalf("ssh-keygen -Q: %v: %s", err, b)
		}
		return strings.Contains(string(b), "REVOKED")
	}
	for _, c := range []string{bySerial, byID, otherCA} {
		if !query(out, c) {
			t.Errorf("%s: not revoked", filepath.Base(c))
		}
	}
	if query(out, kept) {
		t.Error("a certificate the list does not name is revoked")
	}
	if b, _ := exec.Command(keygen, "-Q", "-l", "-f", out).CombinedOutput(); !strings.Contains(string(b), "1700000000") {
		t.Errorf("KRL version not the time of writing:\n%s", b)
	}

	// No spec: an empty list, which revokes nothing.
	empty := filepath.Join(dir, "empty_krl")
	if err := writeKRL(context.Background(), empty, "", cas, time.Now()); err != nil {
		t.Fatal(err)
	}
	if query(empty, bySerial) {
		t.Error("the empty list revokes a certificate")
	}
}

// TestWriteKRLBadSpec: a line ssh-keygen cannot read is refused with its
// message, and the previous list stays as it was.
func TestWriteKRLBadSpec(t *testing.T) {
	testenv.RequireProgram(t, "ssh-keygen")
	dir := t.TempDir()
	keys, err := ca.LoadOrCreate(filepath.Join(dir, "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cas, _ := keys.PublicLines(ca.User)
	out := filepath.Join(dir, "krl")
	if err := os.WriteFile(out, []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "spec")
	if err := os.WriteFile(spec, []byte("serial: not-a-number\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = writeKRL(context.Background(), out, spec, cas, time.Now())
	if err == nil || !strings.Contains(err.Error(), "ssh-keygen") {
		t.Fatalf("bad spec: %v", err)
	}
	t.Logf("refused: %v", err)
	if b, _ := os.ReadFile(out); string(b) != "previous" {
		t.Error("a refused spec replaced the previous list")
	}
	if err := writeKRL(context.Background(), out, filepath.Join(dir, "absent"), cas, time.Now()); err == nil {
		t.Error("a missing spec file was accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}
