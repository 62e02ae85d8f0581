package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ErrClosed is returned by Append and Checkpoint after Close.
var ErrClosed = errors.New("audit: log closed")

// ErrDamaged marks an Open refused because the log's files contradict
// each other, the signing key or the witness in ways a crash cannot
// explain. The way back is Recover (tandem audit recover), never editing
// the files by hand.
var ErrDamaged = errors.New("the audit log is damaged")

// Options configure a Log.
type Options struct {
	// Dir is the log directory; created with mode 0700.
	Dir string
	// Key signs the checkpoints. It must be kept outside Dir: whoever can
	// rewrite Dir must not be able to re-sign it. Required.
	Key *SigningKey
	// Origin is the first line of every checkpoint of the first segment;
	// later segments (after Recover) add "/segment/N". Default
	// "tandem/audit".
	Origin string
	// CheckpointEvery is the longest time new events stay without a
	// checkpoint. Default 10s.
	CheckpointEvery time.Duration
	// CheckpointEvents forces a checkpoint after this many events. Default 1000.
	CheckpointEvents int
	// WitnessFile, if set, receives a copy of every checkpoint. It should
	// live outside Dir (another disk, another owner), so that whoever can
	// rewrite Dir cannot also rewrite the checkpoints others already saw.
	WitnessFile string
	// Now is the clock for event times; it is called from several
	// goroutines. Default time.Now.
	Now func() time.Time
	// Keys hands out the data keys that encrypt each record's parts (the
	// vault in data_dir). Required: without keys the log refuses to open
	// rather than write plaintext.
	Keys Keys

	// Test hooks.
	wrapFile func(name string, f syncFile) syncFile // wraps every file the writer appends to
	tick     <-chan time.Time                       // replaces the CheckpointEvery ticker

	newSegment bool // Recover opens the empty segment it starts
}

// syncFile is what the writer needs of a file; tests inject failures here.
type syncFile interface {
	Write(p []byte) (int, error)
	Sync() error
}

// maxBatch bounds how many events share one group commit.
const maxBatch = 4096

var hasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

type request struct {
	p    preEncoded
	done chan error // buffered: the writer never blocks on an acknowledgement
}

// Log is the tamper-evident audit log. It is safe for concurrent use.
//
// One writer goroutine owns the files. Appenders hand it their events and
// wait; it writes whatever has queued up (waiting a little for appenders
// still encrypting, see gather), fsyncs once and acknowledges the whole
// batch (group commit), so many concurrent appenders share the cost of
// each fsync while every Append still returns only once its event is
// durable.
type Log struct {
	opts   Options
	signer note.Signer
	origin string // the checkpoint origin of this segment

	files            []*os.File
	recW, leafW, cpW syncFile
	witW             syncFile // nil without a witness file
	reqs             chan *request
	encSlots         chan struct{} // bounds appenders encrypting at once
	cpReq            chan cpCall
	mu               sync.RWMutex // guards closed against sends on reqs
	closed           bool
	size             atomic.Uint64
	active           atomic.Int64  // Append calls in progress
	commits          atomic.Uint64 // group commits written (the benchmark's events per commit)
	failed           chan struct{}
	failErr          atomic.Pointer[error]
	done             chan struct{}
	closeErr         error
	ticker           *time.Ticker

	// Owned by the writer goroutine.
	rng        *compact.Range
	lastCP     []byte
	lastCPSize uint64
	quietSize  uint64 // size right after our own log.checkpoint event
	err        error
	recBuf     []byte
	leafBuf    []byte
	leafForm   []byte // the leaf prefix, then a record's leaf form
	// slab holds the tree's hashes: per event the writer's leaf and node
	// hashes were five allocations, on the path every appender waits on.
	slab      hashSlab
	batch     []*request
	lastWrite time.Duration // how long the last batch took to write and sync
	poll      *time.Timer
}

// cpCall asks the writer for a checkpoint, or for a key hand-over when
// next is set.
type cpCall struct {
	reply chan cpResult
	next  *SigningKey
}

type cpResult struct {
	note []byte
	err  error
}

