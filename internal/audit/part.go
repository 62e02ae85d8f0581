package audit

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"tandem.dev/tandem/internal/vault"
)

// Record format v2: every field but index, tenant, time and type is
// encrypted, one part per retention class, under the vault's key of
// (tenant, class, day). Destroying a key (crypto-shredding) makes that
// class of that tenant's day unreadable for good, while the record, its
// Merkle leaf and every proof over the log stay intact: the leaf commits to
// the record's leaf form, in which each part keeps only the SHA-256 of its
// ciphertext (docs/RETENTION.md, M10, M14).

// GatewayTenant is the tenant of events that belong to no tenant (the
// gateway's own start, checkpoints, unauthenticated connections). The
// configuration refuses tenant ids starting with "_", so it cannot clash.
const GatewayTenant = "_gateway"

const (
	recordV2 = 2
	// partAD starts every part's additional data.
	partAD = "tandem-audit-v2"
)

// Keys is where a log gets the data keys it encrypts with; *vault.Vault
// satisfies it. Key creates the key of a day on first use.
type Keys interface {
	Key(c vault.Class, tenant string, day time.Time) (id string, key []byte, err error)
	KeyReader
}

// KeyReader finds a data key again by its id, for reading; *vault.Vault
// satisfies it.
type KeyReader interface {
	KeyByID(c vault.Class, tenant, day, id string) ([]byte, error)
}

// Why a part could not be read (Unreadable.Reason).
const (
	ReasonShredded = "shredded"      // its key was destroyed on purpose
	ReasonNoKey    = "no key"        // neither the key nor its tombstone exists
	ReasonKEK      = "wrong KEK"     // the key exists but does not unwrap
	ReasonCorrupt  = "corrupt"       // it does not decrypt with its key, or decrypts to something the gateway never writes
	ReasonNoKeys   = "not decrypted" // the reader was given no key source
	// ReasonNotDisclosed: a disclosed record (OpenDisclosed) came without
	// the key of this part: withheld, or shredded before it was disclosed.
	ReasonNotDisclosed = "not disclosed"
)

// Unreadable is one part of a record a reader could not decrypt: which
// class of fields is missing from the Event, and why.
type Unreadable struct {
	Class  vault.Class `json:"class"`
	Day    string      `json:"day"`
	Key    string      `json:"key"`
	Reason string      `json:"reason"`
	err    error
}

// part is one class's fields of an event, encrypted; its fields are in
// canonical (sorted) order. A compacted part has no CT.
type part struct {
	Class    vault.Class `json:"class"`
	CT       string      `json:"ct,omitempty"`
	CTSHA256 string      `json:"ct_sha256"`
	Day      string      `json:"day"`
	Key      string      `json:"key"`
}

// tailV2 is a v2 record after its index; wireV2 the whole record.
type tailV2 struct {
	Parts       []part            `json:"parts"`
	Tenant      string            `json:"tenant"`
	Time        string            `json:"time"`
	Type        Type              `json:"type"`
	Unencrypted map[string]string `json:"unencrypted,omitempty"`
	V           int               `json:"v"`
}

// unencryptedTypes are the event types whose attributes stay in clear:
// the log's own structure, which a verifier without keys must read and
// which holds no personal data. log.segment ties a new segment to the
// checkpoint of the one before (sizes, a root hash, the lost range and
// the operator's reason), and keyless verification checks that tie.
var unencryptedTypes = map[Type]bool{LogSegment: true}

type wireV2 struct {
	Index *uint64 `json:"index"`
	tailV2
}

// plain is a part's plaintext: the fields of one class, canonical JSON.
type plain struct {
	Attrs   map[string]string `json:"attrs,omitempty"`
	Host    string            `json:"host,omitempty"`
	Login   string            `json:"login,omitempty"`
	Person  string            `json:"person,omitempty"`
	Request string            `json:"request,omitempty"`
	Session string            `json:"session,omitempty"`
	Source  string            `json:"source,omitempty"`
}

func (p *plain) empty() bool {
	return len(p.Attrs) == 0 && p.Host == "" && p.Login == "" && p.Person == "" && p.Request == "" && p.Session == "" && p.Source == ""
}

