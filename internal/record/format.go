package record

import (
	"tandem.dev/tandem/internal/vault"

	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Kind says what a recording holds.
type Kind string

// Recording kinds.
const (
	KindPTY  Kind = "pty"  // interactive terminal session
	KindExec Kind = "exec" // one command with stdin/stdout/stderr
	KindSFTP Kind = "sftp" // file transfer operations
	// KindForward is one port forward: stream "stdin" is what the client
	// sent to the destination, "stdout" what came back.
	KindForward Kind = "forward"
)

func (k Kind) valid() bool {
	return k == KindPTY || k == KindExec || k == KindSFTP || k == KindForward
}

// Format constants.
const (
	formatName    = "tandem-recording"
	formatVersion = 1
	aeadName      = "XChaCha20-Poly1305"
	fileExt       = ".rec"
	recordingsDir = "recordings"

	// maxHeaderLine bounds the plaintext header line a reader accepts.
	maxHeaderLine = 1024
	// maxChunkBody bounds one chunk as stored (nonce + ciphertext + tag),
	// so a corrupt length field cannot make a reader allocate gigabytes.
	maxChunkBody = 1 << 20
	// maxPiece is the most payload one event carries; longer writes are
	// split into several events (output is a byte stream, so nothing is lost).
	maxPiece = 16 << 10
	// Bounds for single fields.
	maxName     = 128
	maxMarker   = 4 << 10
	maxOp       = 64 << 10
	maxMeta     = 256 << 10
	maxStreams  = 8
	flagFinal   = 1
	chunkADName = "tandem-rec-chunk-v1"
	nonceSize   = 24 // chacha20poly1305.NonceSizeX
	tagSize     = 16
	frameLenLen = 4
	// minChunkBody is a nonce, a tag and the flags byte.
	minChunkBody = nonceSize + tagSize + 1
)

// Header is the plaintext first line of a recording file. It carries no
// personal data: only what is needed to find the data key and to list
// recordings without decrypting them.
type Header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Session string `json:"session"`
	Tenant  string `json:"tenant"`
	Day     string `json:"day"` // YYYY-MM-DD, UTC
	Key     string `json:"key"` // data key id
	Kind    Kind   `json:"kind"`
	AEAD    string `json:"aead"`

	// Path is where the file was found (List, Open); not stored.
	Path string `json:"-"`
}

func (h *Header) validate() error {
	switch {
	case h.Format != formatName:
		return fmt.Errorf("not a tandem recording (format %q)", h.Format)
	case h.Version != formatVersion:
		return fmt.Errorf("unsupported recording version %d", h.Version)
	case h.AEAD != aeadName:
		return fmt.Errorf("unsupported cipher %q", h.AEAD)
	case !h.Kind.valid():
		return fmt.Errorf("unknown recording kind %q", h.Kind)
	}
	if err := checkName("session id", h.Session); err != nil {
		return err
	}
	if err := checkName("tenant", h.Tenant); err != nil {
		return err
	}
	if err := checkName("key id", h.Key); err != nil {
		return err
	}
	if _, err := vault.ParseDay(h.Day); err != nil {
		return fmt.Errorf("bad day %q in header", h.Day)
	}
	return nil
}

// Meta describes a recorded session. It is stored encrypted as the first
// event of the recording, never in the plaintext header.
type Meta struct {
	SessionID string    `json:"session"`
	Tenant    string    `json:"tenant"`
	Kind      Kind      `json:"kind"`
	Started   time.Time `json:"started"`
	Host      string    `json:"host,omitempty"`
	Login     string    `json:"login,omitempty"`
	Owner     string    `json:"owner,omitempty"`
	Term      string    `json:"term,omitempty"`
	Cols      int       `json:"cols,omitempty"`
	Rows      int       `json:"rows,omitempty"`
	Command   string    `json:"command,omitempty"` // exec: the command line
	Env       []string  `json:"env,omitempty"`     // exec: names only, never values
}

// EventType is the one-byte code of an event in the stored stream.
type EventType byte