// Open opens or creates the log in opts.Dir. If the last record was cut short by a crash, Open cuts it
// off and appends a log.recovered event that says how many bytes went.
// Open refuses a log whose files contradict each other in ways a crash
// cannot explain (ErrDamaged); run Verify to find out what happened and
// Recover to go on.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit: no log directory")
	}
	if opts.Key == nil {
		return nil, errors.New("audit: no signing key")
	}
	if opts.Keys == nil {
		return nil, errors.New("audit: no data keys (vault) configured; refusing to write plaintext records")
	}
	if opts.Origin == "" {
		opts.Origin = "tandem/audit"
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 10 * time.Second
	}
	if opts.CheckpointEvents <= 0 {
		opts.CheckpointEvents = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create log directory: %w", err)
	}
	if err := writePublicKey(opts.Dir, opts.Key); err != nil {
		return nil, err
	}
	closed, err := closedSegments(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkSegmentStarted(opts, closed); err != nil {
		return nil, err
	}
	l := &Log{
		opts:   opts,
		signer: opts.Key.signer,
		origin: segmentOrigin(opts.Origin, len(closed)+1),
		reqs:   make(chan *request, maxBatch),
		cpReq:  make(chan cpCall),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.encSlots = make(chan struct{}, runtime.GOMAXPROCS(0))
	rep, err := l.openFiles()
	if err != nil {
		l.closeFiles()
		return nil, err
	}
	if err := syncDir(opts.Dir); err != nil {
		l.closeFiles()
		return nil, err
	}
	tick := opts.tick
	if tick == nil {
		l.ticker = time.NewTicker(opts.CheckpointEvery)
		tick = l.ticker.C
	}
	go l.run(tick)
	if rep != nil {
		if err := l.Append(context.Background(), rep.Event()); err != nil {
			l.Close()
			return nil, fmt.Errorf("audit: record recovery: %w", err)
		}
	}
	return l, nil
}

func (l *Log) wrap(f *os.File) syncFile {
	l.files = append(l.files, f)
	if l.opts.wrapFile != nil {
		return l.opts.wrapFile(filepath.Base(f.Name()), f)
	}
	return f
}

func (l *Log) closeFiles() error {
	var first error
	for _, f := range l.files {
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("audit: close %s: %w", filepath.Base(f.Name()), err)
		}
	}
	l.files = nil
	return first
}

// openFiles opens the three log files and the witness file, repairs a torn
// tail and rebuilds the running Merkle state. It returns the log.recovered event
// when it repaired anything.
func (l *Log) openFiles() (*LogRecoveredEvent, error) {
	open := func(name string) (*os.File, error) {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", filepath.Base(name), err)
		}
		return f, nil
	}
	dir := l.opts.Dir
	rec, err := open(filepath.Join(dir, recordsFile))
	if err != nil {
		return nil, err
	}
	l.recW = l.wrap(rec)
	lf, err := open(filepath.Join(dir, leavesFile))
	if err != nil {
		return nil, err
	}
	l.leafW = l.wrap(lf)
	cf, err := open(filepath.Join(dir, checkpointsFile))
	if err != nil {
		return nil, err
	}
	l.cpW = l.wrap(cf)

	rep := &LogRecoveredEvent{}
	count, err := l.recoverRecords(rec, lf, rep)
	if err != nil {
		return nil, err
	}
	last, cut, err := recoverNoteFile(cf)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if cut > 0 {
		rep.CheckpointCutBytes = cut
	}
	witnessed, err := l.openWitness(open, rep)
	if err != nil {
		return nil, err
	}
	var checks []treeCheck
	if last != nil {
		cp, err := openCheckpoint(last, l.verifier())
		if err != nil {
			return nil, fmt.Errorf("%w: the last checkpoint in checkpoints.log does not verify with the signing key: %v", ErrDamaged, err)
		}
		if cp.Size > count {
			return nil, fmt.Errorf("%w: the last checkpoint covers %d records but only %d are present", ErrDamaged, cp.Size, count)
		}
		l.lastCP, l.lastCPSize, l.quietSize = last, cp.Size, cp.Size
		checks = append(checks, treeCheck{cp: cp, what: "the last checkpoint"})
	}
	if witnessed != nil {
		if witnessed.Size > count {
			return nil, fmt.Errorf("%w: the log diverges from the witnessed checkpoint at size %d: only %d records are present (records %d.. deleted or truncated)", ErrDamaged, witnessed.Size, count, count)
		}
		checks = append(checks, treeCheck{cp: *witnessed, what: "the witnessed checkpoint"})
	}
	if err := l.loadTree(lf, count, checks); err != nil {
		return nil, err
	}
	l.size.Store(count)
	if *rep == (LogRecoveredEvent{}) {
		return nil, nil
	}
	rep.Records = count
	return rep, nil
}

