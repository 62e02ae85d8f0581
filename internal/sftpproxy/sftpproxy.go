// Package sftpproxy lets the gateway understand SFTP (M9: file transfers are
// recorded with operation, path, size and hash). It terminates the client's
// SFTP subsystem with a github.com/pkg/sftp RequestServer and forwards every
// request to the target through an *sftp.Client, so neither direction is
// parsed by hand. Each operation is handed to a Recorder as a flat map; a
// recording failure fails the operation and ends the session (fail closed).
package sftpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"tandem.dev/tandem/internal/safetext"
)

// Recorder receives one map per operation; the gateway passes
// record.Writer.Op. It may be called from several goroutines, but never
// concurrently: Serve serialises the calls.
type Recorder func(op map[string]string) error

// Options tune Serve.
type Options struct {
	// ReadOnly refuses every write-type operation (opens for writing,
	// setstat, rename, remove, mkdir, rmdir, link, symlink) with
	// "permission denied" and records the refusal. It implements the
	// policy option for SFTP read-only roles.
	ReadOnly bool
	// Now is the clock for transfer durations; nil means time.Now.
	Now func() time.Time
}

// maxTxPacket is the largest read reply Serve sends. The client chooses the
// read size, so allowing more than the 32 KiB default only helps clients
// that ask for it (pkg/sftp with MaxPacketUnchecked); it stays below the
// 256 KiB message limit of OpenSSH and pkg/sftp.
const maxTxPacket = 255 << 10

// TargetClientOptions are the sftp.ClientOption values the gateway should
// use for the target-side *sftp.Client: concurrent reads and writes keep
// large requests from a client pipelined to the target.
func TargetClientOptions() []sftp.ClientOption {
	return []sftp.ClientOption{
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
	}
}

// Serve runs the SFTP server on the client channel until the client closes
// it or ctx ends, forwarding every request to target. Every operation is
// recorded with op, path(s), result ("ok" or the error) and, for opens,
// flags; each opened file's close carries bytes_read, bytes_written,
// sha256_read, sha256_written (hex) and sequential. A recording error fails
// that operation, closes client and makes Serve return the error.
// Operations are forwarded first and recorded with their result, so the
// one whose recording failed may have taken effect on the target; nothing
// is forwarded after that.
//
// Serve closes client but not target; a caller that fears a hung target
// should close target when ctx ends. A clean end of the client returns nil.
func Serve(ctx context.Context, client io.ReadWriteCloser, target *sftp.Client, rec Recorder, o Options) error {
	if target == nil || rec == nil || client == nil {
		return errors.New("sftpproxy: client, target and recorder are required")
	}
	p := &proxy{target: target, rec: rec, readOnly: o.ReadOnly, now: o.Now, pending: newPendingBudget()}
	if p.now == nil {
		p.now = time.Now
	}
	var closeOnce sync.Once
	p.shutdown = func() { closeOnce.Do(func() { client.Close() }) }
	defer p.shutdown()

	// Relative paths from the client must resolve where the target would
	// resolve them: the target's working directory (the login's home).
	start, err := target.Getwd()
	if err != nil || !strings.HasPrefix(start, "/") {
		start = "/"
	}
	rs := sftp.NewRequestServer(newWire(client), sftp.Handlers{
		FileGet: p, FilePut: p, FileCmd: p, FileList: p,
	}, sftp.WithStartDirectory(start), sftp.WithRSMaxTxPacket(maxTxPacket))

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			// Closing the channel itself (not rs.Close, which waits for a
			// writer that may be blocked on this very channel) ends Serve.
			p.shutdown()
		case <-done:
		}
	}()
	err = rs.Serve()
	close(done)
	<-stopped

	if ferr := p.failure(); ferr != nil {
		return ferr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The client going away with files open (ErrUnexpectedEOF) is not an
	// error of the gateway: those closes carry transfer_error.
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return fmt.Errorf("sftpproxy: serve: %w", err)
}

