package record

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"tandem.dev/tandem/internal/vault"
)

// Defaults for Options.
const (
	DefaultStreamCap     = 1 << 20
	DefaultFlushInterval = time.Second
	DefaultChunkSize     = 64 << 10
	maxChunkSize         = 512 << 10
)

// ErrClosed is returned by event methods after Close.
var ErrClosed = errors.New("recording closed")

// Options tune a Writer. Zero values take the defaults.
type Options struct {
	// Now is the clock for event time offsets (default time.Now). Offsets
	// are Now().Sub(Meta.Started), so a clock with a monotonic reading
	// gives monotonic offsets; they are never allowed to decrease.
	Now func() time.Time
	// StreamCap is how many bytes of each exec stream are stored (default
	// 1 MiB); beyond it only the count and SHA-256 are kept. Negative:
	// store no content.
	StreamCap int64
	// FlushInterval is how often buffered events are sealed and the file
	// synced (default 1s): the most a crash loses.
	FlushInterval time.Duration
	// Tick, if set, replaces the internal ticker (tests drive flushes).
	Tick <-chan time.Time
	// ChunkSize is the buffered plaintext that triggers a chunk (default
	// 64 KiB, at most 512 KiB).
	ChunkSize int
	// NoSync skips fsync (tests, benchmarks). Chunks are still written at
	// once, so only a machine crash, not a process crash, can lose them.
	NoSync bool
}

// Writer records one session. Its methods are safe for concurrent use
// (output and input arrive from different goroutines). Each event method
// returns the first error the Writer met, also one from a background flush;
// the caller should then end the session (fail closed). Failed is closed at
// that moment for callers that do not write often.
type Writer struct {
	opt     Options
	now     func() time.Time
	started time.Time
	ref     Ref
	name    string // where the recording is (Storage.Name)
	failed  chan struct{}
	stop    chan struct{}
	done    chan struct{}
	timer   *time.Timer // flushes every FlushInterval, unless Options.Tick drives flushes

	mu      sync.Mutex
	out     Appender
	aead    cipher.AEAD
	hdrHash [sha256.Size]byte
	seq     uint64
	buf     []byte // plaintext of the next chunk: flags byte + events
	frame   []byte // reused ciphertext frame
	ad      []byte
	evHash  hash.Hash
	file    hash.Hash
	bytes   int64
	events  int64
	lastT   time.Duration
	dirty   bool // written since the last fsync
	mask    masker
	seal    sealState
	streams map[string]*streamState
	err     error
	closed  bool
	sum     Summary
}

// sealState is what the Writer needs to seal keystrokes typed at a
// secret prompt (sealed.go).
type sealState struct {
	vault   *Vault
	store   Storage
	meta    Meta          // tenant, session, kind, start: names the sidecar and its key
	w       *sealedWriter // created on the first sealed keystroke
	pending []pendingSeal // input of the current stretch, per person, in order of first keystroke
	open    bool          // the current stretch has sealed input
	sum     SealedSummary
}

type pendingSeal struct {
	person string
	data   []byte
}

type streamState struct {
	h         hash.Hash
	total     int64
	stored    int64
	truncated bool
}