// openWitness opens the witness file and returns its last checkpoint if
// it belongs to this segment, so Open can refuse a log that no longer
// agrees with what was sent off-host: a rewrite re-signed with the key
// shows here, at start.
func (l *Log) openWitness(open func(string) (*os.File, error), rep *LogRecoveredEvent) (*log.Checkpoint, error) {
	if l.opts.WitnessFile == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(l.opts.WitnessFile), 0o700); err != nil {
		return nil, fmt.Errorf("audit: witness directory: %w", err)
	}
	wf, err := open(l.opts.WitnessFile)
	if err != nil {
		return nil, err
	}
	l.witW = l.wrap(wf)
	last, cut, err := recoverNoteFile(wf)
	if err != nil {
		return nil, fmt.Errorf("audit: witness: %w", err)
	}
	if cut > 0 {
		rep.WitnessCutBytes = cut
	}
	if last == nil {
		return nil, nil
	}
	cp, err := openCheckpoint(last, l.verifier())
	if err != nil {
		return nil, fmt.Errorf("%w: the last checkpoint in the witness file %s does not verify with the signing key (%v): is it another gateway's witness, or another key?", ErrDamaged, l.opts.WitnessFile, err)
	}
	if cp.Origin != l.origin {
		if n, ok := segmentOf(l.opts.Origin, cp.Origin); !ok || n > l.segment() {
			return nil, fmt.Errorf("%w: the witness file %s ends with a checkpoint of %q, but this log is %q: segments of the log are missing", ErrDamaged, l.opts.WitnessFile, cp.Origin, l.origin)
		}
		return nil, nil // an earlier segment's: this one has none witnessed yet
	}
	return &cp, nil
}

// checkSegmentStarted refuses an empty segment after closed ones: its
// first record must be Recover's log.segment, and a recovery interrupted
// before writing it is finished by running it again.
func checkSegmentStarted(opts Options, closed []string) error {
	if len(closed) == 0 || opts.newSegment {
		return nil
	}
	empty, err := segmentEmpty(opts.Dir)
	if err != nil || !empty {
		return err
	}
	return fmt.Errorf("%w: a recovery was interrupted before the new segment was started", ErrDamaged)
}

func (l *Log) segment() int {
	n, _ := segmentOf(l.opts.Origin, l.origin)
	return n
}

func (l *Log) verifier() note.Verifier {
	v, _ := note.NewVerifier(l.opts.Key.verifier) // derived from the key: always valid
	return v
}

// recoverRecords finds the end of the last whole record, cuts a torn tail
// and brings leaves.bin to one hash per record. It returns the record count.
func (l *Log) recoverRecords(rec, lf *os.File, rep *LogRecoveredEvent) (uint64, error) {
	recSize, err := fileSize(rec)
	if err != nil {
		return 0, err
	}
	leafSize, err := fileSize(lf)
	if err != nil {
		return 0, err
	}
	haveLeaves := uint64(leafSize / 32)
	if _, err := rec.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	fr := newFrameReader(bufio.NewReaderSize(rec, 1<<16))
	var count uint64
	var missing [][]byte // leaf hashes of records that have none yet
	for {
		payload, err := fr.next()
		if err == io.EOF {
			break
		}
		var fe *frameError
		if errors.As(err, &fe) {
			torn, terr := isTornTail(rec, recSize, fe)
			if terr != nil {
				return 0, terr
			}
			if !torn {
				return 0, fmt.Errorf("%w: records.log is damaged at record %d (%v)", ErrDamaged, count, fe)
			}
			if err := rec.Truncate(fe.Offset); err != nil {
				return 0, fmt.Errorf("audit: cut torn tail: %w", err)
			}
			if err := rec.Sync(); err != nil {
				return 0, fmt.Errorf("audit: cut torn tail: %w", err)
			}
			rep.CutBytes = recSize - fe.Offset
			break
		}
		if err != nil {
			return 0, fmt.Errorf("audit: scan records: %w", err)
		}
		if count >= haveLeaves {
			h, err := leafHash(payload)
			if err != nil {
				return 0, fmt.Errorf("audit: record %d: %w; run audit verify", count, err)
			}
			missing = append(missing, h)
		}
		count++
	}
	switch want := int64(count) * 32; {
	case leafSize > want:
		// Leaves of records that never made it (or a torn leaf).
		if err := lf.Truncate(want); err != nil {
			return 0, fmt.Errorf("audit: cut leaves: %w", err)
		}
		rep.LeafCutBytes = leafSize - want
	case leafSize < want:
		if err := lf.Truncate(int64(haveLeaves) * 32); err != nil {
			return 0, fmt.Errorf("audit: cut leaves: %w", err)
		}
		if _, err := lf.Write(bytes.Join(missing, nil)); err != nil {
			return 0, fmt.Errorf("audit: rebuild leaves: %w", err)
		}
		rep.LeavesRebuilt = len(missing)
	default:
		return count, nil
	}
	if err := lf.Sync(); err != nil {
		return 0, fmt.Errorf("audit: sync leaves: %w", err)
	}
	return count, nil
}