// fieldClass is the class of each Event field that is not in clear.
var fieldClass = map[string]vault.Class{
	"person": vault.Admin, "session": vault.Admin, "host": vault.Admin,
	"login": vault.Admin, "request": vault.Admin, "source": vault.Operational,
}

// FieldClass returns the retention class of an Event field by its JSON
// name; index, tenant, time and type are in clear ("").
func FieldClass(name string) vault.Class { return fieldClass[name] }

// partOrder is the order of parts in a record: by class name.
var partOrder = slices.Sorted(slices.Values(vault.Classes))

// split sorts e's fields into one plaintext per class, in partOrder.
func split(e Event) []plain { return splitInto(make([]plain, len(partOrder)), e) }

// splitInto is split into ps, which holds len(partOrder) zero plains: a
// caller's array keeps them off the heap (they were a fifth of the bytes
// an append allocated).
func splitInto(ps []plain, e Event) []plain {
	at := func(c vault.Class) *plain { return &ps[slices.Index(partOrder, c)] }
	a := at(vault.Admin)
	a.Person, a.Session, a.Host, a.Login, a.Request = e.Person, e.Session, e.Host, e.Login, e.Request
	at(vault.Operational).Source = e.Source
	if c, ok := oneClass(e.Attrs); ok {
		// The parts only encode their attributes: all of one class,
		// they can share e's map instead of a copy.
		at(c).Attrs = e.Attrs
		return ps
	}
	for k, v := range e.Attrs {
		p := at(ClassOf(k))
		if p.Attrs == nil {
			p.Attrs = map[string]string{}
		}
		p.Attrs[k] = v
	}
	return ps
}

// oneClass reports the class of attrs when there are some and all are
// of that one class.
func oneClass(attrs map[string]string) (vault.Class, bool) {
	var c vault.Class
	n := 0
	for k := range attrs {
		switch kc := ClassOf(k); {
		case n == 0:
			c = kc
		case kc != c:
			return "", false
		}
		n++
	}
	return c, n > 0
}

// additionalData binds a part to its record's class, tenant, day, key id,
// type and time, length-prefixed so no two differ only in where one field
// ends. The index is left out: parts are sealed before the writer assigns
// it, and the Merkle tree fixes every record's position anyway.
func additionalData(c vault.Class, tenant, day, id string, t Type, ts string) []byte {
	ad := make([]byte, 0, 128)
	for _, s := range []string{partAD, string(c), tenant, day, id, string(t), ts} {
		ad = binary.AppendUvarint(ad, uint64(len(s)))
		ad = append(ad, s...)
	}
	return ad
}

