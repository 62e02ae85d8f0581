package breakglass

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

var now = time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)

// holders makes alice and carol (age identities) and bob (an SSH
// ed25519 key), and returns their identities by person.
func holders(t *testing.T) ([]Holder, map[string]age.Identity) {
	t.Helper()
	ids := map[string]age.Identity{}
	var hs []Holder
	for _, p := range []string{"alice", "bob", "carol"} {
		if p == "bob" {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			id, err := agessh.NewEd25519Identity(priv)
			if err != nil {
				t.Fatal(err)
			}
			sshPub, _ := ssh.NewPublicKey(priv.Public())
			r, err := agessh.ParseRecipient(string(ssh.MarshalAuthorizedKey(sshPub)))
			if err != nil {
				t.Fatal(err)
			}
			ids[p] = id
			hs = append(hs, Holder{Person: p, Recipients: []age.Recipient{r}})
			continue
		}
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		ids[p] = id
		hs = append(hs, Holder{Person: p, Recipients: []age.Recipient{id.Recipient()}})
	}
	return hs, ids
}

func open(t *testing.T, file []byte, id age.Identity) *Opened {
	t.Helper()
	o, err := OpenShare(file, id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func request(t *testing.T) Request {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&k.PublicKey)
	return Request{Login: "root", Host: "db1", Reason: "INC-7: gateway down, disk full on db1", For: time.Hour, Key: pub, IssuedBy: "local:ops", Now: now}
}

// TestSplitIssueVerify: two shares of different persons rebuild the CA
// and issue a certificate that a target's checker accepts, with the
// persons and reason in the key id, valid for at most an hour; the record
// verifies.
func TestSplitIssueVerify(t *testing.T) {
	hs, ids := holders(t)
	ca, files, err := Init(hs, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("%d share files, want 3", len(files))
	}
	info, err := ReadShareInfo(files["bob"])
	if err != nil || info.Holder != "bob" || info.Threshold != 2 || info.Count != 3 || info.CA != ssh.FingerprintSHA256(ca) {
		t.Fatalf("bob's header: %+v, %v", info, err)
	}
	for _, pair := range [][2]string{{"alice", "bob"}, {"carol", "bob"}, {"alice", "carol"}} {
		req := request(t)
		shares := []*Opened{open(t, files[pair[0]], ids[pair[0]]), open(t, files[pair[1]], ids[pair[1]])}
		cert, rec, file, err := Issue(ca, shares, req)
		if err != nil {
			t.Fatalf("%v: %v", pair, err)
		}
		checker := ssh.CertChecker{
			IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca.Marshal()) },
			Clock:           func() time.Time { return now.Add(30 * time.Minute) },
		}
		if err := checker.CheckCert("root", cert); err != nil {
			t.Fatalf("%v: target would refuse: %v", pair, err)
		}
		if !bytes.Equal(cert.SignatureKey.Marshal(), ca.Marshal()) {
			t.Fatal("not signed by the emergency CA")
		}
		lo, hi := pair[0], pair[1]
		if lo > hi {
			lo, hi = hi, lo
		}
		want := "tandem breakglass persons=" + lo + "," + hi + " host=db1 reason=INC-7: gateway down, disk full on db1"
		if cert.KeyId != want {
			t.Fatalf("key id %q, want %q", cert.KeyId, want)
		}
		if d := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second; d > MaxValidity {
			t.Fatalf("valid for %s", d)
		}
		got, err := VerifyRecord(ca, file)
		if err != nil {
			t.Fatal(err)
		}
		if got.Serial != rec.Serial || got.Host != "db1" || got.Login != "root" || strings.Join(got.Persons, ",") != lo+","+hi {
			t.Fatalf("record %+v", got)
		}
	}
}

