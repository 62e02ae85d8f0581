// Package breakglass is emergency access for when the gateway is down
// (M26): an emergency user CA whose private key exists only as Shamir
// shares, each encrypted with age to one holder. Any threshold of holders,
// each a different person, can issue one short-lived certificate; every
// issue writes an emergency record signed by the emergency CA itself, so a
// record cannot be forged without the shares, and the gateway imports the
// records into its audit log when it is back.
//
// The private key exists only in memory, during Init and Issue; the byte
// slices holding it and its shares are zeroed after use (the key inside
// crypto/ecdsa cannot be, and is dropped for the garbage collector).
package breakglass

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/hashicorp/vault/shamir"
	"golang.org/x/crypto/ssh"

	tandemca "tandem.dev/tandem/internal/ca"
)

// MaxValidity bounds an emergency certificate: long enough to repair
// something, short enough that a lost certificate is soon worthless.
const MaxValidity = time.Hour

// skew is how far back a certificate's validity starts, for targets whose
// clock is behind; it counts towards MaxValidity.
const skew = time.Minute

// maxReason bounds the reason, which goes into the key id that every
// target's sshd logs.
const maxReason = 200

// Formats of the files, so that a later version can tell them apart.
const (
	shareFormat  = "tandem-breakglass-share/v1"
	recordFormat = "tandem-breakglass-record/v1"
	// recordDomain is signed before the record: a signature over a record
	// can never be mistaken for one over anything else the key signs.
	recordDomain = "tandem-breakglass-record/v1\x00"
	shareMagic   = "# tandem break-glass share"
)

// Holder is a person who receives a share, and the age recipients (their
// age recipient, or their SSH keys) it is encrypted to: any one of them
// can open it.
type Holder struct {
	Person     string
	Recipients []age.Recipient
}

// ShareInfo is what a share file says about itself in clear, and what its
// encrypted part repeats (OpenShare checks that both agree).
type ShareInfo struct {
	Format    string    `json:"format"`
	Holder    string    `json:"holder"`
	Index     int       `json:"index"` // 1-based, among Count
	Count     int       `json:"count"`
	Threshold int       `json:"threshold"`
	CA        string    `json:"ca"` // SHA256 fingerprint of the emergency CA
	Created   time.Time `json:"created"`
}

// payload is the encrypted part of a share file.
type payload struct {
	ShareInfo
	Share []byte `json:"share"`
}

// Init creates an emergency CA and splits its private key into one share
// per holder, threshold of which rebuild it. It returns the CA's public
// key and each holder's share file (by person), and keeps nothing.
func Init(holders []Holder, threshold int, now time.Time) (ssh.PublicKey, map[string][]byte, error) {
	if len(holders) < 2 {
		return nil, nil, errors.New("at least two holders are needed")
	}
	if threshold < 2 || threshold > len(holders) {
		return nil, nil, fmt.Errorf("threshold %d: want at least 2 and at most the %d holders", threshold, len(holders))
	}
	seen := map[string]bool{}
	for _, h := range holders {
		if seen[h.Person] {
			// One person with two shares could use the key alone.
			return nil, nil, fmt.Errorf("holder %s is named twice; every share must go to a different person", h.Person)
		}
		seen[h.Person] = true
		if len(h.Recipients) == 0 {
			return nil, nil, fmt.Errorf("holder %s has no age recipient or SSH key to encrypt to", h.Person)
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate the emergency CA: %w", err)
	}
	secret, err := priv.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("emergency CA key: %w", err)
	}
	defer clear(secret)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("emergency CA key: %w", err)
	}
	pub := signer.PublicKey()
	parts, err := shamir.Split(secret, len(holders), threshold)
	if err != nil {
		return nil, nil, fmt.Errorf("split the emergency CA key: %w", err)
	}
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	files := make(map[string][]byte, len(holders))
	for i, h := range holders {
		info := ShareInfo{Format: shareFormat, Holder: h.Person, Index: i + 1, Count: len(holders),
			Threshold: threshold, CA: ssh.FingerprintSHA256(pub), Created: now.UTC()}
		f, err := sealShare(info, parts[i], h.Recipients)
		if err != nil {
			return nil, nil, fmt.Errorf("share of %s: %w", h.Person, err)
		}
		files[h.Person] = f
	}
	return pub, files, nil
}

