package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxRecordSize bounds one record's canonical bytes. Events are metadata;
// terminal output goes to recordings, so anything larger is a bug upstream,
// and the bound keeps a corrupt length field from making a reader allocate
// gigabytes.
const MaxRecordSize = 1 << 20

// frameOverhead is the length prefix plus the CRC trailer around a payload.
const frameOverhead = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// head holds the canonical fields that sort before "index"; tail those
// after it. Keeping the two halves as separate structs lets an appender
// marshal its event in its own goroutine, before the writer knows the index,
// while the result is still one JSON object with its keys in sorted order.
type head struct {
	Attrs map[string]string `json:"attrs,omitempty"`
	Host  string            `json:"host,omitempty"`
}

type tail struct {
	Login   string `json:"login,omitempty"`
	Person  string `json:"person,omitempty"`
	Request string `json:"request,omitempty"`
	Session string `json:"session,omitempty"`
	Source  string `json:"source,omitempty"`
	Tenant  string `json:"tenant,omitempty"`
	Time    string `json:"time"`
	Type    Type   `json:"type"`
}

// wire is the whole canonical record, used for decoding. Its fields are in
// the same (sorted) order as head, "index", tail.
type wire struct {
	Attrs   map[string]string `json:"attrs,omitempty"`
	Host    string            `json:"host,omitempty"`
	Index   *uint64           `json:"index"`
	Login   string            `json:"login,omitempty"`
	Person  string            `json:"person,omitempty"`
	Request string            `json:"request,omitempty"`
	Session string            `json:"session,omitempty"`
	Source  string            `json:"source,omitempty"`
	Tenant  string            `json:"tenant,omitempty"`
	Time    string            `json:"time"`
	Type    Type              `json:"type"`
}

// preEncoded is an event marshalled up to its index.
type preEncoded struct {
	head []byte // "{" or `{"attrs":...,"host":"...",`
	tail []byte // `"login":...,"type":"..."}`
	// leafTail is tail in the leaf form (v2: without ciphertexts); nil
	// when the record is its own leaf form (v1).
	leafTail []byte
	// buf, when set, holds tail and leafTail and goes back to encBufs on
	// release.
	buf *[]byte
}

// release hands p's buffer back for reuse; p must not be used after.
func (p *preEncoded) release() {
	if p.buf != nil && cap(*p.buf) <= maxPooledBuf {
		encBufs.Put(p.buf)
	}
	*p = preEncoded{}
}

// preEncode marshals everything of e but the index. Times are stored in UTC
// with nanoseconds so that decoding and re-encoding gives the same bytes.
func preEncode(e Event) (preEncoded, error) {
	if e.Type == "" {
		return preEncoded{}, errors.New("audit: event has no type")
	}
	if e.Time.IsZero() {
		return preEncoded{}, errors.New("audit: event has no time")
	}
	e = validUTF8(e)
	h, err := json.Marshal(head{Attrs: e.Attrs, Host: e.Host})
	if err != nil {
		return preEncoded{}, fmt.Errorf("audit: encode event: %w", err)
	}
	t, err := json.Marshal(tail{
		Login: e.Login, Person: e.Person, Request: e.Request, Session: e.Session,
		Source: e.Source, Tenant: e.Tenant,
		Time: e.Time.UTC().Format(time.RFC3339Nano), Type: e.Type,
	})
	if err != nil {
		return preEncoded{}, fmt.Errorf("audit: encode event: %w", err)
	}
	h = h[:len(h)-1] // drop "}"
	if len(h) > 1 {
		h = append(h, ',')
	}
	return preEncoded{head: h, tail: t[1:]}, nil
}