// isTornTail tells a write cut short by a crash (the bad frame is the last
// thing in the file, or only zeros follow it) from damage in the middle,
// which Open must not paper over by cutting.
func isTornTail(f *os.File, size int64, fe *frameError) (bool, error) {
	if fe.Torn || fe.Offset+int64(fe.Length)+frameOverhead == size {
		return true, nil
	}
	rest := size - fe.Offset
	if rest > 64<<20 {
		return false, nil
	}
	buf := make([]byte, rest)
	if _, err := f.ReadAt(buf, fe.Offset); err != nil {
		return false, fmt.Errorf("audit: read tail: %w", err)
	}
	return bytes.Count(buf, []byte{0}) == len(buf), nil
}

// treeCheck is a signed checkpoint the rebuilt tree must agree with.
type treeCheck struct {
	cp   log.Checkpoint
	what string
}

// loadTree rebuilds the compact range from leaves.bin and checks the
// roots of the given checkpoints against it.
func (l *Log) loadTree(lf *os.File, count uint64, checks []treeCheck) error {
	l.rng = (&compact.RangeFactory{Hash: l.slab.hashChildren}).NewEmptyRange(0)
	at := map[uint64][]treeCheck{}
	for _, c := range checks {
		if c.cp.Size == 0 && !bytes.Equal(c.cp.Hash, hasher.EmptyRoot()) {
			return fmt.Errorf("%w: %s is empty but has a non-empty root", ErrDamaged, c.what)
		}
		at[c.cp.Size] = append(at[c.cp.Size], c)
	}
	if _, err := lf.Seek(0, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(lf, 1<<16)
	for i := uint64(0); i < count; i++ {
		h := make([]byte, 32)
		if _, err := io.ReadFull(br, h); err != nil {
			return fmt.Errorf("audit: read leaves: %w", err)
		}
		if err := l.rng.Append(h, nil); err != nil {
			return err
		}
		for _, c := range at[i+1] {
			if root, _ := l.rng.GetRootHash(nil); !bytes.Equal(root, c.cp.Hash) {
				return fmt.Errorf("%w: the records differ from %s (size %d): the log diverges from it", ErrDamaged, c.what, c.cp.Size)
			}
		}
	}
	_, err := lf.Seek(0, io.SeekEnd)
	return err
}

func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit: stat %s: %w", filepath.Base(f.Name()), err)
	}
	return st.Size(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: open log directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: sync log directory: %w", err)
	}
	return nil
}

// Append stores e durably and returns nil, or returns why it could not.
// It fills e.Time from the clock if it is zero. After a write or fsync
// failure every Append fails (fail closed) and Failed is closed.
func (l *Log) Append(ctx context.Context, e Event) error {
	l.active.Add(1) // gather waits for appenders still on their way
	defer l.active.Add(-1)
	if e.Time.IsZero() {
		e.Time = l.opts.Now()
	}
	p, err := l.encrypt(e)
	if err != nil {
		return err
	}
	if p.size() > MaxRecordSize {
		return fmt.Errorf("audit: event of %d bytes exceeds the record limit", p.size())
	}
	req := &request{p: p, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-l.failed:
		l.mu.RUnlock()
		return l.failure()
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("audit: event not stored: %w", ctx.Err())
	}
	l.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The event may still become durable; the caller must act as if
		// it did not.
		return fmt.Errorf("audit: event not known to be stored: %w", ctx.Err())
	}
}