func sealPart(keys Keys, c vault.Class, tenant string, at time.Time, day string, t Type, ts string, pt []byte) (part, error) {
	id, key, err := keys.Key(c, tenant, at)
	if err != nil {
		return part{}, fmt.Errorf("audit: %s key: %w", c, err)
	}
	aead, err := chacha20poly1305.NewX(key)
	clear(key)
	if err != nil {
		return part{}, fmt.Errorf("audit: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return part{}, fmt.Errorf("audit: random: %w", err)
	}
	ct := aead.Seal(nonce, nonce, pt, additionalData(c, tenant, day, id, t, ts))
	sum := sha256.Sum256(ct)
	return part{Class: c, CT: base64.StdEncoding.EncodeToString(ct), CTSHA256: hex.EncodeToString(sum[:]), Day: day, Key: id}, nil
}

// openBrace is every v2 record's head, shared: appendPayload only reads it.
var openBrace = []byte{'{'}

// preEncodeV2 encrypts e's parts and marshals everything but the index.
// It runs in the appender's goroutine, so encryption costs the writer
// nothing.
func preEncodeV2(e Event, keys Keys) (preEncoded, error) {
	if e.Type == "" {
		return preEncoded{}, errors.New("audit: event has no type")
	}
	if e.Time.IsZero() {
		return preEncoded{}, errors.New("audit: event has no time")
	}
	if keys == nil {
		return preEncoded{}, errors.New("audit: no data keys: refusing to write the event in plaintext")
	}
	e = validUTF8(e)
	tenant := e.Tenant
	if tenant == "" {
		tenant = GatewayTenant
	}
	ts := e.Time.UTC().Format(time.RFC3339Nano)
	day := vault.Day(e.Time)
	var unenc map[string]string
	if unencryptedTypes[e.Type] {
		unenc, e.Attrs = e.Attrs, nil
	}
	parts := make([]part, 0, 2)
	pt := make([]byte, 0, 256) // sealing copies it: one buffer serves every part
	var plains [8]plain
	var ps []plain
	if len(partOrder) <= len(plains) {
		ps = splitInto(plains[:len(partOrder)], e)
	} else {
		ps = split(e)
	}
	for i, p := range ps {
		if p.empty() {
			continue
		}
		pt = appendPlain(pt[:0], &p)
		sp, err := sealPart(keys, partOrder[i], tenant, e.Time, day, e.Type, ts, pt)
		if err != nil {
			return preEncoded{}, err
		}
		parts = append(parts, sp)
	}
	bp := encBufs.Get().(*[]byte)
	t, leaf, buf, err := tailAndLeafIn(*bp, &tailV2{Parts: parts, Tenant: tenant, Time: ts, Type: e.Type, Unencrypted: unenc, V: recordV2})
	*bp = buf
	if err != nil {
		encBufs.Put(bp)
		return preEncoded{}, err
	}
	return preEncoded{head: openBrace, tail: t[1:], leafTail: leaf, buf: bp}, nil
}

// tailAndLeaf encodes a record's tail and its leaf form (without the
// leading "{"), the leaf form made while encoding rather than by scanning
// the tail. Should anything in clear read as a ct field (a clear
// attribute named "ct"), the scan decides, as Verify will: it refuses
// the record.
func tailAndLeaf(tl *tailV2) (tail, leaf []byte, err error) {
	tail, leaf, _, err = tailAndLeafIn(nil, tl)
	return tail, leaf, err
}

// tailAndLeafIn is tailAndLeaf encoding both into buf (grown if it is too
// small: the buffer used is returned), the leaf form first.
func tailAndLeafIn(buf []byte, tl *tailV2) (tail, leaf, used []byte, err error) {
	leafSize := 128 + len(tl.Tenant) + len(tl.Time) + len(tl.Type)
	for _, p := range tl.Parts {
		leafSize += 96 + len(p.Class) + len(p.Key)
	}
	for k, v := range tl.Unencrypted {
		leafSize += 8 + len(k) + len(v)
	}
	size := leafSize
	for _, p := range tl.Parts {
		size += 8 + len(p.CT)
	}
	if cap(buf) < leafSize+size {
		buf = make([]byte, 0, leafSize+size)
	}
	// Each has its own end of buf: one that outgrows its estimate moves
	// out rather than into the other.
	leaf = appendTailV2(buf[:0:leafSize], tl, true)
	tail = appendTailV2(buf[leafSize:leafSize:leafSize+size], tl, false)
	if bytes.Contains(leaf, ctKey) {
		leaf, err = leafForm(nil, tail[1:], false)
		return tail, leaf, buf, err
	}
	return tail, leaf[1:], buf, nil
}

// encBufs recycles the buffers preEncodeV2 encodes a record's tail and
// leaf form into: they were a quarter of the bytes an append allocated.
// The writer hands one back (preEncoded.release) once it has copied the
// record out.
var encBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf bounds the buffers kept: a rare large event should not pin
// its buffer.
const maxPooledBuf = 16 << 10

// EncodeRecordV2 returns the canonical bytes of e as record number index
// in format v2, its parts encrypted with keys.
func EncodeRecordV2(index uint64, e Event, keys Keys) ([]byte, error) {
	p, err := preEncodeV2(e, keys)
	if err != nil {
		return nil, err
	}
	return p.appendPayload(make([]byte, 0, p.size()), index), nil
}

// v2Suffix ends every v2 record; a v1 record ends with its "type" string.
var v2Suffix = []byte(`,"v":2}`)

func isV2(payload []byte) bool { return bytes.HasSuffix(payload, v2Suffix) }

var (
	ctKey       = []byte(`"ct":"`)
	ctSHA256Key = []byte(ctSHA256Lit.s)
)

// appendLeafForm appends the leaf form of a v2 record (or any part of it)
// to dst: the bytes without their "ct" fields, each checked first against
// the ct_sha256 that follows it. Nothing in clear can contain `"ct":"`
// (quotes inside strings are escaped), so every match is a part's ct. This
// scan instead of a JSON decode keeps verification at memory speed.
func appendLeafForm(dst, rec []byte) ([]byte, error) { return leafForm(dst, rec, true) }

// leafForm is appendLeafForm; check false skips the hashes of ciphertexts
// the caller has just hashed itself.
func leafForm(dst, rec []byte, check bool) ([]byte, error) {
	var s leafFormer
	return s.appendForm(dst, rec, check)
}

// leafFormer makes leaf forms, keeping its buffer for the decoded
// ciphertexts from one record to the next: a verifier checks every record
// of a log, and a fresh buffer per record was one allocation each.
type leafFormer struct{ ct []byte }

func (s *leafFormer) appendForm(dst, rec []byte, check bool) ([]byte, error) {
	n := len(dst)
	if out, ok := s.appendFormV2(dst, rec, check); ok {
		return out, nil
	}
	return s.scan(dst[:n], rec, check)
}

// scan is the leaf form by definition: every `"ct":"` starts a part's ct.
func (s *leafFormer) scan(dst, rec []byte, check bool) ([]byte, error) {
	for {
		j := bytes.Index(rec, ctKey)
		if j < 0 {
			return append(dst, rec...), nil
		}
		dst = append(dst, rec[:j]...)
		v := rec[j+len(ctKey):]
		end := bytes.IndexByte(v, '"')
		if end < 0 || !bytes.HasPrefix(v[end+1:], ctSHA256Key) {
			return nil, errors.New("part: ct without ct_sha256")
		}
		after := v[end+1+len(ctSHA256Key):]
		if len(after) < 2*sha256.Size+1 || after[2*sha256.Size] != '"' {
			return nil, errors.New("part: malformed ct_sha256")
		}
		rec = v[end+2:] // from "ct_sha256"
		if !check {
			continue
		}
		if err := s.checkCT(v[:end], after[:2*sha256.Size]); err != nil {
			return nil, err
		}
	}
}

// checkCT checks a part's ciphertext (base64) against its ct_sha256 (hex).
func (s *leafFormer) checkCT(ct, sumHex []byte) error {
	var want [sha256.Size]byte
	_, err := hex.Decode(want[:], sumHex)
	return s.checkCTSum(ct, &want, err == nil)
}

// checkCTSum is checkCT with the ct_sha256 decoded (wantOK: it could be).
func (s *leafFormer) checkCTSum(ct []byte, want *[sha256.Size]byte, wantOK bool) error {
	n := base64.StdEncoding.DecodedLen(len(ct))
	if cap(s.ct) < n {
		s.ct = make([]byte, n)
	}
	got, ok := decodeBase64(s.ct[:n], ct)
	if !ok {
		var err error
		if got, err = base64.StdEncoding.Decode(s.ct[:n], ct); err != nil {
			return fmt.Errorf("part: ct: %w", err)
		}
	}
	n = got
	if !wantOK || sha256.Sum256(s.ct[:n]) != *want {
		return errors.New("part: ct does not match its ct_sha256")
	}
	return nil
}

// The v2 layout as the writer marshals it (tailV2, part), up to the end
// of the parts array. Each is kept as words too (layoutLit), so that
// expect compares it with two loads: a comparison with a string that is
// not a constant where it is compiled, as expect's parameter is even
// inlined, calls memequal, a sixth of the layout's time.
var (
	v2Index      = newLayoutLit(`{"index":`)
	v2Parts      = newLayoutLit(`,"parts":[`)
	v2Class      = newLayoutLit(`{"class":"`)
	v2PartCT     = newLayoutLit(`","ct":"`)
	v2PartSHA256 = newLayoutLit(`","ct_sha256":"`) // after the class of a part without ct
	v2Day        = newLayoutLit(`","day":"`)
	v2Key        = newLayoutLit(`","key":"`)
	v2Tenant     = newLayoutLit(`],"tenant":"`)
	v2Time       = newLayoutLit(`","time":"`)
	v2Type       = newLayoutLit(`","type":"`)
	v2PartEnd    = newLayoutLit(`"}`)
	ctSHA256Lit  = newLayoutLit(`,"ct_sha256":"`)
)

// appendFormV2 is scan for records laid out as the writer writes them:
//
//	{"index":N,"parts":[{"class":"C","ct":"…","ct_sha256":"…","day":"…","key":"…"},…],…
//
// It finds each ct by walking the parts in their fixed key order instead
// of searching for `"ct":"`: in JSON, where every other byte is a quote,
// that search mostly meets false starts, and it was a fifth of keyless
// verification's time. Its result must be scan's, so it accepts a part
// only when its values (class, day, key: see expectName; ct_sha256:
// lowercase hex) hold no quote, so that no `"ct":"` can hide in them or
// span two fields; it takes what follows the parts array as it is only
// in the writer's plain form (tenant, time, type, v; values as in a part)
// and hands anything else there to scan itself; it gives up (false) on
// anything else in the parts, leaving it and every error to scan, so that
// its verdict and message stay scan's. dst may have been written past its
// length when it gives up.
func (s *leafFormer) appendFormV2(dst, rec []byte, check bool) ([]byte, bool) {
	p, ok := expect(rec, 0, v2Index)
	if !ok {
		return nil, false
	}
	q := p
	for q < len(rec) && rec[q] >= '0' && rec[q] <= '9' {
		q++
	}
	if q == p {
		return nil, false
	}
	if p, ok = expect(rec, q, v2Parts); !ok {
		return nil, false
	}
	from := 0 // the bytes from here to p go to dst as they are
	for n := 0; p < len(rec) && rec[p] != ']'; n++ {
		if n > 0 {
			if rec[p] != ',' {
				return nil, false
			}
			p++
		}
		if p, ok = expectName(rec, p, v2Class); !ok {
			return nil, false
		}
		if _, ok := expect(rec, p, v2PartCT); ok {
			j := p + 2 // the `"ct":"`, which scan would find next
			v := rec[j+len(ctKey):]
			end := bytes.IndexByte(v, '"')
			if end < 0 {
				return nil, false
			}
			after, ok := expect(v, end+1, ctSHA256Lit)
			var sum [sha256.Size]byte
			if !ok || !decodeLowerHex(&sum, v, after) {
				return nil, false
			}
			if check && s.checkCTSum(v[:end], &sum, true) != nil {
				return nil, false
			}
			dst = append(dst, rec[from:j]...)
			from = j + len(ctKey) + end + 2            // from "ct_sha256", as scan goes on
			p = j + len(ctKey) + after + 2*sha256.Size // the quote after it
		} else {
			if p, ok = expect(rec, p, v2PartSHA256); !ok || !lowerHex(rec, p, 2*sha256.Size) {
				return nil, false
			}
			p += 2 * sha256.Size
		}
		if p, ok = expectName(rec, p, v2Day); !ok {
			return nil, false
		}
		if p, ok = expectName(rec, p, v2Key); !ok {
			return nil, false
		}
		if p, ok = expect(rec, p, v2PartEnd); !ok {
			return nil, false
		}
	}
	if p >= len(rec) {
		return nil, false
	}
	// The writer's tail without attributes in clear holds no ct either.
	q, ok = expectName(rec, p, v2Tenant)
	if ok {
		q, ok = expectName(rec, q, v2Time)
	}
	if ok {
		q, ok = expectName(rec, q, v2Type)
	}
	if ok && q+1 < len(rec) && bytes.Equal(rec[q+1:], v2Suffix) {
		return append(dst, rec[from:]...), true
	}
	dst = append(dst, rec[from:p]...)
	dst, err := s.scan(dst, rec[p:], check)
	return dst, err == nil
}

// layoutLit is a literal of the layout (at most 16 bytes) as two
// little-endian words and the masks of its bytes in them.
type layoutLit struct {
	s    string
	w, m [2]uint64
}

func newLayoutLit(s string) *layoutLit {
	if len(s) > 16 {
		panic("audit: layout literal longer than 16 bytes")
	}
	var b, m [16]byte
	copy(b[:], s)
	for i := range len(s) {
		m[i] = 0xff
	}
	l := &layoutLit{s: s}
	for i := range 2 {
		l.w[i] = binary.LittleEndian.Uint64(b[8*i:])
		l.m[i] = binary.LittleEndian.Uint64(m[8*i:])
	}
	return l
}

// expect returns the position after lit if rec holds it at p. It needs
// 16 bytes from p, and says no with fewer: the writer's records have
// them at every literal appendFormV2 asks for, and on a no it leaves the
// record to scan, whose result stands either way. So it stays small
// enough to be inlined.
func expect(rec []byte, p int, lit *layoutLit) (int, bool) {
	if p < 0 || len(rec)-p < 16 {
		return 0, false
	}
	x0 := binary.LittleEndian.Uint64(rec[p:])
	x1 := binary.LittleEndian.Uint64(rec[p+8:])
	return p + len(lit.s), (x0^lit.w[0])&lit.m[0]|(x1^lit.w[1])&lit.m[1] == 0
}

// expectName is expect followed by a name of [0-9A-Za-z_.:+-] (a class,
// day, key id, tenant, time or type: never a quote or a backslash); it
// returns the position of the quote that ends the name.
func expectName(rec []byte, p int, lit *layoutLit) (int, bool) {
	p, ok := expect(rec, p, lit)
	if !ok {
		return 0, false
	}
	for p < len(rec) && nameByte[rec[p]] {
		p++
	}
	return p, p < len(rec) && rec[p] == '"'
}

// lowerHex reports whether rec[p:p+n] is lowercase hex.
func lowerHex(rec []byte, p, n int) bool {
	if p+n > len(rec) {
		return false
	}
	var bad byte
	for _, c := range rec[p : p+n] {
		bad |= lowerHexValue[c]
	}
	return bad < 16
}

// decodeBase64 is base64.StdEncoding.Decode for the writer's ciphertexts,
// a third faster: four table lookups per quantum and one check per
// quantum. It only takes canonical text (padded, no line breaks, the
// unused bits of the last quantum zero), where it gives Decode's bytes;
// on anything else it returns false and the caller asks Decode, whose
// verdict and message stand. dst holds DecodedLen(len(src)) bytes.
func decodeBase64(dst, src []byte) (int, bool) {
	if len(src) == 0 || len(src)%4 != 0 || len(dst) < len(src)/4*3 {
		return 0, false
	}
	n := 0
	body, last := src[:len(src)-4], src[len(src)-4:]
	var bad uint32
	for len(body) >= 8 { // two quanta a round: half the loop's overhead
		v := b64Value[0][body[0]] | b64Value[1][body[1]] | b64Value[2][body[2]] | b64Value[3][body[3]]
		w := b64Value[0][body[4]] | b64Value[1][body[5]] | b64Value[2][body[6]] | b64Value[3][body[7]]
		bad |= v | w
		// Their six bytes in one store of eight: the two past them are
		// within dst (the last quantum, decoded below, comes after them)
		// and are written over by the next round or by that quantum, or
		// lie past the end the caller is told.
		binary.BigEndian.PutUint64(dst[n:], uint64(v)<<40|uint64(w&0xffffff)<<16)
		n += 6
		body = body[8:]
	}
	if len(body) == 4 {
		v := b64Value[0][body[0]] | b64Value[1][body[1]] | b64Value[2][body[2]] | b64Value[3][body[3]]
		bad |= v
		dst[n], dst[n+1], dst[n+2] = byte(v>>16), byte(v>>8), byte(v)
		n += 3
	}
	switch {
	case last[3] != '=':
		v := b64Value[0][last[0]] | b64Value[1][last[1]] | b64Value[2][last[2]] | b64Value[3][last[3]]
		bad |= v
		dst[n], dst[n+1], dst[n+2] = byte(v>>16), byte(v>>8), byte(v)
		n += 3
	case last[2] != '=':
		v := b64Value[0][last[0]] | b64Value[1][last[1]] | b64Value[2][last[2]]
		bad |= v | v&0xff<<24 // the unused bits must be zero
		dst[n], dst[n+1] = byte(v>>16), byte(v>>8)
		n += 2
	default:
		v := b64Value[0][last[0]] | b64Value[1][last[1]]
		bad |= v | v&0xffff<<16
		dst[n] = byte(v >> 16)
		n++
	}
	return n, bad < 1<<24
}

// b64Value[i][c] is the standard alphabet's value of c, shifted to its
// place as the i-th character of a quantum; 1<<24 or more for any byte
// not in the alphabet.
var b64Value = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		for c := range t[i] {
			t[i][c] = 1 << 31
		}
		for v, c := range []byte(alphabet) {
			t[i][c] = uint32(v) << (18 - 6*i)
		}
	}
	return t
}()