// validUTF8 returns e with every string made valid UTF-8, each invalid
// byte sequence replaced by U+FFFD. JSON cannot carry invalid UTF-8:
// encoding/json would write such a byte as the escape \ufffd, which
// decodes to the rune and re-encodes as its raw bytes, so the record would
// fail its own canonical check — and anyone able to put a raw byte into an
// event (an SSH user name before authentication) could make the log
// unreadable. Replacing first keeps encoding and re-encoding identical.
// Where the exact bytes matter as evidence, the caller records a hash of
// them too.
func validUTF8(e Event) Event {
	v := func(s string) string {
		if utf8.ValidString(s) {
			return s
		}
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	e.Type = Type(v(string(e.Type)))
	e.Person, e.Session, e.Tenant, e.Host = v(e.Person), v(e.Session), v(e.Tenant), v(e.Host)
	e.Login, e.Source, e.Request = v(e.Login), v(e.Source), v(e.Request)
	clean := true
	for k, x := range e.Attrs {
		if !utf8.ValidString(k) || !utf8.ValidString(x) {
			clean = false
			break
		}
	}
	if !clean {
		attrs := make(map[string]string, len(e.Attrs))
		for k, x := range e.Attrs {
			attrs[v(k)] = v(x) // two keys that differ only in invalid bytes merge: the later wins
		}
		e.Attrs = attrs
	}
	return e
}

// appendPayload appends the canonical bytes of the record at index to dst.
func (p preEncoded) appendPayload(dst []byte, index uint64) []byte {
	dst = append(dst, p.head...)
	dst = append(dst, `"index":`...)
	dst = strconv.AppendUint(dst, index, 10)
	dst = append(dst, ',')
	return append(dst, p.tail...)
}

// appendLeaf appends the leaf form of the record at index to dst.
func (p preEncoded) appendLeaf(dst []byte, index uint64) []byte {
	if p.leafTail == nil {
		return p.appendPayload(dst, index)
	}
	return preEncoded{head: p.head, tail: p.leafTail}.appendPayload(dst, index)
}

func (p preEncoded) size() int { return len(p.head) + len(p.tail) + 30 }

// EncodeRecord returns the canonical bytes of e as record number index in
// format v1, which the log no longer writes (it writes EncodeRecordV2's):
// a JSON object with sorted keys, the time in UTC, every field in clear.
// These bytes are the Merkle leaf. There is no "prev" field: the Merkle
// tree already binds every record to its position and to everything
// before it.
func EncodeRecord(index uint64, e Event) ([]byte, error) {
	p, err := preEncode(e)
	if err != nil {
		return nil, err
	}
	return p.appendPayload(make([]byte, 0, p.size()), index), nil
}

// DecodeRecord parses canonical record bytes and returns the index and the
// event. It fails if the bytes are not exactly what the writer would
// write for that content, so a record cannot carry hidden variations. Of a
// v2 record it returns only what is in clear (index, tenant, time, type);
// DecodeRecordKeys decrypts the rest.
func DecodeRecord(raw []byte) (uint64, Event, error) {
	idx, e, _, err := DecodeRecordKeys(raw, nil)
	return idx, e, err
}

// DecodeRecordKeys is DecodeRecord that decrypts a v2 record's parts with
// keys (nil: none) and lists the parts it could not read.
func DecodeRecordKeys(raw []byte, keys KeyReader) (uint64, Event, []Unreadable, error) {
	if isV2(raw) {
		return decodeV2(raw, keys)
	}
	idx, e, err := decodeV1(raw)
	return idx, e, nil, err
}

func decodeV1(raw []byte) (uint64, Event, error) {
	// Unknown fields, trailing bytes and other variations are caught by
	// re-encoding below, so a plain Unmarshal is enough here.
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		return 0, Event{}, fmt.Errorf("decode record: %w", err)
	}
	if w.Index == nil {
		return 0, Event{}, errors.New("decode record: no index")
	}
	ts, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return 0, Event{}, fmt.Errorf("decode record: time: %w", err)
	}
	e := Event{
		Time: ts.UTC(), Type: w.Type, Person: w.Person, Session: w.Session,
		Tenant: w.Tenant, Host: w.Host, Login: w.Login, Source: w.Source,
		Request: w.Request, Attrs: w.Attrs,
	}
	again, err := EncodeRecord(*w.Index, e)
	if err != nil {
		return 0, Event{}, fmt.Errorf("decode record: %w", err)
	}
	if !bytes.Equal(again, raw) {
		return 0, Event{}, errors.New("decode record: not in canonical form")
	}
	return *w.Index, e, nil
}

// appendFrame appends one frame: 4-byte big-endian length, payload, 4-byte
// CRC32C of the payload. The CRC only finds torn writes; tamper evidence
// comes from the Merkle tree and the signed checkpoints.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
}

