package record

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Errors of the Reader. They are wrapped with the chunk number and offset.
var (
	// ErrIncomplete: the final chunk is missing; the recording ends early
	// (the gateway crashed, or the file was truncated). Events before the
	// cut are still returned.
	ErrIncomplete = errors.New("recording incomplete: final chunk missing (crash or truncation)")
	// ErrTampered: a chunk failed authentication: changed, reordered,
	// moved from another recording, or read with the wrong data key.
	ErrTampered = errors.New("chunk authentication failed (recording altered, reordered or mixed with another)")
	// ErrCorrupt: the file does not follow the format.
	ErrCorrupt = errors.New("recording corrupt")
)

// Reader streams the events of one recording. It holds one chunk in
// memory at a time. It is not safe for concurrent use.
type Reader struct {
	c       io.Closer
	br      *bufio.Reader
	name    string
	hdr     Header
	meta    Meta
	aead    cipher.AEAD
	hdrHash [sha256.Size]byte
	ad      []byte
	seq     uint64
	off     int64 // file offset of the next chunk
	pending []byte
	final   bool
	err     error // sticky; io.EOF at the clean end

	evHash  hash.Hash
	file    hash.Hash
	bytes   int64
	events  int64
	lastT   time.Duration
	streams map[string]StreamSummary
	sealed  SealedSummary // EvSealedEnd, or what EvSealed events add up to
	sealEnd bool
}

// Open opens the recording file at path and decrypts its first chunk (the
// session metadata) with the data key from v.
func Open(v *Vault, path string) (*Reader, error) {
	obj, err := openFileObject(path)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return openObject(ring(v, nil), obj, path)
}

// OpenIn opens the recording ref in s, as Open does a file; a recording
// another gateway made is read with the copy of its key s keeps.
func OpenIn(v *Vault, s Storage, ref Ref) (*Reader, error) {
	ref.Sealed = false
	obj, err := s.Open(ref)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return openObject(ring(v, s), obj, s.Name(ref))
}

func openObject(k keyring, obj Object, name string) (*Reader, error) {
	r, err := newReader(k, io.NewSectionReader(obj, 0, obj.Size()), name)
	if err != nil {
		obj.Close()
		return nil, err
	}
	r.c = obj
	r.hdr.Path = name
	return r, nil
}

// NewReader reads a recording from src; name is used in errors.
func NewReader(v *Vault, src io.Reader, name string) (*Reader, error) {
	return newReader(ring(v, nil), src, name)
}

func newReader(k keyring, src io.Reader, name string) (*Reader, error) {
	r := &Reader{br: bufio.NewReaderSize(src, 64<<10), name: name, evHash: sha256.New(), file: sha256.New(), streams: map[string]StreamSummary{}}
	line, err := readHeaderLine(r.br)
	if err != nil {
		return nil, fmt.Errorf("record: %s: %w", name, err)
	}
	if err := json.Unmarshal(line, &r.hdr); err != nil {
		return nil, fmt.Errorf("record: %s: header: %v: %w", name, err, ErrCorrupt)
	}
	if err := r.hdr.validate(); err != nil {
		return nil, fmt.Errorf("record: %s: %v: %w", name, err, ErrCorrupt)
	}
	r.hdrHash = sha256.Sum256(line)
	r.file.Write(line)
	r.off = int64(len(line))
	key, err := k.data(r.hdr.Tenant, r.hdr.Day, r.hdr.Key)
	if err != nil {
		return nil, fmt.Errorf("record: %s: %w", name, err)
	}
	if r.aead, err = chacha20poly1305.NewX(key); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	ev, err := r.Next()
	if err == io.EOF || errors.Is(err, ErrIncomplete) {
		return nil, fmt.Errorf("record: %s: no session metadata: %w", name, ErrIncomplete)
	}
	if err != nil {
		return nil, err
	}
	if ev.Type != EvMeta {
		return nil, fmt.Errorf("record: %s: first event is not the session metadata: %w", name, ErrCorrupt)
	}
	if err := json.Unmarshal(ev.Data, &r.meta); err != nil {
		return nil, fmt.Errorf("record: %s: session metadata: %v: %w", name, err, ErrCorrupt)
	}
	if r.meta.SessionID != r.hdr.Session || r.meta.Tenant != r.hdr.Tenant || r.meta.Kind != r.hdr.Kind {
		return nil, fmt.Errorf("record: %s: metadata does not match the header: %w", name, ErrCorrupt)
	}
	return r, nil
}

