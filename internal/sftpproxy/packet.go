package sftpproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
)

// SFTP version 3 (draft-ietf-secsh-filexfer-02) packet types, status codes,
// open flags and attribute flags, and OpenSSH's extensions
// (PROTOCOL.sftp-server in OpenSSH's sources).
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201

	fxOK               = 0
	fxEOF              = 1
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
	fxFailure          = 4
	fxBadMessage       = 5
	fxOpUnsupported    = 8

	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10
	fxfExcl   = 0x20

	attrSize        = 0x01
	attrUIDGID      = 0x02
	attrPermissions = 0x04
	attrACModTime   = 0x08
	attrExtended    = 0x80000000

	// sftpVersion is the only protocol version relayed: the one OpenSSH
	// and pkg/sftp speak, and the one whose packets the parser knows.
	sftpVersion = 3

	// maxHandleLen is the protocol's bound on a handle ("MUST NOT be
	// longer than 256 bytes"). The relay keeps each open one, so a
	// longer one from the target is refused as a bad answer.
	maxHandleLen = 256

	limitsExt      = "limits@openssh.com"
	posixRenameExt = "posix-rename@openssh.com"
	statvfsExt     = "statvfs@openssh.com"
	fstatvfsExt    = "fstatvfs@openssh.com"
	hardlinkExt    = "hardlink@openssh.com"
	fsyncExt       = "fsync@openssh.com"
	lsetstatExt    = "lsetstat@openssh.com"
)

// relayedExtensions are the target's extensions the client is told about:
// each is parsed, recorded and (where it changes anything) refused for
// read-only roles. Anything else, notably copy-data@openssh.com, which
// moves file contents the gateway would never see, is left out of the
// version packet and refused if asked for anyway.
var relayedExtensions = map[string]bool{
	posixRenameExt: true, statvfsExt: true, fstatvfsExt: true,
	hardlinkExt: true, fsyncExt: true, lsetstatExt: true,
}

// Limits. maxPacket is OpenSSH's SFTP_MAX_MSG_LENGTH: the largest packet
// (length field) sftp-server and sftp accept, and so the largest either
// side of the relay may send; a bigger one ends the session. Reads and
// writes of 255 KiB fit in it with their headers. These are what the
// relay offers in limits@openssh.com, never more than the target's own.
const (
	maxPacket      = 256 << 10
	limitMaxPacket = maxPacket
	limitMaxRead   = 255 << 10
	limitMaxWrite  = 255 << 10
)

// bufPool holds packet buffers: a packet is read into one, parsed in
// place and written on from the same bytes; WRITE packets keep theirs
// until the target has answered (their data is hashed then).
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 4+maxPacket)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// sharedBuf is a WRITE packet's buffer while two goroutines hold it: the
// client loop, until its write of the packet to the target has returned,
// and the target loop, until it has hashed the data on the target's
// answer. The answer can arrive before that write returns (the target has
// all the bytes by then, but nothing in Go orders the two), so whichever
// lets go last puts the buffer back; never both, never too early.
type sharedBuf struct {
	b    *[]byte
	refs atomic.Int32
}

func shareBuf(b *[]byte) *sharedBuf {
	s := &sharedBuf{b: b}
	s.refs.Store(2)
	return s
}

// release lets go of one hold; the last one puts the buffer back.
func (s *sharedBuf) release() {
	if s.refs.Add(-1) == 0 {
		putBuf(s.b)
	}
}

// errPacketTooLarge and errEmptyPacket mark packets that break the
// protocol: they end the session.
var (
	errPacketTooLarge = errors.New("packet too large")
	errEmptyPacket    = errors.New("empty packet")
)

// readPacketInto reads one packet (length, type, body) into a pool buffer.
// It returns the buffer and the packet without its length field. A clean
// end between packets is io.EOF; an end inside one io.ErrUnexpectedEOF.
func readPacketInto(r io.Reader) (*[]byte, []byte, error) {
	b := getBuf()
	buf := *b
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		putBuf(b)
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(buf)
	if n == 0 || n > maxPacket {
		putBuf(b)
		if n == 0 {
			return nil, nil, errEmptyPacket
		}
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", errPacketTooLarge, n, maxPacket)
	}
	if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
		putBuf(b)
		return nil, nil, unexpected(err)
	}
	return b, buf[4 : 4+n], nil
}