// decodeLowerHex decodes the lowercase hex at rec[p:] into sum, checking
// and decoding in one pass: false unless all of it is lowercase hex.
func decodeLowerHex(sum *[sha256.Size]byte, rec []byte, p int) bool {
	if p < 0 || p+2*sha256.Size > len(rec) {
		return false
	}
	h := rec[p : p+2*sha256.Size]
	var bad byte
	for i := range sum {
		hi, lo := lowerHexValue[h[2*i]], lowerHexValue[h[2*i+1]]
		bad |= hi | lo
		sum[i] = hi<<4 | lo
	}
	return bad < 16
}

// nameByte and lowerHexValue classify bytes by table, not by
// comparisons: in key ids and hashes digits and letters come at random,
// and the branches of a comparison per byte, mispredicted on about every
// other one, made these checks cost more than all the rest of a leaf form.
var nameByte = func() (name [256]bool) {
	for c := range 256 {
		digit, lower, upper := c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z'
		name[c] = digit || lower || upper || strings.IndexByte("_.:+-", byte(c)) >= 0
	}
	return name
}()

// lowerHexValue is the value of each lowercase hex digit, and 16 for
// every other byte: OR-ed over a run, below 16 means all of it is hex.
var lowerHexValue = func() (v [256]byte) {
	for c := range 256 {
		switch {
		case c >= '0' && c <= '9':
			v[c] = byte(c - '0')
		case c >= 'a' && c <= 'f':
			v[c] = byte(c - 'a' + 10)
		default:
			v[c] = 16
		}
	}
	return v
}()