// proxy implements the pkg/sftp request handlers by forwarding to target.
type proxy struct {
	target   *sftp.Client
	rec      Recorder
	readOnly bool
	now      func() time.Time
	shutdown func()

	handles atomic.Uint64
	pending *pendingBudget // reordering memory of all open files' hashes

	recMu  sync.Mutex // serialises rec and guards recErr
	failed atomic.Bool
	recErr error
}

var (
	_ sftp.FileReader           = (*proxy)(nil)
	_ sftp.OpenFileWriter       = (*proxy)(nil)
	_ sftp.PosixRenameFileCmder = (*proxy)(nil)
	_ sftp.StatVFSFileCmder     = (*proxy)(nil)
	_ sftp.LstatFileLister      = (*proxy)(nil)
	_ sftp.RealPathFileLister   = (*proxy)(nil)
	_ sftp.ReadlinkFileLister   = (*proxy)(nil)
)

// errNotRecorded is what the client sees once recording has failed; the
// real cause goes to Serve's caller only.
var errNotRecorded = &statusErr{code: sftp.ErrSSHFxFailure, msg: "operation could not be recorded; session closed"}

// errReadOnly is the refusal of a write-type operation for a read-only role.
var errReadOnly = &statusErr{code: sftp.ErrSSHFxPermissionDenied, msg: "permission denied: SFTP is read-only for this role"}

// failure returns the recording error that ended the session, if any.
func (p *proxy) failure() error {
	if !p.failed.Load() {
		return nil
	}
	p.recMu.Lock()
	defer p.recMu.Unlock()
	return p.recErr
}

// record hands op to the recorder. On the first error it marks the proxy
// failed and closes the client channel; that and every later call return
// errNotRecorded so the operation fails.
func (p *proxy) record(op map[string]string) error {
	p.recMu.Lock()
	if p.recErr != nil {
		p.recMu.Unlock()
		return errNotRecorded
	}
	err := p.rec(op)
	if err != nil {
		p.recErr = fmt.Errorf("sftpproxy: recording %s: %w", op["op"], err)
		p.failed.Store(true)
	}
	p.recMu.Unlock()
	if err != nil {
		p.shutdown()
		return errNotRecorded
	}
	return nil
}

// finish records op with the result of err and returns the error for the
// client: the forwarded error translated to an SFTP status, or
// errNotRecorded if recording failed.
func (p *proxy) finish(op map[string]string, err error) error {
	op["result"] = result(err)
	if rerr := p.record(op); rerr != nil {
		return rerr
	}
	return toStatus(err)
}

// refuse is the common start of every handler: nothing is forwarded once
// recording has failed, and write-type operations are refused (and the
// refusal recorded) for read-only roles.
func (p *proxy) refuse(op map[string]string, write bool) error {
	if p.failed.Load() {
		return errNotRecorded
	}
	if write && p.readOnly {
		return p.finish(op, errReadOnly)
	}
	return nil
}

// Fileread opens a file for reading on the target (Method "Get").
func (p *proxy) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return p.open(r)
}

// Filewrite opens a file for writing on the target (Method "Put").
func (p *proxy) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return p.open(r)
}

// OpenFile opens a file for reading and writing on the target (Method "Open").
func (p *proxy) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return p.open(r)
}

func (p *proxy) open(r *sftp.Request) (*file, error) {
	fl := r.Pflags()
	write := fl.Write || fl.Append || fl.Creat || fl.Trunc || fl.Excl
	op := map[string]string{"op": "open", "path": r.Filepath, "flags": flagString(fl)}
	if err := p.refuse(op, write); err != nil {
		return nil, err
	}
	h := strconv.FormatUint(p.handles.Add(1), 10)
	op["handle"] = h
	tf, err := p.target.OpenFile(r.Filepath, osFlags(fl))
	if rerr := p.finish(op, err); rerr != nil {
		if tf != nil {
			tf.Close()
		}
		return nil, rerr
	}
	return &file{
		p: p, f: tf, path: r.Filepath, handle: h, opened: p.now(),
		read: newStreamHash(p.pending), written: newStreamHash(p.pending),
	}, nil
}