// frameError says why the bytes at Offset are not a whole, intact frame.
type frameError struct {
	Offset int64
	Reason string
	// Torn is true when the frame runs past the end of the data: the
	// signature of a write cut short by a crash.
	Torn bool
	// Length is the declared payload length, when it could be read.
	Length uint32
}

func (e *frameError) Error() string {
	return fmt.Sprintf("bad frame at byte %d: %s", e.Offset, e.Reason)
}

// frameReader reads frames one by one from a stream, so that no reader
// ever holds a whole log in memory.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	return &frameReader{r: br}
}

// next returns the next payload, valid until the following call. At a clean
// end it returns io.EOF; otherwise a *frameError or an I/O error.
func (fr *frameReader) next() ([]byte, error) {
	var payload []byte
	var err error
	fr.buf, payload, err = fr.appendNext(fr.buf[:0])
	return payload, err
}

// appendNext reads the next frame onto the end of dst and returns dst
// grown by its payload, and the payload. On an error dst keeps its
// length; the errors are next's. (Verification, which keeps many records
// at once, reads them with blockFrames instead, without this copy.)
func (fr *frameReader) appendNext(dst []byte) ([]byte, []byte, error) {
	// A frame that fits the reader's buffer is checked where it lies
	// there and copied once, onto dst: no read call per field, and no
	// header array that escapes through io.Reader.
	hdr, err := fr.r.Peek(4)
	if len(hdr) < 4 {
		switch {
		case err == io.EOF && len(hdr) == 0:
			return dst, nil, io.EOF
		case err == io.EOF:
			return dst, nil, &frameError{Offset: fr.off, Reason: fmt.Sprintf("%d stray bytes at the end", len(hdr)), Torn: true}
		}
		return dst, nil, fmt.Errorf("read frame at byte %d: %w", fr.off, err)
	}
	size := binary.BigEndian.Uint32(hdr)
	if size == 0 || size > MaxRecordSize {
		return dst, nil, &frameError{Offset: fr.off, Reason: fmt.Sprintf("length %d out of range", size)}
	}
	total := 4 + int(size) + 4
	if total > fr.r.Size() {
		return fr.appendLarge(dst, size)
	}
	b, err := fr.r.Peek(total)
	if len(b) < total {
		if err == io.EOF {
			return dst, nil, &frameError{Offset: fr.off, Reason: "frame runs past the end", Torn: true, Length: size}
		}
		return dst, nil, fmt.Errorf("read frame at byte %d: %w", fr.off, err)
	}
	payload := b[4 : 4+size]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4+size:]) {
		return dst, nil, &frameError{Offset: fr.off, Reason: "checksum mismatch", Length: size}
	}
	n := len(dst)
	dst = append(dst, payload...)
	if _, err := fr.r.Discard(total); err != nil {
		return dst[:n], nil, fmt.Errorf("read frame at byte %d: %w", fr.off, err)
	}
	fr.off += int64(total)
	return dst, dst[n:], nil
}

// appendLarge is appendNext for a frame larger than the reader's buffer,
// whose length (size) was read but not consumed.
func (fr *frameReader) appendLarge(dst []byte, size uint32) ([]byte, []byte, error) {
	if _, err := fr.r.Discard(4); err != nil {
		return dst, nil, fmt.Errorf("read frame at byte %d: %w", fr.off, err)
	}
	need := int(size) + 4
	dst = slices.Grow(dst, need)
	b := dst[len(dst) : len(dst)+need]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return dst, nil, &frameError{Offset: fr.off, Reason: "frame runs past the end", Torn: true, Length: size}
		}
		return dst, nil, fmt.Errorf("read frame at byte %d: %w", fr.off, err)
	}
	payload := b[:size]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[size:]) {
		return dst, nil, &frameError{Offset: fr.off, Reason: "checksum mismatch", Length: size}
	}
	fr.off += int64(need) + 4
	return dst[:len(dst)+int(size)], payload, nil
}