// leafHash is the Merkle leaf hash of a record: over the record itself in
// v1, over its leaf form in v2.
func leafHash(payload []byte) ([]byte, error) {
	if !isV2(payload) {
		return hasher.HashLeaf(payload), nil
	}
	lf, err := appendLeafForm(make([]byte, 0, len(payload)), payload)
	if err != nil {
		return nil, err
	}
	return hasher.HashLeaf(lf), nil
}

// decodeV2 parses a canonical v2 record and decrypts the parts it can
// with keys (none if keys is nil).
func decodeV2(raw []byte, keys KeyReader) (uint64, Event, []Unreadable, error) {
	return decodeV2With(raw, vaultOpener(keys))
}

// decodeV2With is decodeV2 with the parts opened by open.
func decodeV2With(raw []byte, open partOpener) (uint64, Event, []Unreadable, error) {
	w, err := parseV2(raw)
	if err != nil {
		return 0, Event{}, nil, err
	}
	ts, _ := time.Parse(time.RFC3339Nano, w.Time) // parseV2 checked it
	e := Event{Time: ts.UTC(), Type: w.Type, Tenant: w.Tenant}
	if len(w.Unencrypted) > 0 {
		e.Attrs = maps.Clone(w.Unencrypted)
	}
	if e.Tenant == GatewayTenant {
		e.Tenant = ""
	}
	var bad []Unreadable
	for _, p := range w.Parts {
		if err := openInto(&e, open, p, w.Tenant, w.Time); err != nil {
			bad = append(bad, unreadable(p, err))
		}
	}
	return *w.Index, e, bad, nil
}