// Create starts the recording of meta.SessionID in s (Local(data
// directory), or shared storage) and writes the header and the Meta event
// at once, so the recording is readable from the start. The data key is
// the vault's key for meta.Tenant and the UTC day of meta.Started; shared
// storage also gets a copy of it (wrapped by the KEK), for the other
// gateways to read with. An existing recording of the same session is
// never overwritten.
func Create(v *Vault, s Storage, meta Meta, opt Options) (*Writer, error) {
	if err := checkName("session id", meta.SessionID); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if err := checkName("tenant", meta.Tenant); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if !meta.Kind.valid() {
		return nil, fmt.Errorf("record: unknown kind %q", meta.Kind)
	}
	if meta.Started.IsZero() {
		return nil, errors.New("record: Meta.Started is not set")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.StreamCap == 0 {
		opt.StreamCap = DefaultStreamCap
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = DefaultFlushInterval
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = DefaultChunkSize
	}
	opt.ChunkSize = min(opt.ChunkSize, maxChunkSize)
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if len(metaJSON) > maxMeta {
		return nil, fmt.Errorf("record: session metadata is %d bytes, more than %d", len(metaJSON), maxMeta)
	}
	keyID, key, err := dataKey(v, meta.Tenant, meta.Started)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	ref := Ref{Tenant: meta.Tenant, Day: Day(meta.Started), Session: meta.SessionID}
	if err := shareKey(v, s, vault.Content, ref, keyID); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	out, err := s.Create(ref)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("record: a recording of session %s already exists", meta.SessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	hdr, err := json.Marshal(Header{Format: formatName, Version: formatVersion, Session: meta.SessionID,
		Tenant: meta.Tenant, Day: Day(meta.Started), Key: keyID, Kind: meta.Kind, AEAD: aeadName})
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("record: %w", err)
	}
	hdr = append(hdr, '\n')
	w := &Writer{
		opt: opt, now: opt.Now, started: meta.Started, ref: ref, name: s.Name(ref),
		failed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		out: out, aead: aead, hdrHash: sha256.Sum256(hdr),
		buf:    make([]byte, 1, idleBufSize),
		evHash: sha256.New(), file: sha256.New(),
		streams: map[string]*streamState{},
		seal:    sealState{vault: v, store: s, meta: Meta{SessionID: meta.SessionID, Tenant: meta.Tenant, Kind: meta.Kind, Started: meta.Started}},
	}
	if _, err := out.Write(hdr); err != nil {
		w.abort()
		return nil, fmt.Errorf("record: write header: %w", err)
	}
	w.file.Write(hdr)
	w.mu.Lock()
	b := appendEventHead(w.buf, EvMeta, 0)
	w.commitLocked(appendBytes(b, metaJSON))
	err = w.flushLocked(false, true)
	w.mu.Unlock()
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("record: %w", err)
	}
	if w.opt.Tick != nil {
		go w.ticker()
	} else {
		// A timer instead of a goroutine with a ticker: an idle recording
		// then costs no stack (a gateway holds thousands).
		// Assigned under the lock timedFlush takes before it resets it.
		w.mu.Lock()
		w.timer = time.AfterFunc(w.opt.FlushInterval, w.timedFlush)
		w.mu.Unlock()
	}
	return w, nil
}

// abort closes the recording after a failed Create; the partial
// recording stays as evidence that one was attempted.
func (w *Writer) abort() { w.out.Close() }

// Path returns where the recording is: its file name in the data
// directory, or its name in shared storage (Storage.Name).
func (w *Writer) Path() string { return w.name }

// Ref returns the recording's reference in its storage.
func (w *Writer) Ref() Ref { return w.ref }

// SealedPath returns the file of the session's sealed keystrokes, or ""
// while nothing was sealed.
func (w *Writer) SealedPath() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seal.w == nil {
		return ""
	}
	return w.seal.w.name
}

// Failed is closed when the Writer fails; Err then says why.
func (w *Writer) Failed() <-chan struct{} { return w.failed }

// Err returns the first error the Writer met, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// timedFlush seals and syncs what arrived in the last interval, then
// schedules itself again until the writer is closed.
func (w *Writer) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.err == nil {
		if err := w.flushLocked(false, true); err != nil {
			w.failLocked(err)
		}
	}
	w.timer.Reset(w.opt.FlushInterval)
}

// ticker flushes on the test-injected Options.Tick.
func (w *Writer) ticker() {
	defer close(w.done)
	tick := w.opt.Tick
	for {
		select {
		case <-w.stop:
			return
		case <-tick:
			w.mu.Lock()
			if !w.closed && w.err == nil {
				if err := w.flushLocked(false, true); err != nil {
					w.failLocked(err)
				}
			}
			w.mu.Unlock()
		}
	}
}

// Flush seals buffered events into a chunk and syncs the file now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if err := w.flushLocked(false, true); err != nil {
		return w.failLocked(err)
	}
	return nil
}

func (w *Writer) usableLocked() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}

func (w *Writer) failLocked(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("record: session %s: %w", w.ref.Session+fileExt, err)
		close(w.failed)
	}
	return w.err
}

// offsetLocked is the time offset of an event happening now.
func (w *Writer) offsetLocked() time.Duration {
	t := w.now().Sub(w.started)
	if t < w.lastT {
		t = w.lastT
	}
	w.lastT = t
	return t
}