// encrypt pre-encodes e with its parts encrypted, at most one appender per
// CPU at a time. Encryption is CPU work; a thousand appenders doing it at
// once would keep the writer, back from its fsync, waiting for a CPU for
// milliseconds, and every batch would wait with it.
func (l *Log) encrypt(e Event) (preEncoded, error) {
	l.encSlots <- struct{}{}
	defer func() { <-l.encSlots }()
	return preEncodeV2(e, l.opts.Keys)
}

// Size returns the number of durable records.
func (l *Log) Size() uint64 { return l.size.Load() }

// Failed is closed once the log can no longer store events. The gateway
// watches it to end live sessions that could no longer be audited.
func (l *Log) Failed() <-chan struct{} { return l.failed }

func (l *Log) failure() error {
	if p := l.failErr.Load(); p != nil {
		return *p
	}
	return errors.New("audit: log failed")
}

// Checkpoint signs and stores a checkpoint of the current tree now and
// returns the signed note; it covers every event whose Append returned
// before the call. If nothing but the log's own log.checkpoint event was
// appended since the last checkpoint, it returns that one.
func (l *Log) Checkpoint() ([]byte, error) {
	reply := make(chan cpResult, 1)
	select {
	case l.cpReq <- cpCall{reply: reply}:
	case <-l.done:
		return nil, ErrClosed
	}
	r := <-reply
	return r.note, r.err
}

// Close stores everything queued, writes a final checkpoint and closes the
// files. It returns the first error the log met, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.reqs)
	}
	l.mu.Unlock()
	<-l.done
	return l.closeErr
}

// run is the writer goroutine.
func (l *Log) run(tick <-chan time.Time) {
	defer close(l.done)
	for {
		select {
		case req, ok := <-l.reqs:
			if !ok {
				l.shutdown()
				return
			}
			batch, open := l.gather(append(l.batch[:0], req))
			l.commit(batch)
			clear(batch)
			l.batch = batch[:0]
			if !open {
				l.shutdown()
				return
			}
			if l.err == nil && l.size.Load()-l.lastCPSize >= uint64(l.opts.CheckpointEvents) {
				l.checkpoint(true)
			}
		case <-tick:
			if l.err == nil && l.size.Load() > l.quietSize {
				l.checkpoint(true)
			}
		case call := <-l.cpReq:
			var r cpResult
			if call.next != nil {
				r.note, r.err = l.handOver(call.next)
			} else {
				r.note, r.err = l.checkpoint(true)
			}
			call.reply <- r
		}
	}
}

// maxLinger bounds how long gather waits for appenders still on their
// way; lingerPoll is how often it looks whether any still are.
const (
	maxLinger  = 2 * time.Millisecond
	lingerPoll = 100 * time.Microsecond
)

// gather adds to batch what has queued up and, while other appenders are
// still in Append (encrypting, or just acknowledged and about to come
// back with their next event), waits for them a little: at most as long
// as the last write took, and never past maxLinger. Without the wait,
// appenders acknowledged together come back one by one while the writer
// has already taken the first few, and fall into two groups that
// alternate, each waiting for the other's fsync as well as its own:
// measured with 64 appenders, batches of 31 on average. A lone appender
// never waits (nobody else is in Append). It reports false once reqs is
// closed.
func (l *Log) gather(batch []*request) ([]*request, bool) {
	var deadline time.Time
	for len(batch) < maxBatch {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
			continue
		default:
		}
		if l.active.Load() <= int64(len(batch)) {
			return batch, true
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(min(l.lastWrite, maxLinger))
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return batch, true
		}
		if l.poll == nil {
			l.poll = time.NewTimer(min(left, lingerPoll))
		} else {
			l.poll.Reset(min(left, lingerPoll))
		}
		select {
		case r, ok := <-l.reqs:
			l.poll.Stop()
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
		case <-l.poll.C:
		}
	}
	return batch, true
}

func (l *Log) shutdown() {
	if l.ticker != nil {
		l.ticker.Stop()
	}
	if l.err == nil {
		l.checkpoint(false)
	}
	cerr := l.closeFiles()
	if l.err != nil {
		l.closeErr = l.err
	} else {
		l.closeErr = cerr
	}
}

// fail puts the log into the failed state for good.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("audit: log failed, no further events accepted: %w", err)
		l.failErr.Store(&l.err)
		close(l.failed)
	}
	return l.err
}