// readPacket reads one whole packet of at most limit bytes (length
// included) into a buffer of its own; for the handshake.
func readPacket(rd io.Reader, limit int) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(rd, l[:]); err != nil {
		return nil, unexpected(err)
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || uint64(n)+4 > uint64(limit) {
		return nil, fmt.Errorf("packet of %d bytes (at most %d)", n, limit-4)
	}
	p := make([]byte, 4+n)
	copy(p, l[:])
	if _, err := io.ReadFull(rd, p[4:]); err != nil {
		return nil, unexpected(err)
	}
	return p, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// dec takes fields off a packet without copying; the first shortfall is
// kept in err and every later field is zero.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
}

// take takes the next n bytes.
func (d *dec) take(n int, what string) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail(what)
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *dec) u32(what string) uint32 {
	if b := d.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *dec) u64(what string) uint64 {
	if b := d.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *dec) str(what string) []byte {
	n := d.u32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%s of %d bytes with %d left in the packet", what, n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

// attrs is the part of an ATTRS structure the record shows.
type attrs struct {
	flags          uint32
	size           uint64
	uid, gid, perm uint32
	atime, mtime   uint32
}

func (d *dec) attrs() attrs {
	var a attrs
	a.flags = d.u32("attribute flags")
	if a.flags&attrSize != 0 {
		a.size = d.u64("size")
	}
	if a.flags&attrUIDGID != 0 {
		a.uid, a.gid = d.u32("uid"), d.u32("gid")
	}
	if a.flags&attrPermissions != 0 {
		a.perm = d.u32("permissions")
	}
	if a.flags&attrACModTime != 0 {
		a.atime, a.mtime = d.u32("atime"), d.u32("mtime")
	}
	if a.flags&attrExtended != 0 {
		// Each pair takes at least 8 bytes, so a huge count ends at the
		// packet's end.
		for n := d.u32("extended count"); n > 0 && d.err == nil; n-- {
			d.str("extended type")
			d.str("extended data")
		}
	}
	return a
}

// request is a client packet parsed as far as the relay needs. Byte
// slices point into the packet.
type request struct {
	typ    byte
	id     uint32
	ext    string // the name of an EXTENDED request
	path   []byte // the (first) path
	path2  []byte // RENAME's and hardlink's new path, SYMLINK's link path
	handle []byte
	offset uint64
	length uint32 // READ's length
	lenAt  int    // where READ's length lies in the packet
	data   []byte // WRITE's data
	pflags uint32
	attrs  attrs
}

// parseRequest parses a client packet (type and body, without the length
// field). Unknown types and extensions parse to their type, id and name;
// the relay refuses them.
func parseRequest(p []byte) (request, error) {
	var r request
	if len(p) == 0 {
		return r, errEmptyPacket
	}
	r.typ = p[0]
	if r.typ == fxpInit {
		return r, errors.New("INIT after the start of the session")
	}
	d := dec{b: p[1:]}
	r.id = d.u32("request id")
	switch r.typ {
	case fxpOpen:
		r.path = d.str("file name")
		r.pflags = d.u32("open flags")
		r.attrs = d.attrs()
	case fxpClose, fxpFstat, fxpReaddir:
		r.handle = d.str("handle")
	case fxpRead:
		r.handle = d.str("handle")
		r.offset = d.u64("offset")
		r.lenAt = len(p) - len(d.b)
		r.length = d.u32("length")
	case fxpWrite:
		r.handle = d.str("handle")
		r.offset = d.u64("offset")
		r.data = d.str("data")
	case fxpLstat, fxpStat, fxpOpendir, fxpRemove, fxpRmdir, fxpRealpath, fxpReadlink:
		r.path = d.str("path")
	case fxpSetstat, fxpMkdir:
		r.path = d.str("path")
		r.attrs = d.attrs()
	case fxpFsetstat:
		r.handle = d.str("handle")
		r.attrs = d.attrs()
	case fxpRename:
		r.path = d.str("old path")
		r.path2 = d.str("new path")
	case fxpSymlink:
		// OpenSSH (and every client written against it) sends the link's
		// contents first and the new link's path second, the reverse of
		// the draft; sftp-server reads them that way.
		r.path = d.str("link contents")
		r.path2 = d.str("link path")
	case fxpExtended:
		r.ext = string(d.str("extended request name"))
		if d.err != nil {
			break
		}
		switch r.ext {
		case posixRenameExt, hardlinkExt:
			r.path = d.str("old path")
			r.path2 = d.str("new path")
		case statvfsExt:
			r.path = d.str("path")
		case fstatvfsExt, fsyncExt:
			r.handle = d.str("handle")
		case lsetstatExt:
			r.path = d.str("path")
			r.attrs = d.attrs()
		}
	}
	if d.err != nil {
		return r, fmt.Errorf("%s: %w", typeName(r.typ, r.ext), d.err)
	}
	return r, nil
}

// reply is a target packet parsed as far as the relay needs.
type reply struct {
	typ    byte
	id     uint32
	code   uint32 // STATUS
	msg    []byte // STATUS
	handle []byte // HANDLE
	data   []byte // DATA
	count  uint32 // NAME
	names  []byte // NAME: the entries
	name   []byte // NAME: the first entry's file name
}

// parseReply parses a target packet (type and body).
func parseReply(p []byte) (reply, error) {
	var r reply
	if len(p) == 0 {
		return r, errEmptyPacket
	}
	r.typ = p[0]
	d := dec{b: p[1:]}
	r.id = d.u32("request id")
	switch r.typ {
	case fxpStatus:
		r.code = d.u32("status code")
		// The message is optional in some old servers; when present it
		// must be whole.
		if len(d.b) > 0 {
			r.msg = d.str("status message")
		}
	case fxpHandle:
		r.handle = d.str("handle")
		if len(r.handle) > maxHandleLen {
			d.err = fmt.Errorf("handle of %d bytes, at most %d", len(r.handle), maxHandleLen)
		}
	case fxpData:
		r.data = d.str("data")
	case fxpName:
		r.count = d.u32("name count")
		r.names = d.b
		if r.count > 0 {
			r.name = d.str("file name")
		}
	case fxpAttrs, fxpExtendedReply:
	default:
		if d.err == nil {
			d.err = fmt.Errorf("unknown reply type %d", r.typ)
		}
	}
	if d.err != nil {
		return r, fmt.Errorf("reply type %d: %w", r.typ, d.err)
	}
	return r, nil
}

// typeName names a request type for errors and records.
func typeName(typ byte, ext string) string {
	switch typ {
	case fxpOpen:
		return "open"
	case fxpClose:
		return "close"
	case fxpRead:
		return "read"
	case fxpWrite:
		return "write"
	case fxpLstat:
		return "lstat"
	case fxpFstat:
		return "fstat"
	case fxpSetstat:
		return "setstat"
	case fxpFsetstat:
		return "fsetstat"
	case fxpOpendir:
		return "opendir"
	case fxpReaddir:
		return "readdir"
	case fxpRemove:
		return "remove"
	case fxpMkdir:
		return "mkdir"
	case fxpRmdir:
		return "rmdir"
	case fxpRealpath:
		return "realpath"
	case fxpStat:
		return "stat"
	case fxpRename:
		return "rename"
	case fxpReadlink:
		return "readlink"
	case fxpSymlink:
		return "symlink"
	case fxpExtended:
		return "extended request " + strconv.Quote(ext)
	}
	return "packet type " + strconv.Itoa(int(typ))
}

// statusText is the record's text for a failed status, in the form
// pkg/sftp's client used for the same status before the relay.
func statusText(code uint32, msg []byte) string {
	return fmt.Sprintf("sftp: %q (%s)", msg, codeName(code))
}

func codeName(code uint32) string {
	names := [...]string{"SSH_FX_OK", "SSH_FX_EOF", "SSH_FX_NO_SUCH_FILE", "SSH_FX_PERMISSION_DENIED",
		"SSH_FX_FAILURE", "SSH_FX_BAD_MESSAGE", "SSH_FX_NO_CONNECTION", "SSH_FX_CONNECTION_LOST",
		"SSH_FX_OP_UNSUPPORTED"}
	if int(code) < len(names) {
		return names[code]
	}
	return "SSH_FX_" + strconv.FormatUint(uint64(code), 10)
}

// Framing of the relay's own packets.

func sftpString(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// packetOf frames a packet: length, type, body parts.
func packetOf(typ byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+n), uint32(n))
	b = append(b, typ)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// statusPacket is a STATUS reply of the relay's own.
func statusPacket(id, code uint32, msg string) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	b = binary.BigEndian.AppendUint32(b, code)
	b = append(b, sftpString(msg)...)
	b = append(b, sftpString("en")...)
	return packetOf(fxpStatus, b)
}
