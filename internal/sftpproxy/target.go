package sftpproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pkg/sftp"
)

const (
	fxpInit = 1
	// sftpVersion is the protocol version pkg/sftp speaks (draft 02).
	sftpVersion = 3
	// maxVersionBytes bounds the target's version packet: a handful of
	// extension names and versions.
	maxVersionBytes = 64 << 10
	// minTargetPacket is the smallest request size taken from a target's
	// limits; smaller (or unknown) values leave pkg/sftp's 32 KiB, which
	// every SFTP server must accept.
	minTargetPacket = 32 << 10
	limitsID        = 1
)

// NewTargetClient starts the SFTP client towards the target on a
// subsystem's stdout (rd) and stdin (wr). Before pkg/sftp takes over it
// does the version exchange itself, and if the target offers
// limits@openssh.com it asks for the target's read and write limits, so
// that reads and writes go to the target in requests as large as the
// target accepts (255 KiB on OpenSSH) instead of 32 KiB pieces: one
// request and one reply per client request. pkg/sftp then sees the same
// version packet as if it had asked itself (its own INIT is not sent
// again: sftp-server refuses a second one).
func NewTargetClient(rd io.Reader, wr io.WriteCloser, opts ...sftp.ClientOption) (*sftp.Client, error) {
	version, size, err := targetHandshake(rd, wr)
	if err != nil {
		wr.Close()
		return nil, err
	}
	opts = append(append([]sftp.ClientOption{}, TargetClientOptions()...), opts...)
	if size > 0 {
		opts = append(opts, sftp.MaxPacketUnchecked(size))
	}
	return sftp.NewClientPipe(io.MultiReader(bytes.NewReader(version), rd), &skipInit{w: wr}, opts...)
}

// targetHandshake sends INIT, reads the version packet and, when the
// target names limits@openssh.com, its limits. It returns the version
// packet (to replay to pkg/sftp) and the request size to use, 0 for
// pkg/sftp's default.
func targetHandshake(rd io.Reader, wr io.Writer) (version []byte, size int, err error) {
	init := binary.BigEndian.AppendUint32(nil, 5)
	init = append(init, fxpInit)
	init = binary.BigEndian.AppendUint32(init, sftpVersion)
	if _, err := wr.Write(init); err != nil {
		return nil, 0, fmt.Errorf("sftp init: %w", err)
	}
	version, err = readPacket(rd, maxVersionBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("sftp version: %w", err)
	}
	if version[4] != fxpVersion {
		return nil, 0, fmt.Errorf("sftp: the target answered INIT with packet type %d", version[4])
	}
	if !hasExtension(version[5:], limitsExt) {
		return version, 0, nil
	}
	req := packetOf(fxpExtended, binary.BigEndian.AppendUint32(nil, limitsID), sftpString(limitsExt))
	if _, err := wr.Write(req); err != nil {
		return nil, 0, fmt.Errorf("sftp limits: %w", err)
	}
	reply, err := readPacket(rd, 1024)
	if err != nil {
		return nil, 0, fmt.Errorf("sftp limits: %w", err)
	}
	if reply[4] != fxpExtendedReply || len(reply) < 9+4*8 || binary.BigEndian.Uint32(reply[5:]) != limitsID {
		// A status (unsupported after all) or anything else: the default.
		return version, 0, nil
	}
	maxPacket := binary.BigEndian.Uint64(reply[9:])
	maxRead := binary.BigEndian.Uint64(reply[17:])
	maxWrite := binary.BigEndian.Uint64(reply[25:])
	return version, requestSize(maxPacket, maxRead, maxWrite), nil
}

// requestSize is the payload of reads and writes that fits the target's
// limits and pkg/sftp's own 256 KiB message bound: the smaller of the two
// lengths, with 1 KiB of the packet limit left for a write's header (as
// OpenSSH's client does); 0 when a value is unknown (0) or below 32 KiB.
func requestSize(maxPacket, maxRead, maxWrite uint64) int {
	if maxPacket == 0 || maxRead == 0 || maxWrite == 0 || maxPacket <= 1024 {
		return 0
	}
	n := min(maxRead, maxWrite, maxPacket-1024, maxTxPacket)
	if n < minTargetPacket {
		return 0
	}
	return int(n)
}

// readPacket reads one whole packet of at most limit bytes (length
// included).
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

// hasExtension reports whether a version packet's body (after the type)
// names ext.
func hasExtension(b []byte, ext string) bool {
	if len(b) < 4 {
		return false
	}
	b = b[4:] // the version
	for len(b) > 0 {
		name, rest, ok := cutString(b)
		if !ok {
			return false
		}
		_, rest, ok = cutString(rest)
		if !ok {
			return false
		}
		if name == ext {
			return true
		}
		b = rest
	}
	return false
}

func cutString(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

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

// skipInit passes pkg/sftp's writes to the target, except its INIT, which
// targetHandshake has sent already. pkg/sftp writes it in one call; the
// type byte may come in a later call all the same.
type skipInit struct {
	w    io.WriteCloser
	done bool
	head []byte // the INIT's first bytes, until its length and type are known
	skip int64  // bytes of the INIT still to drop once they are
}

func (s *skipInit) Write(p []byte) (int, error) {
	if s.done {
		return s.w.Write(p)
	}
	n := 0
	if len(s.head) < 5 {
		take := min(5-len(s.head), len(p))
		s.head = append(s.head, p[:take]...)
		p, n = p[take:], take
		if len(s.head) < 5 {
			return n, nil
		}
		if s.head[4] != fxpInit || binary.BigEndian.Uint32(s.head) < 1 {
			return n, errors.New("sftpproxy: the client's first packet is not INIT")
		}
		s.skip = 4 + int64(binary.BigEndian.Uint32(s.head)) - 5
	}
	drop := min(int64(len(p)), s.skip)
	s.skip -= drop
	n += int(drop)
	if s.skip > 0 {
		return n, nil
	}
	s.done = true
	if rest := p[drop:]; len(rest) > 0 {
		m, err := s.w.Write(rest)
		return n + m, err
	}
	return n, nil
}

func (s *skipInit) Close() error { return s.w.Close() }