// TestRefusals: one share, two shares of one person, shares of another
// CA, a validity beyond an hour, an edited header, a wrong identity and a
// tampered record are all refused.
func TestRefusals(t *testing.T) {
	hs, ids := holders(t)
	ca, files, err := Init(hs, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := open(t, files["alice"], ids["alice"]), open(t, files["bob"], ids["bob"])

	if _, _, _, err := Issue(ca, []*Opened{alice}, request(t)); err == nil || !strings.Contains(err.Error(), "two different persons") {
		t.Fatalf("one share: %v", err)
	}
	if _, _, _, err := Issue(ca, []*Opened{alice, open(t, files["alice"], ids["alice"])}, request(t)); err == nil || !strings.Contains(err.Error(), "two shares of alice") {
		t.Fatalf("alice twice: %v", err)
	}
	req := request(t)
	req.For = time.Hour + time.Second
	if _, _, _, err := Issue(ca, []*Opened{alice, bob}, req); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("over an hour: %v", err)
	}
	req = request(t)
	req.Reason = "line\nbreak"
	if _, _, _, err := Issue(ca, []*Opened{alice, bob}, req); err == nil {
		t.Fatal("a reason with a line break was accepted")
	}

	// Another emergency CA's shares: refused by fingerprint; and shares
	// whose headers lie about the CA rebuild a key that is not it.
	ca2, files2, err := Init(hs, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Issue(ca2, []*Opened{alice, bob}, request(t)); err == nil || !strings.Contains(err.Error(), "belongs to emergency CA") {
		t.Fatalf("other CA: %v", err)
	}
	carol2 := open(t, files2["carol"], ids["carol"])
	carol2.Info.CA = alice.Info.CA
	if _, _, _, err := Issue(ca, []*Opened{alice, carol2}, request(t)); err == nil {
		t.Fatal("mixed shares of two CAs issued a certificate")
	}

	// A header edited to name another holder does not match its content.
	edited := bytes.Replace(files["alice"], []byte("# holder: alice"), []byte("# holder: carol"), 1)
	if _, err := OpenShare(edited, ids["alice"]); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("edited header: %v", err)
	}
	if _, err := OpenShare(files["bob"], ids["alice"]); err == nil {
		t.Fatal("alice's identity opened bob's share")
	}

	_, _, file, err := Issue(ca, []*Opened{alice, bob}, request(t))
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(file, &env); err != nil {
		t.Fatal(err)
	}
	env.Record = bytes.Replace(env.Record, []byte(`"host":"db1"`), []byte(`"host":"db2"`), 1)
	forged, _ := json.Marshal(env)
	if _, err := VerifyRecord(ca, forged); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("altered record: %v", err)
	}
	if _, err := VerifyRecord(ca2, file); err == nil {
		t.Fatal("a record verified with another CA")
	}

	if _, _, err := Init(append(hs, hs[0]), 2, now); err == nil {
		t.Fatal("a holder named twice was accepted")
	}
	if _, _, err := Init(hs, 1, now); err == nil {
		t.Fatal("threshold 1 was accepted")
	}
}

// TestShareFileHoldsNoKey: the share file's clear part is the header
// and armored age, nothing else.
func TestShareFileHoldsNoKey(t *testing.T) {
	hs, _ := holders(t)
	_, files, err := Init(hs, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	f := string(files["alice"])
	if strings.Contains(f, "PRIVATE KEY") || strings.Contains(f, `"share"`) {
		t.Fatalf("share file shows its content:\n%s", f)
	}
	if !strings.Contains(f, "-----BEGIN AGE ENCRYPTED FILE-----") {
		t.Fatalf("share file not armored age:\n%s", f)
	}
}

// FuzzReadShareInfo: a share file's clear header, which its holder can
// edit, never panics the reader; what it accepts names a holder, a share
// and a CA; its errors quote what they repeat, so no control character
// of the file reaches the operator's terminal.
func FuzzReadShareInfo(f *testing.F) {
	f.Add([]byte(shareMagic + "\n# holder: alice\n# share: 1 of 3, threshold 2\n# ca: SHA256:abc\n# created: 2026-11-29T10:00:00Z\n-----BEGIN AGE ENCRYPTED FILE-----\n"))
	f.Add([]byte(shareMagic + "\n# holder: \x1b[2J\n# share: x of y\n"))
	f.Add([]byte(shareMagic + "\n# created: yesterday\x07\n"))
	f.Add([]byte("not a share"))
	f.Fuzz(func(t *testing.T, file []byte) {
		info, err := ReadShareInfo(file)
		if err != nil {
			if strings.ContainsFunc(err.Error(), unicode.IsControl) {
				t.Fatalf("error with a control character: %q", err.Error())
			}
			return
		}
		if info.Holder == "" || info.Index == 0 || info.CA == "" || info.Format != shareFormat {
			t.Fatalf("accepted an incomplete header: %+v", info)
		}
	})
}