// Filecmd forwards the commands that change the target's file system.
func (p *proxy) Filecmd(r *sftp.Request) error {
	op := map[string]string{"op": strings.ToLower(r.Method), "path": r.Filepath}
	switch r.Method {
	case "Rename":
		op["to"] = r.Target
	case "Symlink":
		// pkg/sftp puts the link's contents in Filepath and the new
		// link's path in Target.
		op["path"], op["target"] = r.Target, r.Filepath
	case "Link":
		// Filepath is the existing file, Target the new name.
		op["path"], op["target"] = r.Target, r.Filepath
	case "Setstat":
		describeSetstat(op, r)
	}
	if err := p.refuse(op, true); err != nil {
		return err
	}
	var err error
	switch r.Method {
	case "Setstat":
		err = p.setstat(r)
	case "Rename":
		err = p.target.Rename(r.Filepath, r.Target)
	case "Rmdir":
		err = p.target.RemoveDirectory(r.Filepath)
	case "Mkdir":
		err = p.target.Mkdir(r.Filepath)
	case "Link":
		err = p.target.Link(r.Filepath, r.Target)
	case "Symlink":
		err = p.target.Symlink(r.Filepath, r.Target)
	case "Remove":
		err = p.remove(r.Filepath)
	default:
		err = sftp.ErrSSHFxOpUnsupported
	}
	return p.finish(op, err)
}

// PosixRename forwards posix-rename@openssh.com, which replaces an existing
// destination; recorded as a rename with overwrite=true.
func (p *proxy) PosixRename(r *sftp.Request) error {
	op := map[string]string{"op": "rename", "path": r.Filepath, "to": r.Target, "overwrite": "true"}
	if err := p.refuse(op, true); err != nil {
		return err
	}
	return p.finish(op, p.target.PosixRename(r.Filepath, r.Target))
}

// StatVFS forwards statvfs@openssh.com (used by df in sftp).
func (p *proxy) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	op := map[string]string{"op": "statvfs", "path": r.Filepath}
	if err := p.refuse(op, false); err != nil {
		return nil, err
	}
	st, err := p.target.StatVFS(r.Filepath)
	if err := p.finish(op, err); err != nil {
		return nil, err
	}
	return st, nil
}

// remove deletes a file. sftp.Client.Remove falls back to removing a
// directory, which SSH_FXP_REMOVE must not do, so directories are refused
// here first.
func (p *proxy) remove(path string) error {
	fi, err := p.target.Lstat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &statusErr{code: sftp.ErrSSHFxFailure, msg: "remove " + safetext.Line(path) + ": is a directory"}
	}
	return p.target.Remove(path)
}

// setstat applies the attributes of a (f)setstat request one by one, as
// sftp.Client offers no call taking raw attributes.
func (p *proxy) setstat(r *sftp.Request) error {
	fl, a := r.AttrFlags(), r.Attributes()
	if a == nil {
		return &statusErr{code: sftp.ErrSSHFxBadMessage, msg: "setstat: malformed attributes"}
	}
	if fl.Size {
		if err := p.target.Truncate(r.Filepath, int64(a.Size)); err != nil {
			return err
		}
	}
	if fl.UidGid {
		if err := p.target.Chown(r.Filepath, int(a.UID), int(a.GID)); err != nil {
			return err
		}
	}
	if fl.Permissions {
		if err := p.target.Chmod(r.Filepath, a.FileMode()); err != nil {
			return err
		}
	}
	if fl.Acmodtime {
		if err := p.target.Chtimes(r.Filepath, a.AccessTime(), a.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// describeSetstat adds the requested attribute changes to op.
func describeSetstat(op map[string]string, r *sftp.Request) {
	fl, a := r.AttrFlags(), r.Attributes()
	if a == nil {
		return
	}
	if fl.Size {
		op["size"] = strconv.FormatUint(a.Size, 10)
	}
	if fl.UidGid {
		op["uid"] = strconv.FormatUint(uint64(a.UID), 10)
		op["gid"] = strconv.FormatUint(uint64(a.GID), 10)
	}
	if fl.Permissions {
		op["mode"] = fmt.Sprintf("%04o", a.Mode&0o7777)
	}
	if fl.Acmodtime {
		op["atime"] = strconv.FormatUint(uint64(a.Atime), 10)
		op["mtime"] = strconv.FormatUint(uint64(a.Mtime), 10)
	}
}

// Filelist serves directory listings and stat (also fstat, which the
// request server turns into a stat of the handle's path).
func (p *proxy) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		op := map[string]string{"op": "list", "path": r.Filepath}
		if err := p.refuse(op, false); err != nil {
			return nil, err
		}
		fis, err := p.target.ReadDir(r.Filepath)
		if err == nil {
			op["entries"] = strconv.Itoa(len(fis))
		}
		if err := p.finish(op, err); err != nil {
			return nil, err
		}
		l := make(listing, len(fis))
		for i, fi := range fis {
			l[i] = wrapInfo(fi)
		}
		return l, nil
	case "Stat":
		return p.stat("stat", r.Filepath, p.target.Stat)
	default:
		return nil, sftp.ErrSSHFxOpUnsupported
	}
}

// Lstat serves SSH_FXP_LSTAT without following a final symlink.
func (p *proxy) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	return p.stat("lstat", r.Filepath, p.target.Lstat)
}