// sealShare writes a share file: a readable header, then the payload
// encrypted (armored age) to the holder's recipients.
func sealShare(info ShareInfo, part []byte, to []age.Recipient) ([]byte, error) {
	plain, err := json.Marshal(payload{ShareInfo: info, Share: part})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n# holder: %s\n# share: %d of %d, threshold %d\n# ca: %s\n# created: %s\n",
		shareMagic, info.Holder, info.Index, info.Count, info.Threshold, info.CA, info.Created.Format(time.RFC3339))
	aw := armor.NewWriter(&b)
	w, err := age.Encrypt(aw, to...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// ReadShareInfo reads a share file's clear header, without decrypting:
// whose share it is, so the right identity can be asked for.
func ReadShareInfo(file []byte) (ShareInfo, error) {
	info := ShareInfo{Format: shareFormat}
	sc := bufio.NewScanner(bytes.NewReader(file))
	if !sc.Scan() || sc.Text() != shareMagic {
		return info, errors.New("not a tandem break-glass share file")
	}
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "# ")
		if !ok {
			break
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "holder":
			info.Holder = v
		case "share":
			// The errors below quote the line and add nothing of the
			// parsers': time.Parse repeats the text it was given as it
			// is, control characters and all, and the holder can edit
			// this header.
			if _, err := fmt.Sscanf(v, "%d of %d, threshold %d", &info.Index, &info.Count, &info.Threshold); err != nil {
				return info, fmt.Errorf("share file header %q: want \"N of M, threshold T\"", line)
			}
		case "ca":
			info.CA = v
		case "created":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return info, fmt.Errorf("share file header %q: not a time in RFC 3339 form", line)
			}
			info.Created = t
		}
	}
	if info.Holder == "" || info.Index == 0 || info.CA == "" {
		return info, errors.New("share file header incomplete: holder, share and ca are required")
	}
	return info, nil
}

// Opened is a decrypted share. Wipe it when done.
type Opened struct {
	Info ShareInfo
	part []byte
}

// Wipe zeroes the share.
func (o *Opened) Wipe() { clear(o.part) }

// OpenShare decrypts a share file with ids and checks that its encrypted
// part agrees with its header: a header edited to name another holder is
// refused.
func OpenShare(file []byte, ids ...age.Identity) (*Opened, error) {
	info, err := ReadShareInfo(file)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(file, []byte(armor.Header))
	if i < 0 {
		return nil, errors.New("share file holds no encrypted share")
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(file[i:])), ids...)
	if err != nil {
		// age's message names no secret; it says which identity types failed.
		return nil, fmt.Errorf("cannot decrypt the share of %s with the identity given: %w", info.Holder, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("decrypt the share of %s: %w", info.Holder, err)
	}
	defer clear(plain)
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("share of %s: unreadable content", info.Holder)
	}
	if p.Format != shareFormat || p.Holder != info.Holder || p.Index != info.Index || p.Count != info.Count ||
		p.Threshold != info.Threshold || p.CA != info.CA {
		clear(p.Share)
		return nil, fmt.Errorf("share of %s: the header does not match the encrypted content (edited file?)", info.Holder)
	}
	return &Opened{Info: p.ShareInfo, part: p.Share}, nil
}

// Request is what an emergency certificate is for.
type Request struct {
	Login  string
	Host   string
	Reason string
	For    time.Duration // at most MaxValidity
	// Key is the key the certificate certifies.
	Key ssh.PublicKey
	// SourceAddress, if set, is the certificate's source-address critical
	// option (comma-separated CIDR list), enforced by the target's sshd.
	SourceAddress string
	// IssuedBy names who ran the command (local:USER), for the record.
	IssuedBy string
	Now      time.Time
}