// readHeaderLine returns the first line including its newline.
func readHeaderLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for len(line) <= maxHeaderLine {
		b, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("no header line: %w", ErrCorrupt)
			}
			return nil, err
		}
		line = append(line, b)
		if b == '\n' {
			return line, nil
		}
	}
	return nil, fmt.Errorf("header line too long: %w", ErrCorrupt)
}

// Header returns the plaintext header.
func (r *Reader) Header() Header { return r.hdr }

// Meta returns the session metadata.
func (r *Reader) Meta() Meta { return r.meta }

// Close closes the file if Open opened it.
func (r *Reader) Close() error {
	if r.c == nil {
		return nil
	}
	return r.c.Close()
}

// Next returns the next event; the Meta event is returned once, by Open.
// At the end it returns io.EOF, or ErrIncomplete if the final chunk is
// missing, or an error wrapping ErrTampered or ErrCorrupt. Errors are
// sticky. Event.Data stays valid after later calls.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	for len(r.pending) == 0 {
		if r.final {
			// Anything after the final chunk was appended later.
			if _, err := r.br.ReadByte(); err != io.EOF {
				return Event{}, r.fail(fmt.Errorf("record: %s: data after the final chunk at offset %d: %w", r.name, r.off, ErrCorrupt))
			}
			r.err = io.EOF
			return Event{}, io.EOF
		}
		if err := r.readChunk(); err != nil {
			return Event{}, r.fail(err)
		}
	}
	d := decoder{b: r.pending}
	ev, err := decodeEvent(&d)
	if err != nil {
		return Event{}, r.fail(fmt.Errorf("record: %s: chunk %d: event %d: %v: %w", r.name, r.seq-1, r.events, err, ErrCorrupt))
	}
	if ev.Type == EvMeta && r.events > 0 {
		return Event{}, r.fail(fmt.Errorf("record: %s: chunk %d: second metadata event: %w", r.name, r.seq-1, ErrCorrupt))
	}
	if ev.T < r.lastT {
		return Event{}, r.fail(fmt.Errorf("record: %s: chunk %d: time goes backwards: %w", r.name, r.seq-1, ErrCorrupt))
	}
	used := len(r.pending) - len(d.b)
	r.evHash.Write(r.pending[:used])
	r.bytes += int64(used)
	r.events++
	r.lastT = ev.T
	r.pending = d.b
	switch ev.Type {
	case EvStreamEnd:
		r.streams[ev.Name] = ev.Stream
	case EvSealed:
		if !r.sealEnd {
			r.sealed.Prompts = max(r.sealed.Prompts, ev.SealedPrompt)
			r.sealed.Keystrokes += ev.Sealed.Keystrokes
			r.sealed.Bytes += ev.Sealed.Bytes
			r.sealed.flag()
		}
	case EvSealedEnd:
		r.sealed, r.sealEnd = ev.Sealed, true
	}
	return ev, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// readChunk reads, authenticates and decrypts the next chunk into pending.
