// Package sftpproxy lets the gateway understand SFTP (M9: file transfers are
// recorded with operation, path, size and hash). It relays SFTP packets
// between the client's subsystem channel and the target's sftp subsystem:
// every client request is parsed as far as the record needs (type, id,
// paths, handle, offset, length, flags, attributes), checked (read-only
// roles, extensions the gateway cannot see through, handles that are not
// open or are being closed), recorded when the
// target's answer comes, and forwarded byte for byte with its own id.
// File data is hashed where it lies in the packet buffer: WRITE data when
// the target confirms it, READ data in the DATA reply. Each operation is
// handed to a Recorder as a flat map; a recording failure fails the
// operation and ends the session (fail closed).
package sftpproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"tandem.dev/tandem/internal/safetext"
)

// Recorder receives one map per operation; the gateway passes
// record.Writer.Op. Serve calls it from its two reader goroutines, never
// concurrently.
type Recorder func(op map[string]string) error

// Options tune Serve.
type Options struct {
	// ReadOnly refuses every write-type operation (opens for writing,
	// writes, setstat, rename, remove, mkdir, rmdir, link, symlink) with
	// "permission denied" and records the refusal; refused requests never
	// reach the target. It implements the policy option for SFTP
	// read-only roles.
	ReadOnly bool
	// Now is the clock for transfer durations; nil means time.Now.
	Now func() time.Time
}

// Bounds of the requests in flight. Every request forwarded waits in a
// table for its answer; a WRITE also keeps its packet buffer there until
// the target confirms it, because only then is its data hashed. A client
// that sends without reading answers would otherwise grow that table
// without end: once a bound is reached the relay stops reading the
// client until the target has answered enough. The bounds are above what
// clients keep in flight (OpenSSH's sftp 64 requests, 64 x 255 KiB
// writes = 16 MiB; pkg/sftp 64 per file), so they never slow a transfer.
const (
	maxOutstanding = 256
	maxHeldBytes   = 32 << 20
	// maxHandles bounds the files and directories open at once (and
	// opens on their way): each keeps its path and hashes in the relay
	// until it is closed, and a target allows as many as its file
	// limit, which can be high. Clients open a handful at a time; the
	// bound is offered in limits@openssh.com.
	maxHandles = 1024
	// maxPathLen bounds a path in a request, and the target's start
	// directory: a request keeps its paths until it is answered, and an
	// open handle its path until it is closed, so paths of packet size
	// would make the bounds above 256 KiB times larger. It is Linux's
	// PATH_MAX; other systems take less. It also keeps a record of two
	// paths, each byte a control character that JSON writes as 6, below
	// the recording's 64 KiB for an operation (with a start directory of
	// up to 1 KiB).
	maxPathLen = 4 << 10
	// maxExtNameLen bounds an unknown extension's name in its record;
	// known ones are a few dozen bytes.
	maxExtNameLen = 256
	// drainTimeout bounds the wait, after the client has gone, for the
	// target's answers to requests already forwarded, so that they are
	// recorded with their results.
	drainTimeout = 10 * time.Second
)

// statusMsg is a status of the relay's own for the client.
type statusMsg struct {
	code uint32
	msg  string
}

// errNotRecorded is what the client sees once recording has failed; the
// real cause goes to Serve's caller only.
var errNotRecorded = statusMsg{fxFailure, "operation could not be recorded; session closed"}

// errReadOnly is the refusal of a write-type operation for a read-only role.
var errReadOnly = statusMsg{fxPermissionDenied, "permission denied: SFTP is read-only for this role"}

// errBadHandle refuses a request naming a handle that is not open, or
// whose CLOSE is already on its way (see request).
var errBadHandle = statusMsg{fxFailure, "invalid handle: not open, or being closed"}

// errTooManyHandles refuses an open beyond maxHandles.
var errTooManyHandles = statusMsg{fxFailure, "too many open handles: close some first"}

// errPathTooLong refuses a path above maxPathLen, with the status
// sftp-server gives for ENAMETOOLONG.
var errPathTooLong = statusMsg{fxBadMessage, "path too long"}

// errUnsupported refuses requests the relay does not forward.
var errUnsupported = statusMsg{fxOpUnsupported, "operation not supported by the gateway"}