// commitLocked takes the event appended to w.buf after its old length into
// the canonical stream.
func (w *Writer) commitLocked(b []byte) {
	ev := b[len(w.buf):]
	w.evHash.Write(ev)
	w.bytes += int64(len(ev))
	w.events++
	w.buf = b
}

// afterEventLocked seals a chunk when the buffer is full. The chunk is
// written but not synced: syncing is the ticker's job, so a burst of
// output costs one fsync per second, not one per chunk.
func (w *Writer) afterEventLocked() error {
	if len(w.buf) >= w.opt.ChunkSize {
		if err := w.flushLocked(false, false); err != nil {
			return w.failLocked(err)
		}
	}
	return nil
}

// idleBufSize is the chunk buffer a quiet recording starts with; it grows
// to a full chunk while events arrive.
const idleBufSize = 2 << 10

// flushLocked seals the buffered events into one chunk and writes it.
// A non-final flush with nothing buffered only syncs (if asked and needed).
func (w *Writer) flushLocked(final, sync bool) error {
	if len(w.buf) > 1 || final {
		full := len(w.buf) >= w.opt.ChunkSize
		w.buf[0] = 0
		if final {
			w.buf[0] = flagFinal
		}
		fr := append(w.frame[:0], 0, 0, 0, 0)
		fr = append(fr, make([]byte, nonceSize)...)
		nonce := fr[frameLenLen : frameLenLen+nonceSize]
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("random nonce: %w", err)
		}
		w.ad = chunkAD(w.ad, &w.hdrHash, w.seq)
		fr = w.aead.Seal(fr, nonce, w.buf, w.ad)
		binary.BigEndian.PutUint32(fr[:frameLenLen], uint32(len(fr)-frameLenLen))
		w.frame = fr
		if _, err := w.out.Write(fr); err != nil {
			return fmt.Errorf("write chunk %d: %w", w.seq, err)
		}
		w.file.Write(fr)
		w.seq++
		w.buf = w.buf[:1]
		if !full && cap(w.buf) > idleBufSize {
			// A timed flush of a quiet session: give the chunk-sized
			// buffers back, so that a thousand idle sessions do not each
			// hold 128 KiB. Busy sessions flush full chunks and keep them.
			w.buf, w.frame = make([]byte, 1, idleBufSize), nil
		}
		w.dirty = true
	}
	if sync && w.seal.w != nil {
		if err := w.seal.w.sync(); err != nil {
			return err
		}
	}
	if sync && w.dirty && !w.opt.NoSync {
		if err := w.out.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		w.dirty = false
	}
	return nil
}

// pieces appends events of kind t carrying p in slices of at most maxPiece
// bytes; head writes the fields before the payload.
func (w *Writer) piecesLocked(t EventType, head func([]byte) []byte, p []byte) error {
	d := w.offsetLocked()
	for len(p) > 0 {
		n := min(len(p), maxPiece)
		b := appendEventHead(w.buf, t, d)
		if head != nil {
			b = head(b)
		}
		w.commitLocked(appendBytes(b, p[:n]))
		p = p[n:]
		if err := w.afterEventLocked(); err != nil {
			return err
		}
	}
	return nil
}

// Output records terminal output from the target.
func (w *Writer) Output(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	if err := w.piecesLocked(EvOutput, nil, p); err != nil {
		return err
	}
	w.mask.output(p)
	return nil
}

// Input records input forwarded to the target, typed by person. Input that
// answers a secret prompt (IsSecretPrompt), up to the next Enter, Ctrl-C
// or Ctrl-D, is sealed instead (sealed.go): the recording gets an EvSealed
// event per person saying how many keystrokes were sealed, when the
// answer ends.
func (w *Writer) Input(person string, p []byte) error {
	if err := checkName("person", person); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	hidden, ended := w.mask.input(p)
	if hidden > 0 {
		if err := w.holdLocked(person, p[:hidden]); err != nil {
			return err
		}
	}
	if ended {
		if err := w.endStretchLocked(); err != nil {
			return err
		}
	}
	return w.piecesLocked(EvInput, func(b []byte) []byte { return appendString(b, person) }, p[hidden:])
}

