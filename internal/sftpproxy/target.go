package sftpproxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

const (
	// maxVersionBytes bounds the version packets of both sides: a handful
	// of extension names and versions.
	maxVersionBytes = 64 << 10
	// Request ids of the relay's own requests during the handshake, before
	// any of the client's is relayed.
	limitsID   = 1
	realpathID = 2
)

// extension is one name/data pair of a version packet.
type extension struct{ name, data string }

// limits are the four values of a limits@openssh.com reply.
type limits struct{ packet, read, write, handles uint64 }

// targetInfo is what the handshake learnt from the target.
type targetInfo struct {
	exts   []extension // the target's extensions, in its order
	limits *limits     // nil when the target offers none
	start  string      // the target's working directory ("/" if unknown)
}

// targetHandshake sends INIT (version 3), reads the target's VERSION, asks
// for its limits if it offers limits@openssh.com, and asks where "." is:
// relative paths from the client are recorded resolved against it, as
// the target resolves them.
func targetHandshake(rd io.Reader, wr io.Writer) (targetInfo, error) {
	var ti targetInfo
	init := packetOf(fxpInit, binary.BigEndian.AppendUint32(nil, sftpVersion))
	if _, err := wr.Write(init); err != nil {
		return ti, fmt.Errorf("sftp init: %w", err)
	}
	version, err := readPacket(rd, maxVersionBytes)
	if err != nil {
		return ti, fmt.Errorf("sftp version: %w", err)
	}
	if version[4] != fxpVersion {
		return ti, fmt.Errorf("sftp: the target answered INIT with packet type %d", version[4])
	}
	v, exts, err := parseVersion(version[5:])
	if err != nil {
		return ti, fmt.Errorf("sftp version: %w", err)
	}
	if v != sftpVersion {
		return ti, fmt.Errorf("sftp: the target speaks version %d, only %d is relayed", v, sftpVersion)
	}
	ti.exts = exts
	if hasExtension(exts, limitsExt) {
		req := packetOf(fxpExtended, binary.BigEndian.AppendUint32(nil, limitsID), sftpString(limitsExt))
		if _, err := wr.Write(req); err != nil {
			return ti, fmt.Errorf("sftp limits: %w", err)
		}
		reply, err := readPacket(rd, 1024)
		if err != nil {
			return ti, fmt.Errorf("sftp limits: %w", err)
		}
		d := dec{b: reply[5:]}
		if id := d.u32("request id"); d.err == nil && id != limitsID {
			return ti, fmt.Errorf("sftp limits: the target answered request %d", id)
		}
		if reply[4] == fxpExtendedReply {
			l := limits{d.u64("max packet"), d.u64("max read"), d.u64("max write"), d.u64("max handles")}
			if d.err != nil {
				return ti, fmt.Errorf("sftp limits: %w", d.err)
			}
			ti.limits = &l
		}
		// A status (unsupported after all): no limits offered.
	}
	req := packetOf(fxpRealpath, binary.BigEndian.AppendUint32(nil, realpathID), sftpString("."))
	if _, err := wr.Write(req); err != nil {
		return ti, fmt.Errorf("sftp realpath: %w", err)
	}
	p, err := readPacket(rd, 4+maxPacket)
	if err != nil {
		return ti, fmt.Errorf("sftp realpath: %w", err)
	}
	rep, err := parseReply(p[4:])
	if err != nil {
		return ti, fmt.Errorf("sftp realpath: %w", err)
	}
	if rep.id != realpathID {
		return ti, fmt.Errorf("sftp realpath: the target answered request %d", rep.id)
	}
	if len(rep.name) > maxPathLen {
		return ti, fmt.Errorf("sftp realpath: the start directory is %d bytes long, at most %d", len(rep.name), maxPathLen)
	}
	ti.start = "/"
	if rep.typ == fxpName && rep.count > 0 && strings.HasPrefix(string(rep.name), "/") {
		ti.start = string(rep.name)
	}
	return ti, nil
}

// parseVersion parses an INIT's or VERSION's body (after the type): the
// version and the extension pairs.
func parseVersion(b []byte) (uint32, []extension, error) {
	d := dec{b: b}
	v := d.u32("version")
	var exts []extension
	for d.err == nil && len(d.b) > 0 {
		name := d.str("extension name")
		data := d.str("extension data")
		exts = append(exts, extension{string(name), string(data)})
	}
	return v, exts, d.err
}

func hasExtension(exts []extension, name string) bool {
	for _, e := range exts {
		if e.name == name {
			return true
		}
	}
	return false
}

// clientVersion is the VERSION the client gets: version 3 with the
// target's extensions the relay understands and records, and
// limits@openssh.com (answered by the relay) if the target has limits.
func clientVersion(ti targetInfo) []byte {
	b := binary.BigEndian.AppendUint32(nil, sftpVersion)
	for _, e := range ti.exts {
		if relayedExtensions[e.name] {
			b = append(b, sftpString(e.name)...)
			b = append(b, sftpString(e.data)...)
		}
	}
	if ti.limits != nil {
		b = append(b, sftpString(limitsExt)...)
		b = append(b, sftpString("1")...)
	}
	return packetOf(fxpVersion, b)
}

// limitsReply answers the client's limits@openssh.com: the smaller of the
// target's value and the relay's for each length (0, "not stated", stays
// 0: the client then keeps its defaults, as it would with the target),
// and the smaller of the target's open-handle limit and the relay's
// (which holds when the target states none).
func limitsReply(id uint32, t limits) []byte {
	lower := func(v, ours uint64) uint64 {
		if v == 0 || v > ours {
			if v == 0 {
				return 0
			}
			return ours
		}
		return v
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+4*8), id)
	handles := min(t.handles, maxHandles)
	if t.handles == 0 {
		handles = maxHandles
	}
	for _, v := range []uint64{lower(t.packet, limitMaxPacket), lower(t.read, limitMaxRead), lower(t.write, limitMaxWrite), handles} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return packetOf(fxpExtendedReply, b)
}