// Event types. The codes are part of the file format.
const (
	EvMeta      EventType = 'M' // first event only; returned by Reader.Meta
	EvOutput    EventType = 'o' // Data: terminal output
	EvInput     EventType = 'i' // Person, Data: input forwarded to the target
	EvHidden    EventType = 'h' // Person: input hidden after a password prompt (older recordings)
	EvSealed    EventType = 'k' // Person, SealedSeq, SealedPrompt, Sealed.Keystrokes, Sealed.Bytes: input sealed at a secret prompt
	EvSealedEnd EventType = 'K' // Sealed: totals of the sealed input, written by Close
	EvResize    EventType = 'r' // Cols, Rows
	EvMarker    EventType = 'm' // Text: joins, leaves, pauses …
	EvStream    EventType = 's' // Name, Data: exec stream content (up to the cap)
	EvStreamEnd EventType = 'S' // Name, Stream: totals of an exec stream
	EvExit      EventType = 'x' // Status, Signal
	EvOp        EventType = 'p' // Op: one sftp operation
)

// Event is one decoded event.
type Event struct {
	Type   EventType
	T      time.Duration // since Meta.Started, never decreasing
	Person string        // EvInput, EvHidden, EvSealed
	Name   string        // EvStream, EvStreamEnd: stdin, stdout, stderr
	Data   []byte        // EvOutput, EvInput, EvStream
	Text   string        // EvMarker
	Cols   int           // EvResize
	Rows   int           // EvResize
	Status int           // EvExit
	Signal string        // EvExit
	Op     map[string]string
	Stream StreamSummary // EvStreamEnd
	// Sealed: EvSealed (Keystrokes and Bytes of this piece) and
	// EvSealedEnd (the totals).
	Sealed SealedSummary
	// SealedSeq is the chunk of the sealed-keystrokes file that holds the
	// input of an EvSealed event; SealedPrompt counts the secret prompts
	// of the session, from 1, so pieces of one answer share it.
	SealedSeq    uint64
	SealedPrompt int64
}

// StreamSummary describes one exec stream in full, also the part beyond
// the stored cap.
type StreamSummary struct {
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"` // hex, over all bytes of the stream
	StoredBytes int64  `json:"stored_bytes"`
	Truncated   bool   `json:"truncated"`
}

// Summary describes a whole recording. The Writer returns it from Close;
// Reader.Verify recomputes it from the file.
type Summary struct {
	SHA256     string // hex SHA-256 of the canonical plaintext event stream
	FileSHA256 string // hex SHA-256 of the encrypted file as written
	Bytes      int64  // length of the canonical event stream
	Events     int64  // number of events, the Meta event included
	Chunks     int64
	Duration   time.Duration // time offset of the last event
	Streams    map[string]StreamSummary
	Sealed     SealedSummary // input sealed at secret prompts
}

// Day returns the UTC day a time falls on, as used in paths and headers.
func Day(t time.Time) string { return vault.Day(t) }

// Path returns where the recording of session for tenant, started on day,
// lives under the data directory dir.
func Path(dir, tenant string, day time.Time, session string) string {
	return filepath.Join(dir, recordingsDir, tenant, Day(day), session+fileExt)
}

// checkName accepts identifiers that are safe as one path element (the
// vault's rule, which tenant names in key paths follow too).
func checkName(what, s string) error { return vault.CheckName(what, s) }