// holdLocked keeps person's input to a secret prompt until the answer
// ends; a piece of maxPiece bytes is sealed at once, so memory stays
// bounded however long the "answer" is.
func (w *Writer) holdLocked(person string, p []byte) error {
	if !w.seal.open {
		w.seal.open = true
		w.seal.sum.Prompts++
	}
	i := 0
	for i < len(w.seal.pending) && w.seal.pending[i].person != person {
		i++
	}
	if i == len(w.seal.pending) {
		w.seal.pending = append(w.seal.pending, pendingSeal{person: person})
	}
	for len(p) > 0 {
		ps := &w.seal.pending[i]
		n := min(len(p), maxPiece-len(ps.data))
		ps.data = append(ps.data, p[:n]...)
		p = p[n:]
		if len(ps.data) >= maxPiece {
			if err := w.sealLocked(ps); err != nil {
				return err
			}
		}
	}
	return nil
}

// endStretchLocked seals what everyone typed at the prompt.
func (w *Writer) endStretchLocked() error {
	for i := range w.seal.pending {
		if err := w.sealLocked(&w.seal.pending[i]); err != nil {
			return err
		}
	}
	w.seal.pending = w.seal.pending[:0]
	w.seal.open = false
	return nil
}

// sealLocked writes ps's input to the sidecar, under the sealed key, and
// records where and how much in an EvSealed event.
func (w *Writer) sealLocked(ps *pendingSeal) error {
	if len(ps.data) == 0 {
		return nil
	}
	if w.seal.w == nil {
		sw, err := createSealed(w.seal.vault, w.seal.store, &w.seal.meta, w.opt.NoSync)
		if err != nil {
			// Fail closed: the secret is neither stored in the clear
			// nor dropped unnoticed.
			return w.failLocked(fmt.Errorf("seal keystrokes: %w", err))
		}
		w.seal.w = sw
	}
	d := w.offsetLocked()
	seq, err := w.seal.w.seal(ps.person, d, ps.data, false)
	if err != nil {
		return w.failLocked(err)
	}
	keys, n := keystrokes(ps.data), int64(len(ps.data))
	clear(ps.data)
	ps.data = ps.data[:0]
	w.seal.sum.Keystrokes += keys
	w.seal.sum.Bytes += n
	b := appendEventHead(w.buf, EvSealed, d)
	b = appendString(b, ps.person)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(w.seal.sum.Prompts))
	b = binary.AppendUvarint(b, uint64(keys))
	w.commitLocked(binary.AppendUvarint(b, uint64(n)))
	return w.afterEventLocked()
}

// Resize records a new window size.
func (w *Writer) Resize(cols, rows int) error {
	if cols < 0 || rows < 0 || cols > 1<<16 || rows > 1<<16 {
		return fmt.Errorf("record: window size %dx%d out of range", cols, rows)
	}
	return w.event(EvResize, func(b []byte) []byte {
		return binary.AppendUvarint(binary.AppendUvarint(b, uint64(cols)), uint64(rows))
	})
}

