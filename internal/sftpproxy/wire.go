package sftpproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// SFTP packet types and the extension the wire answers itself
// (draft-ietf-secsh-filexfer-02; OpenSSH's PROTOCOL.sftp-server, section
// 4.8 "limits@openssh.com").
const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201

	limitsExt = "limits@openssh.com"
)

// Limits advertised to the client. Without them OpenSSH's sftp (8.7 and
// later) falls back to 32 KiB requests against the gateway while it uses
// 255 KiB against a target's sftp-server that advertises them, which made
// every transfer through the gateway eight times as many requests as the
// direct one. The values are OpenSSH's own: a 256 KiB message, reads and
// writes of 255 KiB (what Serve answers with maxTxPacket, and what the
// request server's 256 KiB message limit accepts with the write's header).
const (
	limitMaxPacket = 256 << 10
	limitMaxRead   = maxTxPacket
	limitMaxWrite  = maxTxPacket
	// limitExtendedBytes bounds an extended request the wire reads whole
	// to look at its name; larger ones pass through to the request server
	// untouched (it answers them as unsupported).
	limitExtendedBytes = 4 << 10
)

// wire is the client channel as the request server sees it. It passes
// every packet through unchanged, except that it
//
//   - adds limits@openssh.com to the server's version packet and answers
//     that extension's request itself (the request server has no way to
//     offer it), and
//   - hands the request server's packets to the channel whole: pkg/sftp
//     writes a header and a payload in two calls, and a reply of the wire
//     must not land between them.
//
// Data is not copied: packet bodies are read straight into the request
// server's buffer, and its payloads are written straight to the channel.
type wire struct {
	rw io.ReadWriteCloser

	// Reading: only the request server's receiving goroutine calls Read.
	head      []byte // bytes of the current packet read ahead, not yet handed over
	headBuf   [limitExtendedBytes + 5]byte
	remaining int64 // body bytes of the current packet still to pass through

	// Writing: every Write and every reply of the wire, under wmu.
	wmu      sync.Mutex
	pending  []byte // a header whose payload has not been written yet
	need     int64  // payload bytes that pending still waits for
	versions int    // version packets seen (the first one gets the extension)
}

func newWire(rw io.ReadWriteCloser) *wire { return &wire{rw: rw} }

// Close closes the channel.
func (w *wire) Close() error { return w.rw.Close() }

// Read hands the request server the client's packets.
func (w *wire) Read(p []byte) (int, error) {
	for {
		if len(w.head) > 0 {
			n := copy(p, w.head)
			w.head = w.head[n:]
			return n, nil
		}
		if w.remaining > 0 {
			if int64(len(p)) > w.remaining {
				p = p[:w.remaining]
			}
			n, err := w.rw.Read(p)
			w.remaining -= int64(n)
			if err == io.EOF && w.remaining > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		// Either the next packet's start is in head now, or the wire
		// answered it itself and reads on.
		if err := w.nextPacket(); err != nil {
			return 0, err
		}
	}
}

// nextPacket reads the next packet's length and type (and, for a small
// extended request, its body). It answers a limits@openssh.com request
// itself; anything else it sets up to be handed over (head, remaining).
func (w *wire) nextPacket() error {
	buf := w.headBuf[:]
	if _, err := io.ReadFull(w.rw, buf[:4]); err != nil {
		return err
	}
	length := int64(binary.BigEndian.Uint32(buf[:4]))
	if length == 0 {
		// The request server refuses it; there is no type to read.
		w.head = buf[:4]
		return nil
	}
	if _, err := io.ReadFull(w.rw, buf[4:5]); err != nil {
		return unexpected(err)
	}
	if buf[4] != fxpExtended || length > limitExtendedBytes {
		w.head, w.remaining = buf[:5], length-1
		return nil
	}
	body := buf[5 : 4+length]
	if _, err := io.ReadFull(w.rw, body); err != nil {
		return unexpected(err)
	}
	id, name, ok := extendedName(body)
	if !ok || name != limitsExt {
		w.head = buf[:4+length]
		return nil
	}
	return w.reply(limitsReply(id))
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// extendedName parses the id and request name of an extended request's
// body (after the type byte).
func extendedName(b []byte) (id uint32, name string, ok bool) {
	if len(b) < 8 {
		return 0, "", false
	}
	id = binary.BigEndian.Uint32(b)
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(n) > uint64(len(b)-8) {
		return 0, "", false
	}
	return id, string(b[8 : 8+n]), true
}

// limitsReply is the SSH_FXP_EXTENDED_REPLY to limits@openssh.com: four
// uint64, the last (open handles) 0 for "no limit announced".
func limitsReply(id uint32) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+4*8), id)
	for _, v := range []uint64{limitMaxPacket, limitMaxRead, limitMaxWrite, 0} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return packetOf(fxpExtendedReply, b)
}

// reply writes one whole packet of the wire's own.
func (w *wire) reply(pkt []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_, err := w.rw.Write(pkt)
	return err
}

// Write takes the request server's packets. A packet that comes whole is
// written at once; a header is held until its payload comes, and both
// are then written together under the lock, so nothing of the wire's own
// gets between them.
func (w *wire) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.need > 0 {
		if int64(len(p)) > w.need {
			return 0, errors.New("sftpproxy: request server wrote past its packet")
		}
		if int64(len(p)) < w.need {
			// Not seen from pkg/sftp, which writes a payload in one call;
			// kept correct by holding on to it.
			w.pending = append(w.pending, p...)
			w.need -= int64(len(p))
			return len(p), nil
		}
		w.need = 0
		if _, err := w.rw.Write(w.pending); err != nil {
			return 0, err
		}
		w.pending = w.pending[:0]
		return w.rw.Write(p)
	}
	if len(p) < 4 {
		return 0, errors.New("sftpproxy: request server wrote a short packet header")
	}
	total := 4 + int64(binary.BigEndian.Uint32(p))
	switch {
	case int64(len(p)) == total:
		if len(p) > 4 && p[4] == fxpVersion && w.versions == 0 {
			w.versions++
			_, err := w.rw.Write(withLimitsExtension(p))
			return len(p), err
		}
		return w.rw.Write(p)
	case int64(len(p)) < total:
		w.pending = append(w.pending[:0], p...)
		w.need = total - int64(len(p))
		return len(p), nil
	default:
		return 0, errors.New("sftpproxy: request server wrote more than one packet at once")
	}
}

// withLimitsExtension appends limits@openssh.com (version "1") to the
// extensions of a version packet.
func withLimitsExtension(p []byte) []byte {
	b := make([]byte, 0, len(p)+8+len(limitsExt)+1)
	b = append(b, p...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(limitsExt)))
	b = append(b, limitsExt...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, '1')
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}