// blockFrames reads frames as frameReader does (the same payloads, errors
// and offsets), but into blocks of memory that the payloads keep pointing
// into, so that a reader that holds many records at once (verification's
// batches) neither copies them out of a read buffer nor reads twice per
// frame. A block the reader has left is handed to its caller (retired),
// who gives it back (release) once no payload in it is used any more.
type blockFrames struct {
	r       io.Reader
	size    int    // of a block; a larger frame gets a block of its own size
	blk     []byte // the block being read: the next frame starts at pos
	pos     int
	off     int64    // offset of the next frame
	err     error    // a read error not returned yet (as bufio keeps it)
	retired [][]byte // blocks left since the caller last took them
	free    [][]byte // blocks released, for reuse
}

func newBlockFrames(r io.Reader, size int) *blockFrames {
	return &blockFrames{r: r, size: size}
}

// next returns the next payload, valid until the block it is in is
// released; the errors are frameReader.next's.
func (bf *blockFrames) next() ([]byte, error) {
	hdr, err := bf.peek(4)
	if len(hdr) < 4 {
		switch {
		case err == io.EOF && len(hdr) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, &frameError{Offset: bf.off, Reason: fmt.Sprintf("%d stray bytes at the end", len(hdr)), Torn: true}
		}
		return nil, fmt.Errorf("read frame at byte %d: %w", bf.off, err)
	}
	size := binary.BigEndian.Uint32(hdr)
	if size == 0 || size > MaxRecordSize {
		return nil, &frameError{Offset: bf.off, Reason: fmt.Sprintf("length %d out of range", size)}
	}
	total := frameOverhead + int(size)
	b, err := bf.peek(total)
	if len(b) < total {
		if err == io.EOF {
			return nil, &frameError{Offset: bf.off, Reason: "frame runs past the end", Torn: true, Length: size}
		}
		return nil, fmt.Errorf("read frame at byte %d: %w", bf.off, err)
	}
	payload := b[4 : 4+size : 4+size]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4+size:]) {
		return nil, &frameError{Offset: bf.off, Reason: "checksum mismatch", Length: size}
	}
	bf.pos += total
	bf.off += int64(total)
	return payload, nil
}

// peek returns the next n bytes, reading more as needed, or fewer and
// the read error that stopped it.
func (bf *blockFrames) peek(n int) ([]byte, error) {
	for len(bf.blk)-bf.pos < n {
		if bf.err != nil {
			err := bf.err
			bf.err = nil
			return bf.blk[bf.pos:], err
		}
		if cap(bf.blk)-bf.pos < n {
			bf.newBlock(n)
		}
		bf.fill()
	}
	return bf.blk[bf.pos : bf.pos+n], nil
}

// newBlock moves what is left of the block (the start of a frame) to the
// start of another block that holds at least n bytes, and retires the old
// one: the frames before pos are still in use.
func (bf *blockFrames) newBlock(n int) {
	var nb []byte
	if k := len(bf.free); k > 0 && n <= bf.size {
		nb, bf.free = bf.free[k-1], bf.free[:k-1]
	} else {
		nb = make([]byte, 0, max(bf.size, n))
	}
	nb = append(nb, bf.blk[bf.pos:]...)
	if cap(bf.blk) > 0 {
		bf.retired = append(bf.retired, bf.blk[:0])
	}
	bf.blk, bf.pos = nb, 0
}

// fill reads once into the free end of the block. Like bufio, it tries
// again after a read of nothing and no error, up to 100 times.
func (bf *blockFrames) fill() {
	for range 100 {
		m, err := bf.r.Read(bf.blk[len(bf.blk):cap(bf.blk)])
		bf.blk = bf.blk[:len(bf.blk)+m]
		if err != nil {
			bf.err = err
			return
		}
		if m > 0 {
			return
		}
	}
	bf.err = io.ErrNoProgress
}

// takeRetired appends the blocks retired since its last call to dst.
func (bf *blockFrames) takeRetired(dst [][]byte) [][]byte {
	dst = append(dst, bf.retired...)
	clear(bf.retired)
	bf.retired = bf.retired[:0]
	return dst
}

// release gives back blocks from takeRetired that no payload in them is
// used any more; blocks of a large frame are left to the collector.
func (bf *blockFrames) release(blks [][]byte) {
	for _, b := range blks {
		if cap(b) == bf.size {
			bf.free = append(bf.free, b)
		}
	}
}