// Record is the emergency record of one issued certificate.
type Record struct {
	Format        string    `json:"format"`
	Persons       []string  `json:"persons"`
	Host          string    `json:"host"`
	Login         string    `json:"login"`
	Reason        string    `json:"reason"`
	Serial        string    `json:"serial"` // decimal; text so that no JSON reader rounds it
	KeyID         string    `json:"key_id"`
	Key           string    `json:"key"` // SHA256 fingerprint of the certified key
	CA            string    `json:"ca"`  // SHA256 fingerprint of the emergency CA
	ValidAfter    time.Time `json:"valid_after"`
	ValidBefore   time.Time `json:"valid_before"`
	Issued        time.Time `json:"issued"`
	IssuedBy      string    `json:"issued_by,omitempty"`
	SourceAddress string    `json:"source_address,omitempty"`
}

// envelope is the record file: the record's exact bytes and the emergency
// CA's signature over them.
type envelope struct {
	Record    []byte `json:"record"`
	Signature []byte `json:"signature"` // ssh wire format
}

// Issue rebuilds the emergency CA from shares of different persons, checks
// it against the published CA, and signs a certificate for req. It returns
// the certificate, the record and the signed record file.
func Issue(ca ssh.PublicKey, shares []*Opened, req Request) (*ssh.Certificate, Record, []byte, error) {
	if err := checkRequest(req); err != nil {
		return nil, Record{}, nil, err
	}
	persons, err := checkShares(ca, shares)
	if err != nil {
		return nil, Record{}, nil, err
	}
	parts := make([][]byte, len(shares))
	for i, s := range shares {
		parts[i] = s.part
	}
	secret, err := shamir.Combine(parts)
	if err != nil {
		return nil, Record{}, nil, fmt.Errorf("combine the shares: %w", err)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), secret)
	clear(secret)
	if err != nil {
		return nil, Record{}, nil, errors.New("the shares do not rebuild a key: they belong to different emergency CAs")
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, Record{}, nil, fmt.Errorf("emergency CA key: %w", err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), ca.Marshal()) {
		return nil, Record{}, nil, fmt.Errorf("the shares rebuild a key that is not the published emergency CA %s", ssh.FingerprintSHA256(ca))
	}
	from := req.Now.Add(-skew)
	cert := &ssh.Certificate{
		Key:             req.Key,
		Serial:          tandemca.RandomSerial(),
		CertType:        ssh.UserCert,
		KeyId:           fmt.Sprintf("tandem breakglass persons=%s host=%s reason=%s", strings.Join(persons, ","), req.Host, req.Reason),
		ValidPrincipals: []string{req.Login},
		ValidAfter:      uint64(from.Unix()),
		// The window, skew included, is req.For: never more than MaxValidity.
		ValidBefore: uint64(from.Add(req.For).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if req.SourceAddress != "" {
		cert.CriticalOptions = map[string]string{"source-address": req.SourceAddress}
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return nil, Record{}, nil, fmt.Errorf("sign the certificate: %w", err)
	}
	rec := Record{Format: recordFormat, Persons: persons, Host: req.Host, Login: req.Login, Reason: req.Reason,
		Serial: strconv.FormatUint(cert.Serial, 10), KeyID: cert.KeyId, Key: ssh.FingerprintSHA256(req.Key),
		CA: ssh.FingerprintSHA256(ca), ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(), Issued: req.Now.UTC(),
		IssuedBy: req.IssuedBy, SourceAddress: req.SourceAddress}
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, Record{}, nil, err
	}
	sig, err := signer.Sign(rand.Reader, append([]byte(recordDomain), body...))
	if err != nil {
		return nil, Record{}, nil, fmt.Errorf("sign the emergency record: %w", err)
	}
	file, err := json.MarshalIndent(envelope{Record: body, Signature: ssh.Marshal(sig)}, "", "  ")
	if err != nil {
		return nil, Record{}, nil, err
	}
	return cert, rec, append(file, '\n'), nil
}