// Target is the target's sftp subsystem after the version exchange.
type Target struct {
	rw   io.ReadWriteCloser
	info targetInfo
}

// Handshake does the version exchange on the target's sftp subsystem (rw:
// reads are its stdout, writes its stdin, Close ends it and must make a
// blocked Read return), asks for its limits and its start directory. The
// gateway calls it before it accepts the client's subsystem request, so a
// target whose SFTP does not start is a refused subsystem. On error rw is
// closed.
func Handshake(rw io.ReadWriteCloser) (*Target, error) {
	ti, err := targetHandshake(rw, rw)
	if err != nil {
		_ = rw.Close()
		return nil, fmt.Errorf("sftpproxy: target: %w", err)
	}
	return &Target{rw: rw, info: ti}, nil
}

// Close ends the target's subsystem.
func (t *Target) Close() error { return t.rw.Close() }

// Serve relays SFTP between client (the person's subsystem channel) and
// target until the client closes, the target ends, ctx ends or recording fails. Every
// operation is recorded with op, path(s), result ("ok" or the error) and,
// for opens, flags; each opened file's close carries bytes_read,
// bytes_written, sha256_read, sha256_written (hex), sequential and
// duration_ms; values that are not UTF-8 are escaped (escapeInvalid).
// Operations are forwarded first and recorded with the
// target's answer, so the one whose recording failed may have taken
// effect on the target; its client gets a failure instead of the answer,
// nothing is forwarded after it, and Serve returns the recording error.
//
// Serve closes client and target and returns after both of its reader
// goroutines have ended. A clean end of the client returns nil.
func Serve(ctx context.Context, client io.ReadWriteCloser, target *Target, rec Recorder, o Options) error {
	if target == nil || rec == nil || client == nil {
		return errors.New("sftpproxy: client, target and recorder are required")
	}
	r := &relay{
		client: client, target: target.rw, rec: rec, start: target.info.start, limits: target.info.limits, readOnly: o.ReadOnly, now: o.Now,
		pending: make(map[uint32]pending), handles: make(map[string]*handle),
		budget: newPendingBudget(),
	}
	r.room = sync.NewCond(&r.mu)
	if r.now == nil {
		r.now = time.Now
	}
	// ctx ending closes both sides, which ends both readers.
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			r.stop(ctx.Err())
		case <-done:
		}
	}()
	defer func() { close(done); <-watched }()

	if err := r.handshake(target.info); err != nil {
		r.stop(err)
		return r.result(ctx)
	}
	targetDone := make(chan struct{})
	go func() {
		defer close(targetDone)
		if err := r.targetLoop(); err != nil {
			r.stop(err)
		}
	}()
	if err := r.clientLoop(); err != nil {
		r.stop(err)
	} else {
		r.drain(ctx, targetDone)
	}
	r.closeTarget()
	<-targetDone
	r.closeClient()
	r.recordUnfinished()
	return r.result(ctx)
}

// relay is one SFTP session. The client loop (Serve's goroutine) reads
// requests and writes to the target; the target loop reads answers; both
// write to the client, under cmu.
type relay struct {
	client, target io.ReadWriteCloser
	rec            Recorder
	readOnly       bool
	now            func() time.Time
	start          string  // the target's working directory
	limits         *limits // the target's, nil if it offers none

	cmu        sync.Mutex // serialises writes to the client
	clientGone atomic.Bool

	mu       sync.Mutex
	room     *sync.Cond // signalled when the table shrinks or the session stops
	pending  map[uint32]pending
	held     int // bytes of WRITE buffers in pending
	handles  map[string]*handle
	opening  int           // OPEN and OPENDIR requests in pending
	drained  chan struct{} // closed when pending empties, if set
	stopped  bool
	endErr   error  // what ended the session first
	handleNo uint64 // numbers of opened files (client loop only)
	opens    uint64 // handles opened, files and directories

	budget *pendingBudget // reordering memory of all open files' hashes

	recMu  sync.Mutex // serialises rec and guards recErr
	recErr error
	failed atomic.Bool

	clientOnce, targetOnce sync.Once
	targetClosing          atomic.Bool
}