// chunkAD is the additional data of chunk seq in the file whose header
// line hashes to hdr.
func chunkAD(dst []byte, hdr *[sha256.Size]byte, seq uint64) []byte {
	dst = append(dst[:0], chunkADName...)
	dst = append(dst, hdr[:]...)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// Event encoding helpers. appendX write fields; the decoder mirrors them.

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEventHead(b []byte, t EventType, d time.Duration) []byte {
	b = append(b, byte(t))
	return binary.AppendUvarint(b, uint64(d/time.Microsecond))
}

var errShort = errors.New("event truncated")

// decoder reads fields from one chunk's plaintext.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.err = fmt.Errorf("field of %d bytes exceeds %d", n, limit)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) byte1() byte {
	p := d.fixed(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// maxOffset bounds a time offset (about 290 years in microseconds fits an
// int64 Duration; anything beyond is corrupt).
const maxOffset = uint64(1<<63-1) / uint64(time.Microsecond)

// decodeEvent reads one event from d. It returns the event; its encoded
// length is what d consumed.
func decodeEvent(d *decoder) (Event, error) {
	var ev Event
	ev.Type = EventType(d.byte1())
	us := d.uvarint()
	if d.err != nil {
		return ev, d.err
	}
	if us > maxOffset {
		return ev, fmt.Errorf("time offset out of range")
	}
	ev.T = time.Duration(us) * time.Microsecond
	switch ev.Type {
	case EvMeta:
		ev.Data = d.bytes(maxMeta)
	case EvOutput:
		ev.Data = d.bytes(maxPiece)
	case EvInput:
		ev.Person = string(d.bytes(maxName))
		ev.Data = d.bytes(maxPiece)
	case EvHidden:
		ev.Person = string(d.bytes(maxName))
	case EvSealed:
		ev.Person = string(d.bytes(maxName))
		ev.SealedSeq = d.uvarint()
		prompt, keys, n := d.uvarint(), d.uvarint(), d.uvarint()
		if d.err == nil && (prompt == 0 || prompt > 1<<40 || n > maxPiece || keys > n || ev.SealedSeq > 1<<40) {
			return ev, fmt.Errorf("bad sealed-input event")
		}
		ev.SealedPrompt = int64(prompt)
		ev.Sealed = SealedSummary{Keystrokes: int64(keys), Bytes: int64(n)}
	case EvSealedEnd:
		prompts, keys, n := d.uvarint(), d.uvarint(), d.uvarint()
		flagged := d.byte1()
		sum := d.fixed(sha256.Size)
		if d.err == nil && (prompts > 1<<40 || n > 1<<62 || keys > n || flagged > 1) {
			return ev, fmt.Errorf("bad sealed-input summary")
		}
		ev.Sealed = SealedSummary{Prompts: int64(prompts), Keystrokes: int64(keys), Bytes: int64(n), Flagged: flagged == 1,
			FileSHA256: fmt.Sprintf("%x", sum)}
	case EvResize:
		c, r := d.uvarint(), d.uvarint()
		if c > 1<<16 || r > 1<<16 {
			return ev, fmt.Errorf("window size %dx%d out of range", c, r)
		}
		ev.Cols, ev.Rows = int(c), int(r)
	case EvMarker:
		ev.Text = string(d.bytes(maxMarker))
	case EvStream:
		ev.Name = string(d.bytes(maxName))
		ev.Data = d.bytes(maxPiece)
	case EvStreamEnd:
		ev.Name = string(d.bytes(maxName))
		total := d.uvarint()
		sum := d.fixed(sha256.Size)
		stored := d.uvarint()
		trunc := d.byte1()
		if d.err == nil && (total > 1<<62 || stored > total || trunc > 1) {
			return ev, fmt.Errorf("bad stream summary")
		}
		ev.Stream = StreamSummary{Bytes: int64(total), SHA256: fmt.Sprintf("%x", sum), StoredBytes: int64(stored), Truncated: trunc == 1}
	case EvExit:
		st := d.varint()
		if st < -1<<31 || st > 1<<31-1 {
			return ev, fmt.Errorf("exit status out of range")
		}
		ev.Status = int(st)
		ev.Signal = string(d.bytes(maxName))
	case EvOp:
		raw := d.bytes(maxOp)
		if d.err == nil {
			if err := json.Unmarshal(raw, &ev.Op); err != nil {
				return ev, fmt.Errorf("sftp operation: %w", err)
			}
		}
	default:
		return ev, fmt.Errorf("unknown event type 0x%02x", byte(ev.Type))
	}
	return ev, d.err
}