// checkRequest refuses what the certificate must not carry: a validity
// beyond MaxValidity, and text that would break the key id sshd logs.
func checkRequest(req Request) error {
	switch {
	case req.Key == nil:
		return errors.New("no key to certify")
	case req.For <= 0:
		return errors.New("the validity must be positive")
	case req.For > MaxValidity:
		return fmt.Errorf("validity %s refused: an emergency certificate is valid for at most %s", req.For, MaxValidity)
	case strings.TrimSpace(req.Reason) == "":
		return errors.New("a reason is required: it goes into the certificate and the audit log")
	case len(req.Reason) > maxReason:
		return fmt.Errorf("the reason is %d bytes; at most %d (it goes into every target's log)", len(req.Reason), maxReason)
	}
	for _, f := range []struct{ name, v string }{{"login", req.Login}, {"host", req.Host}} {
		if f.v == "" || strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == ',' }) >= 0 {
			return fmt.Errorf("%s %q: one word without spaces or commas is required", f.name, f.v)
		}
	}
	if strings.IndexFunc(req.Reason, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return errors.New("the reason must be one line of printable text")
	}
	return nil
}

// checkShares requires enough shares, of one CA, each of a different
// person and a different index. It returns the persons, sorted.
func checkShares(ca ssh.PublicKey, shares []*Opened) ([]string, error) {
	if len(shares) < 2 {
		return nil, fmt.Errorf("%d share(s) given: an emergency certificate needs the shares of at least two different persons", len(shares))
	}
	fp := ssh.FingerprintSHA256(ca)
	var persons []string
	indexes := map[int]bool{}
	for _, s := range shares {
		if s.Info.CA != fp {
			return nil, fmt.Errorf("the share of %s belongs to emergency CA %q, not to the published %s", s.Info.Holder, s.Info.CA, fp)
		}
		if slices.Contains(persons, s.Info.Holder) {
			return nil, fmt.Errorf("two shares of %s: an emergency certificate needs shares of different persons", s.Info.Holder)
		}
		if indexes[s.Info.Index] {
			return nil, fmt.Errorf("share %d given twice", s.Info.Index)
		}
		persons = append(persons, s.Info.Holder)
		indexes[s.Info.Index] = true
	}
	if t := shares[0].Info.Threshold; len(shares) < t {
		return nil, fmt.Errorf("%d shares given, %d needed (threshold)", len(shares), t)
	}
	slices.Sort(persons)
	return persons, nil
}

// VerifyRecord checks a record file's signature with the emergency CA and
// returns the record.
func VerifyRecord(ca ssh.PublicKey, file []byte) (Record, error) {
	var env envelope
	if err := json.Unmarshal(file, &env); err != nil {
		return Record{}, fmt.Errorf("not an emergency record: %w", err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(env.Signature, &sig); err != nil {
		return Record{}, errors.New("emergency record: unreadable signature")
	}
	if err := ca.Verify(append([]byte(recordDomain), env.Record...), &sig); err != nil {
		return Record{}, fmt.Errorf("emergency record: the signature does not verify with emergency CA %s (forged or altered)", ssh.FingerprintSHA256(ca))
	}
	var rec Record
	if err := json.Unmarshal(env.Record, &rec); err != nil || rec.Format != recordFormat {
		return Record{}, errors.New("emergency record: signed, but not a record of this format")
	}
	return rec, nil
}

// PublicLine is the emergency CA in authorized_keys format, named, for
// targets' TrustedUserCAKeys.
func PublicLine(ca ssh.PublicKey) string {
	line := ssh.MarshalAuthorizedKey(ca)
	return string(line[:len(line)-1]) + " tandem-breakglass-ca"
}
