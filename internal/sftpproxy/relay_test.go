package sftpproxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawSession is a client that writes SFTP packets by hand to Serve.
type rawSession struct {
	c      net.Conn
	rec    *memRecorder
	served chan error
	cancel context.CancelFunc // Serve's context
	exts   []extension        // offered in the relay's VERSION
}

// newRawSession starts Serve towards target and does the client's side
// of the version exchange.
func newRawSession(t *testing.T, o Options, target io.ReadWriteCloser) *rawSession {
	t.Helper()
	uc, us := net.Pipe()
	s := &rawSession{c: uc, rec: &memRecorder{}, served: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	tg, err := Handshake(target)
	if err != nil {
		t.Fatal(err)
	}
	go func() { s.served <- Serve(ctx, us, tg, s.rec.rec, o) }()
	t.Cleanup(func() {
		cancel()
		uc.Close()
		<-s.served
	})
	s.send(t, packet(fxpInit, u32(3)))
	v := s.recvRaw(t)
	if v[4] != fxpVersion {
		t.Fatalf("answer to INIT has type %d", v[4])
	}
	if _, s.exts, err = parseVersion(v[5:]); err != nil {
		t.Fatal(err)
	}
	return s
}

// realTarget starts sftp-server in a new directory.
func realTarget(t testing.TB) (*procTarget, string) {
	t.Helper()
	requireServer(t)
	dir := t.TempDir()
	target, err := startTarget(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close(); _ = target.cmd.Wait() })
	return target, dir
}

func (s *rawSession) send(t *testing.T, p []byte) {
	t.Helper()
	_ = s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.c.Write(p); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (s *rawSession) recvRaw(t *testing.T) []byte {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := readPacket(s.c, 4+maxPacket)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return p
}

func (s *rawSession) recv(t *testing.T) reply {
	t.Helper()
	r, err := parseReply(s.recvRaw(t)[4:])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ended waits for Serve's result.
func (s *rawSession) ended(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.served:
		s.served <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not end")
		return nil
	}
}

// TestOversizePacketEndsSession: a client packet above the limit is a
// protocol error; the session ends with it, and nothing of it reaches the
// target.
func TestOversizePacketEndsSession(t *testing.T) {
	target, _ := realTarget(t)
	s := newRawSession(t, Options{}, target)
	s.send(t, u32(maxPacket+1))
	err := s.ended(t)
	if err == nil || !strings.Contains(err.Error(), "packet too large") {
		t.Fatalf("Serve returned %v, want the oversize packet", err)
	}
	_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client channel is still open")
	}
}