// partOpener returns the AEAD that opens part p of a record of tenant.
type partOpener func(p part, tenant string) (cipher.AEAD, error)

// vaultOpener opens parts with the data keys of keys (nil: none).
func vaultOpener(keys KeyReader) partOpener {
	return func(p part, tenant string) (cipher.AEAD, error) {
		if keys == nil {
			return nil, errNoKeys
		}
		key, err := keys.KeyByID(p.Class, tenant, p.Day, p.Key)
		if err != nil {
			return nil, err
		}
		aead, err := chacha20poly1305.NewX(key)
		clear(key)
		return aead, err
	}
}

// checkWireV2 refuses a v2 record the writer could not have written.
func checkWireV2(w *wireV2, ts time.Time, raw []byte) error {
	if w.V != recordV2 || w.Parts == nil {
		return errors.New("not a v2 record")
	}
	if vault.CheckName("tenant", w.Tenant) != nil {
		return fmt.Errorf("bad tenant %q", w.Tenant)
	}
	if len(w.Unencrypted) > 0 && !unencryptedTypes[w.Type] {
		return fmt.Errorf("attributes in clear on a %s record", w.Type)
	}
	for i, p := range w.Parts {
		switch {
		case !p.Class.Valid():
			return fmt.Errorf("part %d: unknown class %q", i, p.Class)
		case i > 0 && w.Parts[i-1].Class >= p.Class:
			return errors.New("parts not sorted by class, or a class twice")
		case p.Day != vault.Day(ts):
			return fmt.Errorf("part %d: day %s is not the event's", i, p.Day)
		case vault.CheckName("key id", p.Key) != nil:
			return fmt.Errorf("part %d: bad key id", i)
		}
	}
	again, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return errors.New("not in canonical form")
	}
	if _, err := appendLeafForm(nil, raw); err != nil {
		return err
	}
	return nil
}