func (p *proxy) stat(name, path string, fn func(string) (os.FileInfo, error)) (sftp.ListerAt, error) {
	op := map[string]string{"op": name, "path": path}
	if err := p.refuse(op, false); err != nil {
		return nil, err
	}
	fi, err := fn(path)
	if err := p.finish(op, err); err != nil {
		return nil, err
	}
	return listing{wrapInfo(fi)}, nil
}

// RealPath forwards canonicalisation to the target, so "." is the target
// login's home as with a direct connection.
func (p *proxy) RealPath(path string) (string, error) {
	op := map[string]string{"op": "realpath", "path": path}
	if err := p.refuse(op, false); err != nil {
		return "", err
	}
	resolved, err := p.target.RealPath(path)
	if err == nil {
		op["resolved"] = resolved
	}
	if err := p.finish(op, err); err != nil {
		return "", err
	}
	return resolved, nil
}

// Readlink returns a symlink's contents verbatim (relative or absolute).
func (p *proxy) Readlink(path string) (string, error) {
	op := map[string]string{"op": "readlink", "path": path}
	if err := p.refuse(op, false); err != nil {
		return "", err
	}
	dest, err := p.target.ReadLink(path)
	if err == nil {
		op["target"] = dest
	}
	if err := p.finish(op, err); err != nil {
		return "", err
	}
	return dest, nil
}

// file is an open target file as the request server sees it: reads and
// writes pass straight through, counted and hashed; Close records totals.
type file struct {
	p      *proxy
	f      *sftp.File
	path   string
	handle string
	opened time.Time

	read, written *streamHash

	xferMu  sync.Mutex
	xferErr error

	closeOnce sync.Once
	closeErr  error
}