// pending is a forwarded request waiting for its answer.
type pending struct {
	typ     byte
	op      map[string]string // the record, completed with the answer
	h       *handle           // the open handle a request names
	hkey    string            // CLOSE: the target's handle
	path    string            // OPEN, OPENDIR: the path (resolved)
	number  string            // OPEN: the handle's number in the record
	appends bool              // OPEN: with APPEND
	off     uint64            // READ, WRITE
	shared  *sharedBuf        // WRITE: its packet, held until answered, and who puts it back
	data    []byte            // WRITE: the data in its packet
	readdir bool
}

// handle is a file or directory the target opened for the client.
type handle struct {
	number  string
	seq     uint64 // order of opening
	path    string
	dir     bool
	appends bool // opened with APPEND: writes go to the end, whatever their offset
	opened  time.Time
	read    *streamHash
	written *streamHash
	entries int    // directory: entries listed (without . and ..)
	listErr string // directory: a failed READDIR
	closing bool   // its CLOSE has been forwarded (under relay.mu)
}

// handshake reads the client's INIT and answers it with the version the
// relay offers.
func (r *relay) handshake(ti targetInfo) error {
	p, err := readPacket(r.client, maxVersionBytes)
	if err != nil {
		return fmt.Errorf("sftpproxy: reading the client's INIT: %w", err)
	}
	if p[4] != fxpInit {
		return fmt.Errorf("sftpproxy: the client's first packet has type %d, not INIT", p[4])
	}
	v, _, err := parseVersion(p[5:])
	if err != nil {
		return fmt.Errorf("sftpproxy: the client's INIT: %w", err)
	}
	if v < sftpVersion {
		return fmt.Errorf("sftpproxy: the client speaks SFTP version %d; only %d is relayed", v, sftpVersion)
	}
	return r.writeClient(clientVersion(ti))
}

// writeClient writes one whole packet to the client. Once a write has
// failed the client is gone; later packets are dropped, so that the
// target's answers can still be read and recorded.
func (r *relay) writeClient(p []byte) error {
	if r.clientGone.Load() {
		return nil
	}
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if _, err := r.client.Write(p); err != nil {
		r.clientGone.Store(true)
		return err
	}
	return nil
}

// stop ends the session: the first cause is kept, both sides are closed
// and a client loop waiting for room is woken.
func (r *relay) stop(err error) {
	r.mu.Lock()
	if r.endErr == nil {
		r.endErr = err
	}
	r.stopped = true
	r.room.Broadcast()
	r.mu.Unlock()
	r.closeClient()
	r.closeTarget()
}

func (r *relay) closeClient() { r.clientOnce.Do(func() { _ = r.client.Close() }) }

func (r *relay) closeTarget() {
	r.targetOnce.Do(func() {
		r.targetClosing.Store(true)
		_ = r.target.Close()
	})
}