// TestUnsupportedRequestsRefused: extensions outside the allowlist (above
// all copy-data, whose data the gateway would never see) are not offered,
// and requests for them or for unknown packet types are refused with
// OP_UNSUPPORTED, recorded and never forwarded.
func TestUnsupportedRequestsRefused(t *testing.T) {
	target, dir := realTarget(t)
	if err := os.WriteFile(filepath.Join(dir, "src"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newRawSession(t, Options{}, target)
	for _, e := range s.exts {
		if !relayedExtensions[e.name] && e.name != limitsExt {
			t.Errorf("offered %s", e.name)
		}
	}
	// copy-data: open both files, then ask the target to copy between
	// them. The opens are relayed; the copy is not.
	s.send(t, packet(fxpOpen, u32(1), str("src"), u32(fxfRead), u32(0)))
	src := s.recv(t)
	s.send(t, packet(fxpOpen, u32(2), str("dst"), u32(fxfWrite|fxfCreat), u32(0)))
	dst := s.recv(t)
	if src.typ != fxpHandle || dst.typ != fxpHandle {
		t.Fatalf("opens answered %d, %d", src.typ, dst.typ)
	}
	s.send(t, packet(fxpExtended, u32(3), str("copy-data"), str(string(src.handle)), u64(0), u64(0),
		str(string(dst.handle)), u64(0)))
	if r := s.recv(t); r.id != 3 || r.typ != fxpStatus || r.code != fxOpUnsupported {
		t.Fatalf("copy-data answered %+v", r)
	}
	s.send(t, packet(99, u32(4), []byte("junk")))
	if r := s.recv(t); r.id != 4 || r.code != fxOpUnsupported {
		t.Fatalf("type 99 answered %+v", r)
	}
	// The target still answers: the refused requests did not reach it.
	s.send(t, packet(fxpClose, u32(5), str(string(dst.handle))))
	if r := s.recv(t); r.id != 5 || r.code != fxOK {
		t.Fatalf("close answered %+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dst")); err != nil || len(b) != 0 {
		t.Fatalf("dst holds %q (%v): the copy reached the target", b, err)
	}
	s.rec.one(t, "op", "extended", "name", "copy-data", "result", errUnsupported.msg)
	s.rec.one(t, "op", "unsupported", "type", "99", "result", errUnsupported.msg)
}

// TestLimitsAnswered: limits@openssh.com is answered by the relay with
// the target's limits capped at its own.
func TestLimitsAnswered(t *testing.T) {
	target, _ := realTarget(t)
	s := newRawSession(t, Options{}, target)
	if !hasExtension(s.exts, limitsExt) {
		t.Fatal("limits@openssh.com not offered")
	}
	s.send(t, packet(fxpExtended, u32(1), str(limitsExt)))
	p := s.recvRaw(t)
	if p[4] != fxpExtendedReply || len(p) < 9+32 || binary.BigEndian.Uint32(p[5:]) != 1 {
		t.Fatalf("limits answered % x", p)
	}
	if pkt, rd, wr := binary.BigEndian.Uint64(p[9:]), binary.BigEndian.Uint64(p[17:]), binary.BigEndian.Uint64(p[25:]); pkt > limitMaxPacket || rd > limitMaxRead || wr > limitMaxWrite || rd < 32<<10 {
		t.Fatalf("limits %d %d %d", pkt, rd, wr)
	}
}

// scriptedTarget speaks the handshake like sftp-server (no extensions,
// "." is /t) and then answers each request with answer(request), or not
// at all if that is nil.
func scriptedTarget(t *testing.T, answer func(req []byte) []byte) io.ReadWriteCloser {
	gw, tg := net.Pipe()
	go func() {
		defer tg.Close()
		if _, err := readPacket(tg, 1<<10); err != nil {
			return
		}
		if _, err := tg.Write(packet(fxpVersion, u32(3))); err != nil {
			return
		}
		for {
			p, err := readPacket(tg, 4+maxPacket)
			if err != nil {
				return
			}
			id := binary.BigEndian.Uint32(p[5:])
			a := nameReply(id, "/t")
			if id != realpathID || p[4] != fxpRealpath {
				a = answer(p)
			}
			if a == nil {
				continue
			}
			if _, err := tg.Write(a); err != nil {
				return
			}
		}
	}()
	return gw
}

// TestTargetAnswerNobodyAskedEndsSession: a target that answers a request
// id that is not outstanding is misbehaving; the session ends.
func TestTargetAnswerNobodyAskedEndsSession(t *testing.T) {
	target := scriptedTarget(t, func(req []byte) []byte {
		return packet(fxpStatus, u32(binary.BigEndian.Uint32(req[5:])+100), u32(fxOK), str(""), str(""))
	})
	s := newRawSession(t, Options{}, target)
	s.send(t, packet(fxpMkdir, u32(7), str("d"), u32(0)))
	err := s.ended(t)
	if err == nil || !strings.Contains(err.Error(), "107, which is not outstanding") {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestTargetWrongAnswerTypeEndsSession: DATA in answer to an OPEN is not
// relayed.
func TestTargetWrongAnswerTypeEndsSession(t *testing.T) {
	target := scriptedTarget(t, func(req []byte) []byte {
		return packet(fxpData, u32(binary.BigEndian.Uint32(req[5:])), str("x"))
	})
	s := newRawSession(t, Options{}, target)
	s.send(t, packet(fxpOpen, u32(7), str("f"), u32(fxfRead), u32(0)))
	if err := s.ended(t); err == nil || !strings.Contains(err.Error(), "answered open with packet type 103") {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestRecordingFailureStopsForwarding: after the recorder fails, the
// client's next requests (already on their way) do not reach the target.
func TestRecordingFailureStopsForwarding(t *testing.T) {
	target, dir := realTarget(t)
	s := newRawSession(t, Options{}, target)
	s.rec.setFail(func(op map[string]string) bool { return op["op"] == "mkdir" })
	s.send(t, packet(fxpMkdir, u32(1), str("first"), u32(0)))
	if r := s.recv(t); r.code != errNotRecorded.code || string(r.msg) != errNotRecorded.msg {
		t.Fatalf("mkdir answered %+v", r)
	}
	if err := s.ended(t); !errors.Is(err, errDiskFull) {
		t.Fatalf("Serve returned %v", err)
	}
	_ = s.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.c.Write(packet(fxpMkdir, u32(2), str("second"), u32(0)))
	if _, err := os.Stat(filepath.Join(dir, "second")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a request after the recording failure reached the target")
	}
}

// sentUntilBlocked writes packets made by next to the relay until a write
// does not complete within two seconds (the relay stopped reading), at most
// limit; it returns how many were taken.
func (s *rawSession) sentUntilBlocked(t *testing.T, limit int, next func(id uint32) []byte) int {
	t.Helper()
	for i := 0; i < limit; i++ {
		_ = s.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := s.c.Write(next(uint32(i + 10))); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write %d: %v", i, err)
			}
			return i
		}
	}
	return limit
}

// silentTarget takes every request and answers none.
func silentTarget(t *testing.T) io.ReadWriteCloser {
	return scriptedTarget(t, func([]byte) []byte { return nil })
}

// TestOutstandingRequestsBounded: a client that keeps sending while the
// target answers nothing is no longer read once the table of outstanding
// requests is full (by count, and by the WRITE buffers held), so the
// relay's memory stays bounded.
func TestOutstandingRequestsBounded(t *testing.T) {
	t.Run("requests", func(t *testing.T) {
		s := newRawSession(t, Options{}, silentTarget(t))
		n := s.sentUntilBlocked(t, 2*maxOutstanding, func(id uint32) []byte {
			return packet(fxpStat, u32(id), str("/"))
		})
		// The table's worth, plus the one read and waiting for room.
		if n != maxOutstanding+1 {
			t.Fatalf("the relay took %d requests, want %d", n, maxOutstanding+1)
		}
	})
	t.Run("write buffers", func(t *testing.T) {
		// The target opens the file and then answers nothing.
		s := newRawSession(t, Options{}, scriptedTarget(t, func(req []byte) []byte {
			if req[4] != fxpOpen {
				return nil
			}
			return packet(fxpHandle, req[5:9], str("h"))
		}))
		s.open(t, 1, "f", fxfWrite)
		n := s.sentUntilBlocked(t, 2*maxOutstanding, func(id uint32) []byte {
			return packet(fxpWrite, u32(id), str("h"), u64(0), str("x"))
		})
		held := maxHeldBytes / (4 + maxPacket)
		if n != held+1 {
			t.Fatalf("the relay took %d writes, want %d", n, held+1)
		}
	})
}

// TestReusedRequestIDEndsSession: two outstanding requests with one id
// could not be told apart; the session ends.
func TestReusedRequestIDEndsSession(t *testing.T) {
	s := newRawSession(t, Options{}, silentTarget(t))
	s.send(t, packet(fxpStat, u32(5), str("/")))
	s.send(t, packet(fxpStat, u32(5), str("/")))
	if err := s.ended(t); err == nil || !strings.Contains(err.Error(), "reused request id 5") {
		t.Fatalf("Serve returned %v", err)
	}
}

// sftpServerHandle is the handle OpenSSH's sftp-server gives the n-th
// file open at once (from 0): its index in the handle table, 4 bytes.
// Indices of closed handles are given out again, the last freed first.
func sftpServerHandle(n uint32) []byte { return str(string(u32(n))) }

// recvAll reads n answers and returns them by request id.
func (s *rawSession) recvAll(t *testing.T, n int) map[uint32]reply {
	t.Helper()
	got := make(map[uint32]reply, n)
	for range n {
		r := s.recv(t)
		got[r.id] = r
	}
	return got
}

// open opens name with pflags and returns the HANDLE answer.
func (s *rawSession) open(t *testing.T, id uint32, name string, pflags uint32) reply {
	t.Helper()
	s.send(t, packet(fxpOpen, u32(id), str(name), u32(pflags), u32(0)))
	h := s.recv(t)
	if h.typ != fxpHandle {
		t.Fatalf("open of %s answered %+v", name, h)
	}
	return h
}

// closeOpened closes the handle an OPEN was answered with and returns the
// file's close record.
func (s *rawSession) closeOpened(t *testing.T, open reply, id uint32, path string) map[string]string {
	t.Helper()
	if open.typ != fxpHandle {
		t.Fatalf("open answered %+v", open)
	}
	s.send(t, packet(fxpClose, u32(id), str(string(open.handle))))
	if r := s.recv(t); r.code != fxOK {
		t.Fatalf("close answered %+v", r)
	}
	return s.rec.one(t, "op", "close", "path", path)
}

// TestHandleNamedBeforeItsOpenIsRefused: a client that guesses the
// handle the target will give an OPEN (sftp-server's are table indices)
// and names it before the answer has come cannot read or write the file
// past the record: whatever data passed is in the file's close record,
// and the file on the target holds what the record says was written.
func TestHandleNamedBeforeItsOpenIsRefused(t *testing.T) {
	secret := []byte("the contents of a secret file")
	t.Run("read", func(t *testing.T) {
		target, dir := realTarget(t)
		if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
			t.Fatal(err)
		}
		s := newRawSession(t, Options{ReadOnly: true}, target)
		s.send(t, packet(fxpOpen, u32(1), str("secret"), u32(fxfRead), u32(0)))
		s.send(t, packet(fxpRead, u32(2), sftpServerHandle(0), u64(0), u32(4096)))
		got := s.recvAll(t, 2)
		c := s.closeOpened(t, got[1], 3, filepath.Join(dir, "secret"))
		if n := strconv.Itoa(len(got[2].data)); c["bytes_read"] != n || c["sha256_read"] != sumHex(got[2].data) {
			t.Fatalf("the client read %d bytes unseen; close record %v", len(got[2].data), c)
		}
	})
	t.Run("write", func(t *testing.T) {
		target, dir := realTarget(t)
		s := newRawSession(t, Options{}, target)
		s.send(t, packet(fxpOpen, u32(1), str("planted"), u32(fxfWrite|fxfCreat|fxfTrunc), u32(0)))
		s.send(t, packet(fxpWrite, u32(2), sftpServerHandle(0), u64(0), str(string(secret))))
		got := s.recvAll(t, 2)
		c := s.closeOpened(t, got[1], 3, filepath.Join(dir, "planted"))
		stored, err := os.ReadFile(filepath.Join(dir, "planted"))
		if err != nil {
			t.Fatal(err)
		}
		if c["bytes_written"] != strconv.Itoa(len(stored)) || c["sha256_written"] != sumHex(stored) {
			t.Fatalf("the target holds %q; close record %v", stored, c)
		}
	})
}

// TestHandleNamedBeforeItsOpenNeverForwarded: the same with a target that
// holds the OPEN's answer back until its next request, so that the READ
// on the guessed handle surely comes before it: the READ is refused, not
// forwarded.
func TestHandleNamedBeforeItsOpenNeverForwarded(t *testing.T) {
	var openID uint32
	target := scriptedTarget(t, func(req []byte) []byte {
		id := binary.BigEndian.Uint32(req[5:])
		switch req[4] {
		case fxpOpen:
			openID = id
			return nil
		case fxpRead:
			return packet(fxpData, u32(id), str("secret"))
		}
		return append(packet(fxpHandle, u32(openID), str("h")), packet(fxpAttrs, u32(id), u32(0))...)
	})
	s := newRawSession(t, Options{ReadOnly: true}, target)
	// One write: the relay's refusal of the READ comes while the STAT is
	// still to be sent (net.Pipe does not buffer).
	go func() {
		_, _ = s.c.Write(bytes.Join([][]byte{packet(fxpOpen, u32(1), str("f"), u32(fxfRead), u32(0)),
			packet(fxpRead, u32(2), str("h"), u64(0), u32(4096)), packet(fxpStat, u32(3), str("f"))}, nil))
	}()
	got := s.recvAll(t, 3)
	if r := got[2]; r.typ != fxpStatus || r.code != errBadHandle.code || string(r.msg) != errBadHandle.msg {
		t.Fatalf("read on a handle not yet open answered %+v", r)
	}
	if got[1].typ != fxpHandle || got[3].typ != fxpAttrs {
		t.Fatalf("answers %+v", got)
	}
	s.rec.one(t, "op", "read", "result", errBadHandle.msg)
}

// TestHandleNamedAfterItsCloseIsRefused: sftp-server gives a closed
// handle's index to the next open, so a client that sends CLOSE, OPEN of
// another file and READ on the old handle in one go would read the other
// file under the first one's record, closed already. The READ is refused.
func TestHandleNamedAfterItsCloseIsRefused(t *testing.T) {
	target, dir := realTarget(t)
	for name, data := range map[string]string{"cover": "harmless", "secret": "the contents of a secret file"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := newRawSession(t, Options{ReadOnly: true}, target)
	h := s.open(t, 1, "cover", fxfRead)
	s.send(t, packet(fxpClose, u32(2), str(string(h.handle))))
	s.send(t, packet(fxpOpen, u32(3), str("secret"), u32(fxfRead), u32(0)))
	s.send(t, packet(fxpRead, u32(4), str(string(h.handle)), u64(0), u32(4096)))
	got := s.recvAll(t, 3)
	c := s.closeOpened(t, got[3], 5, filepath.Join(dir, "secret"))
	if n := strconv.Itoa(len(got[4].data)); c["bytes_read"] != n || c["sha256_read"] != sumHex(got[4].data) {
		t.Fatalf("the client read %q unseen; close record %v", got[4].data, c)
	}
	if got[4].typ != fxpStatus || got[4].code != errBadHandle.code {
		t.Fatalf("read on a closed handle answered %+v", got[4])
	}
}

// TestAppendWritesHashedAsStored: sftp-server writes to a file opened
// with APPEND at its end, whatever offset a WRITE names, so the data is
// stored in the order the writes are done, not in offset order. The
// record's hash is of the bytes as stored.
func TestAppendWritesHashedAsStored(t *testing.T) {
	target, dir := realTarget(t)
	s := newRawSession(t, Options{}, target)
	open := s.open(t, 1, "log", fxfWrite|fxfCreat|fxfAppend)
	for i, w := range []struct {
		off  uint64
		data string
	}{{4, "BBBB"}, {0, "AAAA"}} {
		s.send(t, packet(fxpWrite, u32(uint32(2+i)), str(string(open.handle)), u64(w.off), str(w.data)))
		if r := s.recv(t); r.code != fxOK {
			t.Fatalf("write answered %+v", r)
		}
	}
	c := s.closeOpened(t, open, 9, filepath.Join(dir, "log"))
	stored, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if c["sha256_written"] != sumHex(stored) || c["bytes_written"] != strconv.Itoa(len(stored)) {
		t.Fatalf("the target holds %q; close record %v", stored, c)
	}
}

// TestReadOnlyRefusesHandCraftedWrites: what pkg/sftp never sends (and
// TestReadOnlyRefusesWrites therefore does not try) is refused too for a
// read-only role: every open flag that can change a file, alone or among
// unknown bits, FSETSTAT and WRITE on a handle opened for reading,
// lsetstat, extension names in another case and packet types of later
// SFTP versions. None reaches the target.
func TestReadOnlyRefusesHandCraftedWrites(t *testing.T) {
	target, dir := realTarget(t)
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newRawSession(t, Options{ReadOnly: true}, target)
	// Unknown bits alone open for reading, as sftp-server ignores them.
	h := s.open(t, 1, "keep", fxfRead|0xffffffc0)
	handle := str(string(h.handle))
	chmod := bytes.Join([][]byte{u32(attrSize | attrPermissions), u64(0), u32(0o777)}, nil)
	refused := []struct {
		name string
		pkt  []byte
		code uint32
	}{
		{"open append", packet(fxpOpen, u32(10), str("keep"), u32(fxfRead|fxfAppend), u32(0)), fxPermissionDenied},
		{"open create", packet(fxpOpen, u32(11), str("new"), u32(fxfRead|fxfCreat), u32(0)), fxPermissionDenied},
		{"open truncate", packet(fxpOpen, u32(12), str("keep"), u32(fxfRead|fxfTrunc), u32(0)), fxPermissionDenied},
		{"open excl", packet(fxpOpen, u32(13), str("new"), u32(fxfExcl|0xffffffc0), u32(0)), fxPermissionDenied},
		{"open all bits", packet(fxpOpen, u32(14), str("keep"), u32(0xffffffff), u32(0)), fxPermissionDenied},
		{"write on a read handle", packet(fxpWrite, u32(15), handle, u64(0), str("evil")), fxPermissionDenied},
		{"fsetstat", packet(fxpFsetstat, u32(16), handle, chmod), fxPermissionDenied},
		{"lsetstat", packet(fxpExtended, u32(17), str(lsetstatExt), str("keep"), chmod), fxPermissionDenied},
		{"posix-rename in capitals", packet(fxpExtended, u32(18), str("POSIX-RENAME@openssh.com"), str("keep"), str("moved")), fxOpUnsupported},
		{"hardlink with a space", packet(fxpExtended, u32(19), str(hardlinkExt+" "), str("keep"), str("hard")), fxOpUnsupported},
		{"SFTP 6 LINK", packet(21, u32(20), str("hard"), str("keep"), []byte{1}), fxOpUnsupported},
		{"SFTP 6 BLOCK", packet(22, u32(21), handle, u64(0), u64(4), u32(0)), fxOpUnsupported},
		{"a reply type", packet(fxpStatus, u32(22), u32(fxOK)), fxOpUnsupported},
	}
	for _, c := range refused {
		s.send(t, c.pkt)
		if r := s.recv(t); r.typ != fxpStatus || r.id != binary.BigEndian.Uint32(c.pkt[5:]) || r.code != c.code {
			t.Errorf("%s answered %+v, want status %d", c.name, r, c.code)
		}
	}
	s.closeOpened(t, h, 30, keep)
	if fi, err := os.Stat(keep); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 4 {
		t.Fatalf("keep changed: %v, %v", fi, err)
	}
	for _, p := range []string{"new", "moved", "hard"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a read-only session made %s", p)
		}
	}
	if got := s.rec.find("result", errReadOnly.msg); len(got) != 8 {
		t.Fatalf("%d refusals recorded, want 8: %v", len(got), got)
	}
}

// TestClientThatStopsReadingCannotHoldServe: a client that asks for a
// whole file and then reads none of the answers blocks the relay's writes
// to it; ending the context still ends Serve at once, and the file left
// open is recorded with what had passed.
func TestClientThatStopsReadingCannotHoldServe(t *testing.T) {
	target, dir := realTarget(t)
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newRawSession(t, Options{ReadOnly: true}, target)
	h := s.open(t, 1, "big", fxfRead)
	n := s.sentUntilBlocked(t, 64, func(id uint32) []byte {
		return packet(fxpRead, u32(id), str(string(h.handle)), u64(uint64(id-10)*limitMaxRead), u32(limitMaxRead))
	})
	if n == 0 {
		t.Fatal("the relay took no request")
	}
	s.cancel()
	if err := s.ended(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve returned %v", err)
	}
	if c := s.rec.one(t, "op", "close", "path", big); c["transfer_error"] == "" {
		t.Fatalf("close record %v", c)
	}
}

// TestOpenHandlesBounded: every open handle costs the relay memory (its
// path, its hashes) until it is closed, and a target may allow as many
// as its file limit or more: the relay refuses opens beyond maxHandles
// itself, before the target sees them, and tells the client so in
// limits@openssh.com.
func TestOpenHandlesBounded(t *testing.T) {
	var n atomic.Uint32
	target := scriptedTarget(t, func(req []byte) []byte {
		id := binary.BigEndian.Uint32(req[5:])
		switch req[4] {
		case fxpOpendir, fxpOpen:
			return packet(fxpHandle, u32(id), str(strconv.Itoa(int(n.Add(1)))))
		}
		return packet(fxpStatus, u32(id), u32(fxOK), str(""), str(""))
	})
	s := newRawSession(t, Options{}, target)
	long := strings.Repeat("d", 4000)
	for i := range maxHandles {
		typ := byte(fxpOpendir)
		if i%2 == 1 {
			typ = fxpOpen
		}
		s.send(t, packet(typ, u32(uint32(i)), str(long), u32(fxfRead), u32(0)))
		if r := s.recv(t); r.typ != fxpHandle {
			t.Fatalf("open %d answered %+v", i, r)
		}
	}
	s.send(t, packet(fxpOpendir, u32(maxHandles), str("d")))
	if r := s.recv(t); r.code != errTooManyHandles.code || string(r.msg) != errTooManyHandles.msg {
		t.Fatalf("open %d answered %+v", maxHandles, r)
	}
	if got := n.Load(); got != maxHandles {
		t.Fatalf("the target saw %d opens", got)
	}
	// A close makes room again.
	s.send(t, packet(fxpClose, u32(1<<20), str("1")))
	if r := s.recv(t); r.code != fxOK {
		t.Fatalf("close answered %+v", r)
	}
	s.send(t, packet(fxpOpen, u32(1<<20+1), str("f"), u32(fxfRead), u32(0)))
	if r := s.recv(t); r.typ != fxpHandle {
		t.Fatalf("open after a close answered %+v", r)
	}
}

// TestNamesThatAreNotUTF8RecordedApart: the recording stores each
// operation as JSON, which turns every byte that is not UTF-8 into
// U+FFFD, so "a\xff" and "a\xfe" would be recorded as the same name. Such
// values are recorded escaped (safetext) and named in "escaped"; valid
// names, backslashes and all, are recorded as they are.
func TestNamesThatAreNotUTF8RecordedApart(t *testing.T) {
	target, dir := realTarget(t)
	s := newRawSession(t, Options{}, target)
	names := []string{"a\xff", "a\xfe", `a\xff`}
	for i, n := range names {
		s.send(t, packet(fxpMkdir, u32(uint32(i+1)), str(n), u32(0)))
		if r := s.recv(t); r.code != fxOK {
			t.Fatalf("mkdir %q answered %+v", n, r)
		}
	}
	seen := map[string]bool{}
	for _, op := range s.rec.find("op", "mkdir") {
		raw, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]string
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		seen[back["path"]+" escaped="+back["escaped"]] = true
	}
	want := map[string]bool{
		filepath.Join(dir, `a\xff`) + " escaped=path": true,
		filepath.Join(dir, `a\xfe`) + " escaped=path": true,
		filepath.Join(dir, `a\xff`) + " escaped=":     true,
	}
	if len(seen) != len(want) {
		t.Fatalf("recorded %v, want %v", seen, want)
	}
	for k := range want {
		if !seen[k] {
			t.Fatalf("recorded %v, want %v", seen, want)
		}
	}
}

// TestDotDotAfterSymlinkRecordedAsWalked: the target walks ".." from
// where a symlink leads, not from the link's own directory, so cleaning
// "proj/../keys" to "keys" would record a file the person never read.
// ".." stays in the recorded path; "." and empty elements go.
func TestDotDotAfterSymlinkRecordedAsWalked(t *testing.T) {
	target, dir := realTarget(t)
	elsewhere := t.TempDir()
	if err := os.Mkdir(filepath.Join(elsewhere, "proj"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "keys"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys"), []byte("harmless"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "proj"), filepath.Join(dir, "proj")); err != nil {
		t.Fatal(err)
	}
	s := newRawSession(t, Options{ReadOnly: true}, target)
	h := s.open(t, 1, "./proj//../keys", fxfRead)
	s.send(t, packet(fxpRead, u32(2), str(string(h.handle)), u64(0), u32(100)))
	if r := s.recv(t); string(r.data) != "secret" {
		t.Fatalf("read answered %+v", r)
	}
	s.closeOpened(t, h, 3, dir+"/proj/../keys")
}

// TestClientVersionExchange: a client that claims a later SFTP version is
// answered with version 3, whose packets the relay parses as the target
// does; an earlier version, a request before INIT and a second INIT end
// the session, and nothing of them reaches the target.
func TestClientVersionExchange(t *testing.T) {
	for _, c := range []struct {
		name    string
		first   []byte
		then    []byte // sent after the relay's VERSION, if any
		wantErr string
	}{
		{"version 6", packet(fxpInit, u32(6)), nil, ""},
		{"version 2", packet(fxpInit, u32(2)), nil, "version 2"},
		{"request before INIT", packet(fxpMkdir, u32(1), str("d"), u32(0)), nil, "not INIT"},
		{"second INIT", packet(fxpInit, u32(3)), packet(fxpInit, u32(3)), "INIT after the start"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var reached atomic.Int32
			target := scriptedTarget(t, func([]byte) []byte { reached.Add(1); return nil })
			tg, err := Handshake(target)
			if err != nil {
				t.Fatal(err)
			}
			uc, us := net.Pipe()
			defer uc.Close()
			served := make(chan error, 1)
			go func() { served <- Serve(context.Background(), us, tg, (&memRecorder{}).rec, Options{}) }()
			_ = uc.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { _, _ = uc.Write(append(c.first, c.then...)) }()
			if c.wantErr == "" || c.then != nil {
				p, err := readPacket(uc, 4+maxPacket)
				if err != nil || p[4] != fxpVersion || binary.BigEndian.Uint32(p[5:]) != sftpVersion {
					t.Fatalf("INIT answered % x, %v", p, err)
				}
			}
			if c.wantErr == "" {
				uc.Close()
			}
			err = <-served
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Serve returned %v, want %q", err, c.wantErr)
			}
			if n := reached.Load(); n != 0 {
				t.Fatalf("%d requests reached the target", n)
			}
		})
	}
}

// TestTargetLongHandleEndsSession: the relay keeps every open handle's
// string until it is closed; the protocol has a target's handles at most
// 256 bytes, and a longer one (maxHandles of them would be 256 MiB of a
// hostile target's choosing) is misbehaviour that ends the session.
func TestTargetLongHandleEndsSession(t *testing.T) {
	target := scriptedTarget(t, func(req []byte) []byte {
		return packet(fxpHandle, req[5:9], str(strings.Repeat("h", maxHandleLen+1)))
	})
	s := newRawSession(t, Options{}, target)
	s.send(t, packet(fxpOpendir, u32(1), str("d")))
	if err := s.ended(t); err == nil || !strings.Contains(err.Error(), "handle of 257 bytes") {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestLongPathsRefused: a request waiting for its answer keeps its paths
// (in its record), so a client that sends requests with paths of packet
// size and reads no answers, to a target that gives none, would hold 256
// of them. No file system takes paths that long: the relay refuses paths
// above maxPathLen itself, so what waits stays small.
func TestLongPathsRefused(t *testing.T) {
	s := newRawSession(t, Options{}, silentTarget(t))
	long := strings.Repeat("p", 250<<10)
	n := s.sentUntilBlocked(t, 2*maxOutstanding, func(id uint32) []byte {
		return packet(fxpRename, u32(id), str(long[:len(long)/2]), str(long[len(long)/2:]))
	})
	if held := n * len(long); held > 1<<20 {
		t.Fatalf("the relay took %d requests, %d bytes of paths", n, held)
	}
}

// TestLongPathRefusalRecorded: the refusal is recorded with the path's
// length, not the path, and the target does not see the request.
func TestLongPathRefusalRecorded(t *testing.T) {
	target, _ := realTarget(t)
	s := newRawSession(t, Options{}, target)
	s.send(t, packet(fxpSymlink, u32(1), str(strings.Repeat("x", maxPathLen+1)), str("l")))
	if r := s.recv(t); r.code != errPathTooLong.code || string(r.msg) != errPathTooLong.msg {
		t.Fatalf("symlink answered %+v", r)
	}
	s.rec.one(t, "op", "symlink", "path_bytes", strconv.Itoa(maxPathLen+1), "result", errPathTooLong.msg)
}

// TestLongExtensionNameRecordedByLength: the recording takes operations
// of at most 64 KiB and fails the session on a bigger one; an unknown
// extension's name of packet size is refused and recorded by its length,
// so that a client cannot make its refusal a recording failure.
func TestLongExtensionNameRecordedByLength(t *testing.T) {
	s := newRawSession(t, Options{}, silentTarget(t))
	name := strings.Repeat("\x01", 200<<10)
	s.send(t, packet(fxpExtended, u32(1), str(name)))
	if r := s.recv(t); r.code != fxOpUnsupported {
		t.Fatalf("extension answered %+v", r)
	}
	op := s.rec.one(t, "op", "extended", "name_bytes", strconv.Itoa(len(name)))
	if raw, err := json.Marshal(op); err != nil || len(raw) > 64<<10 {
		t.Fatalf("recorded %d bytes (%v)", len(raw), err)
	}
}

// TestLongestPathsFitTheRecording: a rename of two paths of the longest
// length taken, all control characters, still fits the recording's
// 64 KiB for an operation.
func TestLongestPathsFitTheRecording(t *testing.T) {
	target := scriptedTarget(t, func(req []byte) []byte {
		return packet(fxpStatus, req[5:9], u32(fxBadMessage), str("too long"), str(""))
	})
	s := newRawSession(t, Options{}, target)
	p := strings.Repeat("\x01", maxPathLen)
	s.send(t, packet(fxpRename, u32(1), str(p), str(p)))
	if r := s.recv(t); r.code != fxBadMessage {
		t.Fatalf("rename answered %+v", r)
	}
	op := s.rec.one(t, "op", "rename")
	if raw, err := json.Marshal(op); err != nil || len(raw) > 64<<10 {
		t.Fatalf("recorded %d bytes (%v)", len(raw), err)
	}
}