// openInto decrypts part p and merges its fields into e.
func openInto(e *Event, open partOpener, p part, tenant, ts string) error {
	aead, err := open(p, tenant)
	if err != nil {
		return err
	}
	if p.CT == "" {
		return errors.New("ciphertext removed, but its key still exists")
	}
	ct, err := base64.StdEncoding.DecodeString(p.CT)
	if err != nil || len(ct) < aead.NonceSize() {
		return errors.New("malformed ciphertext")
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, ct[:n], ct[n:], additionalData(p.Class, tenant, p.Day, p.Key, e.Type, ts))
	if err != nil {
		return errors.New("does not decrypt with its key")
	}
	return merge(e, p.Class, pt)
}

var errNoKeys = errors.New("no key source")

// merge puts a part's plaintext into e after checking that it is
// canonical and holds only fields of its class.
func merge(e *Event, c vault.Class, pt []byte) error {
	var p plain
	if err := json.Unmarshal(pt, &p); err != nil {
		return fmt.Errorf("plaintext: %w", err)
	}
	if again, err := json.Marshal(&p); err != nil || !bytes.Equal(again, pt) || p.empty() {
		return errors.New("plaintext not in canonical form")
	}
	for k := range p.Attrs {
		if ClassOf(k) != c {
			return fmt.Errorf("attribute %q in the %s part", k, c)
		}
	}
	ps := split(Event{Person: p.Person, Session: p.Session, Host: p.Host, Login: p.Login, Request: p.Request, Source: p.Source})
	for i, q := range ps {
		if partOrder[i] != c && !q.empty() {
			return fmt.Errorf("%s fields in the %s part", partOrder[i], c)
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&e.Person, p.Person)
	set(&e.Session, p.Session)
	set(&e.Host, p.Host)
	set(&e.Login, p.Login)
	set(&e.Request, p.Request)
	set(&e.Source, p.Source)
	if len(p.Attrs) > 0 && e.Attrs == nil {
		e.Attrs = make(map[string]string, len(p.Attrs))
	}
	for k, v := range p.Attrs {
		e.Attrs[k] = v
	}
	return nil
}

func unreadable(p part, err error) Unreadable {
	u := Unreadable{Class: p.Class, Day: p.Day, Key: p.Key, Reason: ReasonCorrupt, err: err}
	switch {
	case errors.Is(err, errNoKeys):
		u.Reason = ReasonNoKeys
	case errors.Is(err, errNotDisclosed):
		u.Reason = ReasonNotDisclosed
	case errors.Is(err, vault.ErrOtherKey):
		// The writer always uses the key the vault holds, and a
		// destroyed day never gets another: the part was moved or made.
	case errors.Is(err, vault.ErrShredded):
		u.Reason = ReasonShredded
	case errors.Is(err, vault.ErrNoKey):
		u.Reason = ReasonNoKey
	case errors.Is(err, vault.ErrKEK):
		u.Reason = ReasonKEK
	}
	return u
}