// commit writes one batch, fsyncs and acknowledges it.
func (l *Log) commit(batch []*request) {
	ack := func(err error) {
		for _, r := range batch {
			r.done <- err
		}
	}
	if l.err != nil {
		ack(l.err)
		return
	}
	n := l.size.Load()
	l.recBuf, l.leafBuf = l.recBuf[:0], l.leafBuf[:0]
	for i, r := range batch {
		start := len(l.recBuf)
		l.recBuf = append(l.recBuf, 0, 0, 0, 0)
		l.recBuf = r.p.appendPayload(l.recBuf, n+uint64(i))
		payload := l.recBuf[start+4:]
		binary.BigEndian.PutUint32(l.recBuf[start:], uint32(len(payload)))
		l.leafForm = r.p.appendLeaf(append(l.leafForm[:0], rfc6962.RFC6962LeafHashPrefix), n+uint64(i))
		leaf := sha256.Sum256(l.leafForm) // hasher.HashLeaf of the leaf form
		l.recBuf = binary.BigEndian.AppendUint32(l.recBuf, crc32.Checksum(payload, castagnoli))
		l.leafBuf = append(l.leafBuf, leaf[:]...)
		r.p.release() // copied out: nothing reads it after this
	}
	start := time.Now()
	if err := l.write(); err != nil {
		ack(l.fail(err))
		return
	}
	l.lastWrite = time.Since(start)
	l.commits.Add(1)
	for h := range slices.Chunk(l.leafBuf, sha256.Size) {
		if err := l.rng.Append(l.slab.put(h), nil); err != nil {
			ack(l.fail(err))
			return
		}
	}
	l.size.Store(n + uint64(len(batch)))
	ack(nil)
}

// write appends the prepared leaves and records and makes them durable.
// Leaves go first: after a crash, extra leaves are simply cut, and records
// without a leaf get theirs recomputed.
func (l *Log) write() error {
	if _, err := l.leafW.Write(l.leafBuf); err != nil {
		return fmt.Errorf("write leaves: %w", err)
	}
	if _, err := l.recW.Write(l.recBuf); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	var wg sync.WaitGroup
	var lerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		lerr = l.leafW.Sync()
	}()
	rerr := l.recW.Sync()
	wg.Wait()
	if lerr != nil {
		return fmt.Errorf("sync leaves: %w", lerr)
	}
	if rerr != nil {
		return fmt.Errorf("sync records: %w", rerr)
	}
	return nil
}

// writeCheckpoint stores a signed note in checkpoints.log and the witness.
func (l *Log) writeCheckpoint(signed []byte) error {
	for _, w := range []syncFile{l.cpW, l.witW} {
		if w == nil {
			continue
		}
		if _, err := w.Write(signed); err != nil {
			return l.fail(fmt.Errorf("write checkpoint: %w", err))
		}
		if err := w.Sync(); err != nil {
			return l.fail(fmt.Errorf("sync checkpoint: %w", err))
		}
	}
	return nil
}

// checkpoint signs the current tree head, stores it in checkpoints.log and
// the witness file, and, if event is set, appends a log.checkpoint event
// naming the checkpoint's size and root. That event lands after the
// checkpoint and so is covered by the next one; recording the checkpoint in
// the tree means a checkpoint later deleted from checkpoints.log is missed
// by Verify. A checkpoint is never written for a tree that only grew by our
// own log.checkpoint event on a timer tick, so an idle log stays idle.
func (l *Log) checkpoint(event bool) ([]byte, error) {
	if l.err != nil {
		return nil, l.err
	}
	size := l.size.Load()
	if l.lastCP != nil && (size == l.lastCPSize || size == l.quietSize) {
		return l.lastCP, nil
	}
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return nil, l.fail(err)
	}
	if size == 0 {
		root = hasher.EmptyRoot()
	}
	signed, err := signCheckpoint(log.Checkpoint{Origin: l.origin, Size: size, Hash: root}, l.signer)
	if err != nil {
		return nil, l.fail(fmt.Errorf("sign checkpoint: %w", err))
	}
	if err := l.writeCheckpoint(signed); err != nil {
		return nil, err
	}
	l.lastCP, l.lastCPSize, l.quietSize = signed, size, size
	if event {
		p, err := preEncodeV2(LogCheckpointEvent{Time: l.opts.Now(), Size: size, Root: rootString(root)}.Event(), l.opts.Keys)
		if err != nil {
			return nil, l.fail(err)
		}
		l.commit([]*request{{p: p, done: make(chan error, 1)}})
		if l.err != nil {
			return nil, l.err
		}
		l.quietSize = size + 1
	}
	return signed, nil
}