// ReadAt reads from the target. It is called concurrently by the request
// server's workers.
func (f *file) ReadAt(b []byte, off int64) (int, error) {
	if f.p.failed.Load() {
		return 0, errNotRecorded
	}
	n, err := f.f.ReadAt(b, off)
	f.read.add(b[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, toStatus(err)
	}
	return n, err
}

// WriteAt writes to the target. It is called concurrently by the request
// server's workers.
func (f *file) WriteAt(b []byte, off int64) (int, error) {
	if f.p.failed.Load() {
		return 0, errNotRecorded
	}
	n, err := f.f.WriteAt(b, off)
	f.written.add(b[:n], off)
	return n, toStatus(err)
}

// TransferError notes why the session ended with this file still open.
func (f *file) TransferError(err error) {
	f.xferMu.Lock()
	defer f.xferMu.Unlock()
	f.xferErr = err
}

// Close closes the target file and records the transfer totals.
func (f *file) Close() error {
	f.closeOnce.Do(func() {
		err := f.f.Close()
		nr, hr, sr := f.read.sum()
		nw, hw, sw := f.written.sum()
		op := map[string]string{
			"op":             "close",
			"path":           f.path,
			"handle":         f.handle,
			"bytes_read":     strconv.FormatInt(nr, 10),
			"bytes_written":  strconv.FormatInt(nw, 10),
			"sha256_read":    hr,
			"sha256_written": hw,
			"sequential":     strconv.FormatBool(sr && sw),
			"duration_ms":    strconv.FormatInt(f.p.now().Sub(f.opened).Milliseconds(), 10),
		}
		f.xferMu.Lock()
		if f.xferErr != nil {
			op["transfer_error"] = f.xferErr.Error()
		}
		f.xferMu.Unlock()
		// After a recording failure this still tries, and fails quietly:
		// the session is already closed.
		f.closeErr = f.p.finish(op, err)
	})
	return f.closeErr
}

// listing is a fixed list of entries served through sftp.ListerAt.
type listing []os.FileInfo

// ListAt copies entries from offset off and reports io.EOF at the end.
func (l listing) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off < 0 || off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

// infoWithIDs passes the target's uid, gid and extended attributes on to
// the client, which the request server otherwise only takes from a
// syscall.Stat_t.
type infoWithIDs struct {
	os.FileInfo
	st *sftp.FileStat
}

func (i infoWithIDs) Uid() uint32                   { return i.st.UID }
func (i infoWithIDs) Gid() uint32                   { return i.st.GID }
func (i infoWithIDs) Extended() []sftp.StatExtended { return i.st.Extended }

func wrapInfo(fi os.FileInfo) os.FileInfo {
	if st, ok := fi.Sys().(*sftp.FileStat); ok && st != nil {
		return infoWithIDs{FileInfo: fi, st: st}
	}
	return fi
}

// statusErr carries a message for the client together with the SFTP
// status code: the request server finds the code through Unwrap.
type statusErr struct {
	code error // one of the sftp.ErrSSHFx* values
	msg  string
}

func (e *statusErr) Error() string { return e.msg }
func (e *statusErr) Unwrap() error { return e.code }

// toStatus translates an error from the target client into one the
// request server reports with the same status code the target gave;
// without it, permission denied would reach the client as a plain failure.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var se *statusErr
	if errors.As(err, &se) {
		return err
	}
	var code error = sftp.ErrSSHFxFailure
	var ts *sftp.StatusError
	switch {
	case errors.As(err, &ts):
		code = ts.FxCode()
	case errors.Is(err, os.ErrNotExist):
		code = sftp.ErrSSHFxNoSuchFile
	case errors.Is(err, os.ErrPermission):
		code = sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, io.EOF):
		code = sftp.ErrSSHFxEOF
	case errors.Is(err, sftp.ErrSSHFxOpUnsupported):
		code = sftp.ErrSSHFxOpUnsupported
	}
	return &statusErr{code: code, msg: err.Error()}
}

// result is the record's text for an operation's outcome.
func result(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// flagString names the open flags for the record.
func flagString(f sftp.FileOpenFlags) string {
	var names []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{f.Read, "read"}, {f.Write, "write"}, {f.Append, "append"},
		{f.Creat, "create"}, {f.Trunc, "truncate"}, {f.Excl, "excl"},
	} {
		if x.on {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ",")
}

// osFlags turns SFTP open flags back into os flags for sftp.Client.OpenFile,
// which maps them to the same SFTP flags again.
func osFlags(f sftp.FileOpenFlags) int {
	var fl int
	switch {
	case f.Read && f.Write:
		fl = os.O_RDWR
	case f.Write:
		fl = os.O_WRONLY
	case f.Read:
		fl = os.O_RDONLY
	case f.Append || f.Creat || f.Trunc || f.Excl:
		// The request server treats these as a write open.
		fl = os.O_WRONLY
	}
	if f.Append {
		fl |= os.O_APPEND
	}
	if f.Creat {
		fl |= os.O_CREATE
	}
	if f.Trunc {
		fl |= os.O_TRUNC
	}
	if f.Excl {
		fl |= os.O_EXCL
	}
	return fl
}