// result is Serve's error: a recording failure first, then ctx, then
// whatever else ended the session; a client that went away is no error
// (files it left open carry transfer_error).
func (r *relay) result(ctx context.Context) error {
	if err := r.failure(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endErr
}

func (r *relay) failure() error {
	if !r.failed.Load() {
		return nil
	}
	r.recMu.Lock()
	defer r.recMu.Unlock()
	return r.recErr
}

// record hands op to the recorder. The first error marks the session
// failed; it and every later call return the error.
func (r *relay) record(op map[string]string) error {
	r.recMu.Lock()
	defer r.recMu.Unlock()
	if r.recErr != nil {
		return r.recErr
	}
	escapeInvalid(op)
	if err := r.rec(op); err != nil {
		r.recErr = fmt.Errorf("sftpproxy: recording %s: %w", op["op"], err)
		r.failed.Store(true)
		return r.recErr
	}
	return nil
}

// escapeInvalid makes every value of op that is not valid UTF-8 (a file
// name is any bytes) valid, escaped with safetext.Line, and names those
// values in op["escaped"]. The recording stores JSON, which would turn
// each such byte into U+FFFD, so that different names looked the same;
// the escape is reversible and the list tells escaped values from names
// that merely look like escapes.
func escapeInvalid(op map[string]string) {
	var keys []string
	for k, v := range op {
		if !utf8.ValidString(v) {
			keys = append(keys, k)
		}
	}
	if keys == nil {
		return
	}
	sort.Strings(keys)
	for _, k := range keys {
		op[k] = safetext.Line(op[k])
	}
	op["escaped"] = strings.Join(keys, ",")
}

// recordOrFail records op; if that fails, the client gets errNotRecorded
// for request id and the session ends.
func (r *relay) recordOrFail(id uint32, op map[string]string) error {
	err := r.record(op)
	if err != nil {
		_ = r.writeClient(statusPacket(id, errNotRecorded.code, errNotRecorded.msg))
	}
	return err
}

// answerLocally records op with the relay's own status s and sends s to
// the client; the request is not forwarded.
func (r *relay) answerLocally(id uint32, op map[string]string, s statusMsg) error {
	op["result"] = s.msg
	if err := r.recordOrFail(id, op); err != nil {
		return err
	}
	_ = r.writeClient(statusPacket(id, s.code, s.msg))
	return nil
}

// clientLoop reads and forwards the client's requests until the client
// goes away (nil) or a request cannot be relayed (the error).
func (r *relay) clientLoop() error {
	for {
		b, p, err := readPacketInto(r.client)
		if err != nil {
			if errors.Is(err, errPacketTooLarge) || errors.Is(err, errEmptyPacket) {
				return fmt.Errorf("sftpproxy: the client sent a bad packet: %w", err)
			}
			return nil // the client went away (or Serve closed it)
		}
		if r.failed.Load() {
			putBuf(b)
			return nil
		}
		if err := r.request(b, p); err != nil {
			return err
		}
	}
}

// abs is a client path as the target walks it, for the record: a
// relative one joined to the target's start directory, without "." and
// empty elements. ".." stays: the target takes it from wherever a symlink
// before it led, which only the target knows, so cleaning "link/../f" to
// "f" could name another file than the one used.
func (r *relay) abs(p []byte) string {
	s := string(p)
	if !strings.HasPrefix(s, "/") {
		s = r.start + "/" + s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, e := range strings.Split(s, "/") {
		if e != "" && e != "." {
			b.WriteString("/")
			b.WriteString(e)
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// lookup returns the open handle h names, or nil if there is none or its
// CLOSE has been forwarded.
func (r *relay) lookup(h []byte) *handle {
	r.mu.Lock()
	defer r.mu.Unlock()
	if x := r.handles[string(h)]; x != nil && !x.closing {
		return x
	}
	return nil
}

func handlePath(h *handle) string {
	if h == nil {
		return ""
	}
	return h.path
}

// request handles one client packet p, which lies in buffer b; it takes
// b over.
func (r *relay) request(b *[]byte, p []byte) error {
	req, err := parseRequest(p)
	if err != nil {
		putBuf(b)
		return fmt.Errorf("sftpproxy: bad request from the client: %s", safetext.Line(err.Error()))
	}
	if n := max(len(req.path), len(req.path2)); n > maxPathLen {
		putBuf(b)
		op := map[string]string{"op": typeName(req.typ, req.ext), "path_bytes": strconv.Itoa(n)}
		return r.answerLocally(req.id, op, errPathTooLong)
	}
	pd := pending{typ: req.typ}
	write := false
	byHandle := false // the request names a handle: pd.h is what it names
	switch req.typ {
	case fxpOpen:
		write = req.pflags&(fxfWrite|fxfAppend|fxfCreat|fxfTrunc|fxfExcl) != 0
		pd.path, pd.appends = r.abs(req.path), req.pflags&fxfAppend != 0
		pd.op = map[string]string{"op": "open", "path": pd.path, "flags": flagString(req.pflags)}
	case fxpClose:
		byHandle = true
		pd.h, pd.hkey = r.lookup(req.handle), string(req.handle)
	case fxpRead:
		byHandle = true
		pd.h, pd.off = r.lookup(req.handle), req.offset
		if req.length > limitMaxRead {
			// Short reads are allowed; a bigger answer could exceed the
			// packet limit and end the session.
			binary.BigEndian.PutUint32(p[req.lenAt:], limitMaxRead)
		}
	case fxpWrite:
		// No handle of a read-only session is open for writing; refused
		// all the same, in case the target lets one through.
		write, byHandle = true, true
		pd.h, pd.off, pd.data = r.lookup(req.handle), req.offset, req.data
		pd.op = map[string]string{"op": "write", "path": handlePath(pd.h)}
	case fxpReaddir:
		byHandle = true
		pd.h, pd.readdir = r.lookup(req.handle), true
	case fxpFstat:
		byHandle = true
		pd.h = r.lookup(req.handle)
		pd.op = map[string]string{"op": "stat", "path": handlePath(pd.h)}
	case fxpLstat, fxpStat:
		pd.op = map[string]string{"op": typeName(req.typ, ""), "path": r.abs(req.path)}
	case fxpSetstat:
		write = true
		pd.op = setstatOp(r.abs(req.path), req.attrs)
	case fxpFsetstat:
		write, byHandle = true, true
		pd.h = r.lookup(req.handle)
		pd.op = setstatOp(handlePath(pd.h), req.attrs)
	case fxpOpendir:
		pd.path = r.abs(req.path)
	case fxpRemove, fxpMkdir, fxpRmdir:
		write = true
		pd.op = map[string]string{"op": typeName(req.typ, ""), "path": r.abs(req.path)}
	case fxpRealpath:
		// Recorded as sent: "." is the start of most sessions.
		pd.op = map[string]string{"op": "realpath", "path": string(req.path)}
	case fxpRename:
		write = true
		pd.op = map[string]string{"op": "rename", "path": r.abs(req.path), "to": r.abs(req.path2)}
	case fxpReadlink:
		pd.op = map[string]string{"op": "readlink", "path": r.abs(req.path)}
	case fxpSymlink:
		write = true
		// The link's contents are recorded verbatim: they are resolved
		// against the link's directory when used, not against ".".
		pd.op = map[string]string{"op": "symlink", "path": r.abs(req.path2), "target": string(req.path)}
	case fxpExtended:
		switch req.ext {
		case limitsExt:
			if r.limits == nil {
				break
			}
			putBuf(b)
			_ = r.writeClient(limitsReply(req.id, *r.limits))
			return nil
		case posixRenameExt:
			write = true
			pd.op = map[string]string{"op": "rename", "path": r.abs(req.path), "to": r.abs(req.path2), "overwrite": "true"}
		case statvfsExt:
			pd.op = map[string]string{"op": "statvfs", "path": r.abs(req.path)}
		case fstatvfsExt:
			byHandle, pd.h = true, r.lookup(req.handle)
			pd.op = map[string]string{"op": "statvfs", "path": handlePath(pd.h)}
		case hardlinkExt:
			write = true
			pd.op = map[string]string{"op": "link", "path": r.abs(req.path2), "target": r.abs(req.path)}
		case fsyncExt:
			byHandle, pd.h = true, r.lookup(req.handle)
			pd.op = map[string]string{"op": "fsync", "path": handlePath(pd.h)}
		case lsetstatExt:
			write = true
			pd.op = setstatOp(r.abs(req.path), req.attrs)
			pd.op["nofollow"] = "true"
		}
		if pd.op == nil {
			putBuf(b)
			op := map[string]string{"op": "extended", "name": req.ext}
			if len(req.ext) > maxExtNameLen {
				// By its length: the recording refuses operations of
				// 64 KiB and more, and fails the session on them.
				op = map[string]string{"op": "extended", "name_bytes": strconv.Itoa(len(req.ext))}
			}
			return r.answerLocally(req.id, op, errUnsupported)
		}
	default:
		putBuf(b)
		return r.answerLocally(req.id, map[string]string{"op": "unsupported", "type": strconv.Itoa(int(req.typ))}, errUnsupported)
	}
	if write && r.readOnly {
		putBuf(b)
		if pd.op == nil {
			pd.op = map[string]string{"op": "open", "path": pd.path}
		}
		return r.answerLocally(req.id, pd.op, errReadOnly)
	}
	if byHandle && pd.h == nil {
		// Only a handle whose OPEN the target has answered and whose
		// CLOSE has not been sent is bound to the file the record names
		// when the target acts on the request. Any other could name
		// another file by then: sftp-server's handles are table indices,
		// given out again after a close, so a client can guess the
		// handle of an OPEN still on its way, or name a closed handle
		// behind the OPEN that reuses it, and move data past the record.
		putBuf(b)
		name := typeName(req.typ, "")
		if pd.op != nil {
			name = pd.op["op"]
		}
		return r.answerLocally(req.id, map[string]string{"op": name}, errBadHandle)
	}
	opens := req.typ == fxpOpen || req.typ == fxpOpendir
	if opens {
		r.mu.Lock()
		full := len(r.handles)+r.opening >= maxHandles
		r.mu.Unlock()
		if full {
			putBuf(b)
			op := pd.op
			if op == nil {
				op = map[string]string{"op": "list", "path": pd.path}
			}
			return r.answerLocally(req.id, op, errTooManyHandles)
		}
	}
	switch req.typ {
	case fxpOpen:
		// Numbered only once it goes to the target, as before the relay.
		r.handleNo++
		pd.number = strconv.FormatUint(r.handleNo, 10)
		pd.op["handle"] = pd.number
	case fxpWrite:
		pd.op, pd.shared = nil, shareBuf(b)
	}
	if err := r.enter(req.id, pd); err != nil {
		putBuf(b)
		return err
	}
	if req.typ == fxpClose || opens {
		r.mu.Lock()
		if opens {
			r.opening++
		} else {
			pd.h.closing = true
		}
		r.mu.Unlock()
	}
	// done lets go of b on this side: a WRITE's buffer stays held by its
	// entry in the table until the answer (or recordUnfinished).
	done := func() {
		if pd.shared != nil {
			pd.shared.release()
		} else {
			putBuf(b)
		}
	}
	if r.failed.Load() {
		// Nothing is forwarded after a recording failure; the entry stays
		// in the table.
		done()
		return nil
	}
	_, err = r.target.Write((*b)[:4+len(p)])
	done()
	if err != nil {
		return fmt.Errorf("sftpproxy: writing to the target: %w", err)
	}
	return nil
}

// enter puts a request in the table, waiting while the table is full.
func (r *relay) enter(id uint32, pd pending) error {
	n := 0
	if pd.shared != nil {
		n = cap(*pd.shared.b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.stopped && (len(r.pending) >= maxOutstanding || (n > 0 && r.held > 0 && r.held+n > maxHeldBytes)) {
		r.room.Wait()
	}
	if r.stopped {
		return errStopped
	}
	if _, dup := r.pending[id]; dup {
		return fmt.Errorf("sftpproxy: the client reused request id %d while it was outstanding", id)
	}
	r.pending[id] = pd
	r.held += n
	return nil
}

// errStopped: the session ended while a request waited for room; the
// cause is already recorded in endErr.
var errStopped = errors.New("sftpproxy: session stopped")

// drain waits, once the client has gone, for answers to the requests
// already forwarded, so that they are recorded with their results.
func (r *relay) drain(ctx context.Context, targetDone <-chan struct{}) {
	r.mu.Lock()
	if len(r.pending) == 0 || r.stopped {
		r.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	r.drained = ch
	r.mu.Unlock()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-targetDone:
	case <-t.C:
	case <-ctx.Done():
	}
}

// targetLoop reads the target's answers and passes them on until Serve
// closes the target (nil) or the target fails or misbehaves (the error).
func (r *relay) targetLoop() error {
	for {
		b, p, err := readPacketInto(r.target)
		if err != nil {
			if r.targetClosing.Load() {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("sftpproxy: the target ended the SFTP session")
			}
			return fmt.Errorf("sftpproxy: reading from the target: %w", err)
		}
		err = r.answer(p)
		if err == nil && !r.failed.Load() {
			_ = r.writeClient((*b)[:4+len(p)])
		}
		putBuf(b)
		if err != nil {
			return err
		}
	}
}

// answer matches one answer of the target to its request, hashes its data
// and records the operation.
func (r *relay) answer(p []byte) error {
	rep, err := parseReply(p)
	if err != nil {
		return fmt.Errorf("sftpproxy: bad answer from the target: %w", err)
	}
	r.mu.Lock()
	pd, ok := r.pending[rep.id]
	if ok {
		delete(r.pending, rep.id)
		if pd.shared != nil {
			r.held -= cap(*pd.shared.b)
		}
		if pd.typ == fxpOpen || pd.typ == fxpOpendir {
			r.opening--
		}
		r.room.Signal()
		if len(r.pending) == 0 && r.drained != nil {
			close(r.drained)
			r.drained = nil
		}
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("sftpproxy: the target answered request %d, which is not outstanding", rep.id)
	}
	if pd.shared != nil {
		defer pd.shared.release()
	}
	if !expected(pd.typ, rep.typ) {
		return fmt.Errorf("sftpproxy: the target answered %s with packet type %d", typeName(pd.typ, ""), rep.typ)
	}
	switch {
	case pd.typ == fxpRead:
		if rep.typ == fxpData && pd.h != nil && pd.h.read != nil {
			pd.h.read.add(rep.data, int64(pd.off))
		}
		return nil
	case pd.typ == fxpWrite:
		// Hashed once the target has taken it: the record shows what the
		// target accepted, not what was offered.
		if rep.typ == fxpStatus && rep.code == fxOK && pd.h != nil && pd.h.written != nil {
			if pd.h.appends {
				// sftp-server does not seek in a file opened with
				// APPEND: the data lands at the end in the order the
				// writes are done, which is the order it answers them.
				pd.h.written.addNext(pd.data)
			} else {
				pd.h.written.add(pd.data, int64(pd.off))
			}
		}
		return nil
	case pd.readdir:
		if pd.h != nil {
			if rep.typ == fxpName {
				pd.h.entries += countEntries(rep)
			} else if rep.code != fxOK && rep.code != fxEOF {
				pd.h.listErr = statusText(rep.code, rep.msg)
			}
		}
		return nil
	case pd.typ == fxpOpen || pd.typ == fxpOpendir:
		return r.opened(pd, rep)
	case pd.typ == fxpClose: // of an open handle: others are refused
		r.mu.Lock()
		if r.handles[pd.hkey] == pd.h {
			delete(r.handles, pd.hkey)
		}
		r.mu.Unlock()
		return r.recordOrFail(rep.id, r.closeOp(pd.h, result(rep), ""))
	}
	if pd.op == nil {
		return nil
	}
	pd.op["result"] = result(rep)
	if rep.typ == fxpName && rep.count > 0 {
		switch pd.typ {
		case fxpRealpath:
			pd.op["resolved"] = string(rep.name)
		case fxpReadlink:
			pd.op["target"] = string(rep.name)
		}
	}
	return r.recordOrFail(rep.id, pd.op)
}

// opened takes the answer to OPEN or OPENDIR. A directory is recorded
// (as "list") when it is closed, with the entries read; an open file at
// once.
func (r *relay) opened(pd pending, rep reply) error {
	dir := pd.typ == fxpOpendir
	if rep.typ == fxpHandle {
		h := &handle{number: pd.number, path: pd.path, dir: dir, appends: pd.appends, opened: r.now()}
		if !dir {
			h.read, h.written = newStreamHash(r.budget), newStreamHash(r.budget)
		}
		r.mu.Lock()
		_, dup := r.handles[string(rep.handle)]
		if !dup {
			r.opens++
			h.seq = r.opens
			r.handles[string(rep.handle)] = h
		}
		r.mu.Unlock()
		if dup {
			return errors.New("sftpproxy: the target returned a handle that is already open")
		}
		if dir {
			return nil
		}
	}
	op := pd.op
	if dir {
		op = map[string]string{"op": "list", "path": pd.path}
	}
	op["result"] = result(rep)
	return r.recordOrFail(rep.id, op)
}

// expected reports whether a reply of type got answers a request of type
// req: STATUS answers all, the others only their requests.
func expected(req, got byte) bool {
	switch got {
	case fxpStatus:
		return true
	case fxpHandle:
		return req == fxpOpen || req == fxpOpendir
	case fxpData:
		return req == fxpRead
	case fxpName:
		return req == fxpReaddir || req == fxpRealpath || req == fxpReadlink
	case fxpAttrs:
		return req == fxpStat || req == fxpLstat || req == fxpFstat
	case fxpExtendedReply:
		return req == fxpExtended
	}
	return false
}

// result is the record's text for an answer: "ok" or the status.
func result(rep reply) string {
	if rep.typ != fxpStatus || rep.code == fxOK {
		return "ok"
	}
	return statusText(rep.code, rep.msg)
}

// countEntries counts a READDIR answer's names other than "." and "..",
// which the record leaves out (as directory listings show them).
func countEntries(rep reply) int {
	n := 0
	d := dec{b: rep.names}
	for i := uint32(0); i < rep.count && d.err == nil; i++ {
		name := string(d.str("file name"))
		d.str("long name")
		d.attrs()
		if d.err == nil && name != "." && name != ".." {
			n++
		}
	}
	return n
}

// closeOp is the record of a handle's end: a file's transfer totals, or a
// directory's listing.
func (r *relay) closeOp(h *handle, result, transferErr string) map[string]string {
	if h.dir {
		if h.listErr != "" && result == "ok" {
			result = h.listErr
		}
		return map[string]string{"op": "list", "path": h.path, "entries": strconv.Itoa(h.entries), "result": result}
	}
	nr, hr, sr := h.read.sum()
	nw, hw, sw := h.written.sum()
	op := map[string]string{
		"op":             "close",
		"path":           h.path,
		"handle":         h.number,
		"bytes_read":     strconv.FormatInt(nr, 10),
		"bytes_written":  strconv.FormatInt(nw, 10),
		"sha256_read":    hr,
		"sha256_written": hw,
		"sequential":     strconv.FormatBool(sr && sw),
		"duration_ms":    strconv.FormatInt(r.now().Sub(h.opened).Milliseconds(), 10),
		"result":         result,
	}
	if transferErr != "" {
		op["transfer_error"] = transferErr
	}
	return op
}

// recordUnfinished records, after both readers have ended, what the
// session left open: requests the target never answered (with an unknown
// result) and handles the client never closed (with what had passed).
// After a recording failure the calls fail quietly.
func (r *relay) recordUnfinished() {
	r.mu.Lock()
	ids := make([]uint32, 0, len(r.pending))
	for id := range r.pending {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var ops []map[string]string
	for _, id := range ids {
		pd := r.pending[id]
		if pd.shared != nil {
			pd.shared.release()
		}
		if pd.op != nil && !r.failed.Load() {
			pd.op["result"] = "unknown: the session ended before the target answered"
			ops = append(ops, pd.op)
		}
	}
	clear(r.pending)
	hs := make([]*handle, 0, len(r.handles))
	for _, h := range r.handles {
		hs = append(hs, h)
	}
	clear(r.handles)
	endErr := r.endErr
	r.mu.Unlock()
	sort.Slice(hs, func(i, j int) bool { return hs[i].seq < hs[j].seq })
	why := "the session ended with the file open"
	if endErr != nil {
		why += ": " + endErr.Error()
	}
	for _, h := range hs {
		op := r.closeOp(h, "not closed: the session ended", why)
		if h.dir {
			op["result"] = "ok"
		}
		ops = append(ops, op)
	}
	for _, op := range ops {
		if r.record(op) != nil {
			return
		}
	}
}

// setstatOp is the record of a (f)setstat with the changes it asks for.
func setstatOp(p string, a attrs) map[string]string {
	op := map[string]string{"op": "setstat", "path": p}
	if a.flags&attrSize != 0 {
		op["size"] = strconv.FormatUint(a.size, 10)
	}
	if a.flags&attrUIDGID != 0 {
		op["uid"] = strconv.FormatUint(uint64(a.uid), 10)
		op["gid"] = strconv.FormatUint(uint64(a.gid), 10)
	}
	if a.flags&attrPermissions != 0 {
		op["mode"] = fmt.Sprintf("%04o", a.perm&0o7777)
	}
	if a.flags&attrACModTime != 0 {
		op["atime"] = strconv.FormatUint(uint64(a.atime), 10)
		op["mtime"] = strconv.FormatUint(uint64(a.mtime), 10)
	}
	return op
}

// flagString names the open flags for the record.
func flagString(f uint32) string {
	var names []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{
		{fxfRead, "read"}, {fxfWrite, "write"}, {fxfAppend, "append"},
		{fxfCreat, "create"}, {fxfTrunc, "truncate"}, {fxfExcl, "excl"},
	} {
		if f&x.bit != 0 {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ",")
}