func (r *Reader) readChunk() error {
	var lenBuf [frameLenLen]byte
	n, err := io.ReadFull(r.br, lenBuf[:])
	if err == io.EOF {
		return fmt.Errorf("record: %s: %w: file ends after chunk %d", r.name, ErrIncomplete, int64(r.seq)-1)
	}
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("record: %s: %w: file cut inside chunk %d (%d of 4 length bytes)", r.name, ErrIncomplete, r.seq, n)
	}
	if err != nil {
		return fmt.Errorf("record: %s: %w", r.name, err)
	}
	size := binary.BigEndian.Uint32(lenBuf[:])
	if size < minChunkBody || size > maxChunkBody {
		return fmt.Errorf("record: %s: chunk %d at offset %d: length %d out of range: %w", r.name, r.seq, r.off, size, ErrCorrupt)
	}
	// A fresh buffer per chunk: events returned earlier keep their data.
	body := make([]byte, size)
	if n, err := io.ReadFull(r.br, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("record: %s: %w: file cut inside chunk %d (%d of %d bytes)", r.name, ErrIncomplete, r.seq, n, size)
		}
		return fmt.Errorf("record: %s: %w", r.name, err)
	}
	// Hash before decrypting: Open works in place.
	r.file.Write(lenBuf[:])
	r.file.Write(body)
	r.ad = chunkAD(r.ad, &r.hdrHash, r.seq)
	pt, err := r.aead.Open(body[nonceSize:nonceSize], body[:nonceSize], body[nonceSize:], r.ad)
	if err != nil {
		return fmt.Errorf("record: %s: chunk %d at offset %d: %w", r.name, r.seq, r.off, ErrTampered)
	}
	if len(pt) < 1 || pt[0]&^flagFinal != 0 {
		return fmt.Errorf("record: %s: chunk %d: bad flags: %w", r.name, r.seq, ErrCorrupt)
	}
	r.off += int64(frameLenLen) + int64(size)
	r.seq++
	r.final = pt[0]&flagFinal != 0
	r.pending = pt[1:]
	return nil
}

// Verify reads the rest of the recording and returns its Summary,
// recomputed from the file: compare SHA256 (or FileSHA256) with the value
// logged at session.end. Events already returned by Next count too. The
// error is that of Next (ErrIncomplete, ErrTampered …); the Summary then
// covers what was readable.
func (r *Reader) Verify() (Summary, error) {
	var err error
	for {
		if _, err = r.Next(); err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	streams := make(map[string]StreamSummary, len(r.streams))
	for k, v := range r.streams {
		streams[k] = v
	}
	return Summary{
		SHA256: hex.EncodeToString(r.evHash.Sum(nil)), FileSHA256: hex.EncodeToString(r.file.Sum(nil)),
		Bytes: r.bytes, Events: r.events, Chunks: int64(r.seq), Duration: r.lastT, Streams: streams,
		Sealed: r.sealedSummary(),
	}, err
}

// sealedSummary is the sealed-input summary as far as read: the totals
// Close wrote, or (in a recording cut short) what the EvSealed events read
// so far add up to, without the sidecar's hash.
func (r *Reader) sealedSummary() SealedSummary { return r.sealed }

// ReadHeader reads only the plaintext header of the recording at path.
func ReadHeader(path string) (Header, error) {
	obj, err := openFileObject(path)
	if err != nil {
		return Header{}, fmt.Errorf("record: %w", err)
	}
	defer obj.Close()
	return readHeader(obj, path)
}

func readHeader(obj Object, path string) (Header, error) {
	line, err := readHeaderLine(bufio.NewReaderSize(io.NewSectionReader(obj, 0, obj.Size()), maxHeaderLine+1))
	if err != nil {
		return Header{}, fmt.Errorf("record: %s: %w", path, err)
	}
	var h Header
	if err := json.Unmarshal(bytes.TrimSpace(line), &h); err != nil {
		return Header{}, fmt.Errorf("record: %s: header: %v: %w", path, err, ErrCorrupt)
	}
	if err := h.validate(); err != nil {
		return Header{}, fmt.Errorf("record: %s: %v: %w", path, err, ErrCorrupt)
	}
	h.Path = path
	return h, nil
}