// event appends one small event of type t whose fields body writes after
// the event head, and seals a chunk when the buffer is full.
func (w *Writer) event(t EventType, body func([]byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	w.commitLocked(body(appendEventHead(w.buf, t, w.offsetLocked())))
	return w.afterEventLocked()
}

// Marker records a note on the time line: "alice joined as peer",
// "paused: owner left", …
func (w *Writer) Marker(text string) error {
	if len(text) > maxMarker {
		return fmt.Errorf("record: marker of %d bytes, more than %d", len(text), maxMarker)
	}
	return w.event(EvMarker, func(b []byte) []byte { return appendString(b, text) })
}

// Stream records bytes of an exec stream ("stdin", "stdout", "stderr").
// All bytes are counted and hashed; content is stored up to
// Options.StreamCap per stream.
func (w *Writer) Stream(name string, p []byte) error {
	if err := checkName("stream name", name); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	s := w.streams[name]
	if s == nil {
		if len(w.streams) >= maxStreams {
			return fmt.Errorf("record: more than %d streams", maxStreams)
		}
		s = &streamState{h: sha256.New()}
		w.streams[name] = s
	}
	s.h.Write(p)
	s.total += int64(len(p))
	room := max(w.opt.StreamCap-s.stored, 0)
	keep := p
	if int64(len(keep)) > room {
		keep = keep[:room]
		s.truncated = true
	}
	s.stored += int64(len(keep))
	return w.piecesLocked(EvStream, func(b []byte) []byte { return appendString(b, name) }, keep)
}

// Exit records how an exec command ended: its status, or the signal that
// killed it (then status is -1 by convention).
func (w *Writer) Exit(status int, signal string) error {
	if len(signal) > maxName || status < -1<<31 || status > 1<<31-1 {
		return errors.New("record: bad exit status or signal")
	}
	return w.event(EvExit, func(b []byte) []byte {
		return appendString(binary.AppendVarint(b, int64(status)), signal)
	})
}

// Op records one sftp operation (operation, path, size, hash, …).
func (w *Writer) Op(op map[string]string) error {
	raw, err := json.Marshal(op) // map keys are sorted: canonical
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if len(raw) > maxOp {
		return fmt.Errorf("record: sftp operation of %d bytes, more than %d", len(raw), maxOp)
	}
	return w.event(EvOp, func(b []byte) []byte { return appendBytes(b, raw) })
}

// Close writes the stream totals and the final chunk, syncs and closes the
// file, and returns the Summary for the audit log. Calling it again returns
// the same result.
func (w *Writer) Close() (Summary, error) {
	w.mu.Lock()
	if w.closed {
		defer w.mu.Unlock()
		return w.sum, w.err
	}
	w.closed = true
	close(w.stop)
	if w.timer != nil {
		w.timer.Stop() // a flush already running sees closed and stops
		close(w.done)
	}
	if w.err == nil {
		// An answer still being typed when the session ends is sealed too.
		_ = w.endStretchLocked()
	}
	if w.err == nil && w.seal.w != nil {
		sum, err := w.seal.w.close()
		if err != nil {
			w.failLocked(fmt.Errorf("close sealed keystrokes: %w", err))
		}
		w.seal.sum.FileSHA256 = sum
	}
	if w.err == nil {
		names := make([]string, 0, len(w.streams))
		for n := range w.streams {
			names = append(names, n)
		}
		sort.Strings(names)
		d := w.offsetLocked()
		streams := map[string]StreamSummary{}
		for _, n := range names {
			s := w.streams[n]
			sum := s.h.Sum(nil)
			b := appendEventHead(w.buf, EvStreamEnd, d)
			b = appendString(b, n)
			b = binary.AppendUvarint(b, uint64(s.total))
			b = append(b, sum...)
			b = binary.AppendUvarint(b, uint64(s.stored))
			tr := byte(0)
			if s.truncated {
				tr = 1
			}
			w.commitLocked(append(b, tr))
			streams[n] = StreamSummary{Bytes: s.total, SHA256: hex.EncodeToString(sum), StoredBytes: s.stored, Truncated: s.truncated}
			if err := w.afterEventLocked(); err != nil {
				break
			}
		}
		if w.err == nil && w.seal.sum.Prompts > 0 {
			// The totals go into the final chunk (no flush before it), where
			// listings find them without reading the whole recording.
			s := &w.seal.sum
			s.flag()
			fh, _ := hex.DecodeString(s.FileSHA256)
			b := appendEventHead(w.buf, EvSealedEnd, d)
			b = binary.AppendUvarint(b, uint64(s.Prompts))
			b = binary.AppendUvarint(b, uint64(s.Keystrokes))
			b = binary.AppendUvarint(b, uint64(s.Bytes))
			fl := byte(0)
			if s.Flagged {
				fl = 1
			}
			w.commitLocked(append(append(b, fl), fh...))
		}
		if w.err == nil {
			if err := w.flushLocked(true, true); err != nil {
				w.failLocked(err)
			}
		}
		w.sum = Summary{
			SHA256: hex.EncodeToString(w.evHash.Sum(nil)), FileSHA256: hex.EncodeToString(w.file.Sum(nil)),
			Bytes: w.bytes, Events: w.events, Chunks: int64(w.seq), Duration: w.lastT, Streams: streams,
			Sealed: w.seal.sum,
		}
	}
	if err := w.out.Close(); err != nil && w.err == nil {
		w.failLocked(fmt.Errorf("close: %w", err))
	}
	w.buf, w.frame = nil, nil
	err := w.err
	w.mu.Unlock()
	<-w.done
	return w.sum, err
}
