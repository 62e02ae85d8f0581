// Package proxyproto reads the binary header of the PROXY protocol,
// version 2 (HAProxy's proxy-protocol.txt, section 2.2), that a load
// balancer in TCP mode sends ahead of a client's bytes, so the gateway
// learns the client's address instead of the balancer's.
//
// Only version 2 is read, strictly: the text form of version 1 has no
// length prefix and is refused. The header is read with exact reads (its
// length field says how many bytes follow), never through a buffer, so no
// byte of the SSH stream behind it is consumed; and the length is bounded.
// Whether a connection may carry a header at all is the caller's decision
// (only configured load balancers may); Sniff lets it recognise a header
// sent by anyone else.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Signature is the 12 bytes every version 2 header starts with. It cannot
// start an SSH version line ("SSH-") or anything a conforming client sends.
const Signature = "\r\n\r\n\x00\r\nQUIT\n"

// v1Prefix starts a version 1 (text) header.
const v1Prefix = "PROXY "

// MaxLength bounds the bytes after the fixed 16-byte part that Read
// accepts: the addresses (at most 36 bytes for TCP over IPv6) and TLVs.
// HAProxy in TCP mode sends a few TLVs at most; a header longer than this
// is refused rather than read.
const MaxLength = 512

const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famTCP4 = 0x11 // AF_INET, SOCK_STREAM
	famTCP6 = 0x21 // AF_INET6, SOCK_STREAM

	lenTCP4 = 12 // two IPv4 addresses, two ports
	lenTCP6 = 36 // two IPv6 addresses, two ports
)

// Header is what a version 2 header says about a connection.
type Header struct {
	// Local is the LOCAL command: the balancer speaks for itself (a
	// health check); Source and Destination are then unset and the
	// connection's own endpoints apply.
	Local bool
	// Source is the client's address and port, Destination the address
	// the client connected to (the balancer's front end).
	Source, Destination netip.AddrPort
}

// ErrNotProxy means the connection did not start with the version 2
// signature: no header was sent (or a version 1 text header, which is
// refused).
var ErrNotProxy = errors.New("no PROXY protocol v2 header")

// Read reads one version 2 header from r with exact reads and returns it.
// It consumes exactly the header's bytes: what follows stays in r. The
// caller bounds the time (a read deadline on the connection).
func Read(r io.Reader) (Header, error) {
	var fixed [16]byte
	// Read what has come, never past the fixed part, and give up as soon
	// as the bytes cannot start a header: a client that sends a short
	// version line ("SSH-2.0-Go\r\n" is 12 bytes) and then waits for the
	// server's must be refused at once, not at the deadline.
	for have := 0; have < len(fixed); {
		n, err := r.Read(fixed[have:])
		have += n
		if k := min(have, len(Signature)); string(fixed[:k]) != Signature[:k] {
			_, err := checkFixed(fixed[:])
			return Header{}, err
		}
		if err != nil && have < len(fixed) {
			if have > 0 && errors.Is(err, io.EOF) {
				return Header{}, fmt.Errorf("PROXY protocol header cut short: %w", io.ErrUnexpectedEOF)
			}
			return Header{}, err
		}
	}
	n, err := checkFixed(fixed[:])
	if err != nil {
		return Header{}, err
	}
	buf := make([]byte, 16+n)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return Header{}, fmt.Errorf("PROXY protocol header cut short: %w", err)
	}
	h, used, err := Parse(buf)
	if err != nil {
		return Header{}, err
	}
	if used != len(buf) { // Parse reads exactly the length given
		return Header{}, errors.New("PROXY protocol header: length mismatch")
	}
	return h, nil
}

// checkFixed checks the signature, version and length of the 16-byte
// fixed part and returns the length of what follows.
func checkFixed(b []byte) (int, error) {
	if !bytes.Equal(b[:12], []byte(Signature)) {
		if bytes.HasPrefix(b, []byte(v1Prefix)) {
			return 0, fmt.Errorf("%w: a version 1 (text) header; configure the balancer to send version 2 (HAProxy: send-proxy-v2)", ErrNotProxy)
		}
		return 0, ErrNotProxy
	}
	if v := b[12] >> 4; v != 2 {
		return 0, fmt.Errorf("PROXY protocol header: version %d, want 2", v)
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if n > MaxLength {
		return 0, fmt.Errorf("PROXY protocol header: %d bytes of addresses and TLVs, more than the %d accepted", n, MaxLength)
	}
	return n, nil
}

// Parse parses one complete version 2 header at the start of b and
// returns it with the number of bytes it took. It is the pure part of
// Read, for tests and fuzzing.
func Parse(b []byte) (Header, int, error) {
	if len(b) < 16 {
		if bytes.HasPrefix([]byte(Signature), b) {
			return Header{}, 0, errors.New("PROXY protocol header cut short")
		}
		return Header{}, 0, ErrNotProxy
	}
	n, err := checkFixed(b[:16])
	if err != nil {
		return Header{}, 0, err
	}
	if len(b) < 16+n {
		return Header{}, 0, errors.New("PROXY protocol header cut short")
	}
	body := b[16 : 16+n]
	var h Header
	switch cmd := b[12] & 0x0f; cmd {
	case cmdLocal:
		// The addresses, if any, say nothing about a client: ignored, as
		// the specification asks. The TLVs are checked all the same.
		h.Local = true
		body = nil
	case cmdProxy:
		var addrLen int
		switch fam := b[13]; fam {
		case famTCP4:
			addrLen = lenTCP4
		case famTCP6:
			addrLen = lenTCP6
		default:
			return Header{}, 0, fmt.Errorf("PROXY protocol header: address family and protocol 0x%02x; only TCP over IPv4 (0x11) or IPv6 (0x21) is accepted", fam)
		}
		if len(body) < addrLen {
			return Header{}, 0, fmt.Errorf("PROXY protocol header: %d bytes, too short for its addresses (%d)", len(body), addrLen)
		}
		a := body[:addrLen]
		body = body[addrLen:]
		if addrLen == lenTCP4 {
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
		} else {
			// An IPv4-mapped IPv6 address is the IPv4 client it maps:
			// rate limits and the audit log see one form per client.
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])).Unmap(), binary.BigEndian.Uint16(a[32:34]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])).Unmap(), binary.BigEndian.Uint16(a[34:36]))
		}
		if !h.Source.Addr().IsValid() || h.Source.Addr().IsUnspecified() {
			return Header{}, 0, errors.New("PROXY protocol header: unspecified source address")
		}
	default:
		return Header{}, 0, fmt.Errorf("PROXY protocol header: unknown command 0x%x", cmd)
	}
	if err := checkTLVs(body); err != nil {
		return Header{}, 0, err
	}
	return h, 16 + n, nil
}

// checkTLVs checks that the bytes after the addresses are whole TLVs
// (type, 16-bit length, value). Their content is not used.
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return errors.New("PROXY protocol header: a TLV cut short")
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return fmt.Errorf("PROXY protocol header: TLV 0x%02x of %d bytes runs past the header", b[0], n)
		}
		b = b[3+n:]
	}
	return nil
}

// Encode writes h as a version 2 header: PROXY with TCP over IPv4 when
// both addresses are IPv4, over IPv6 otherwise; LOCAL when h.Local. Tests
// use it to play a load balancer (or to forge one).
func Encode(h Header) []byte {
	b := []byte(Signature)
	if h.Local {
		return append(b, 0x20|cmdLocal, 0x00, 0, 0)
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if src.Is4() && dst.Is4() {
		b = append(b, 0x20|cmdProxy, famTCP4, 0, lenTCP4)
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
	} else {
		b = append(b, 0x20|cmdProxy, famTCP6, 0, lenTCP6)
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}

// Sniff looks at the first bytes of a connection, as many as have come
// (up to 12 are needed), and reports whether they start a PROXY protocol
// header of either version (header), and whether that is already known
// (decided). An SSH client's first bytes ("SSH-") decide at once.
func Sniff(first []byte) (header, decided bool) {
	for _, p := range []string{Signature, v1Prefix} {
		k := min(len(first), len(p))
		if string(first[:k]) != p[:k] {
			continue // not this one
		}
		if k == len(p) {
			return true, true
		}
		return false, false // could still become this one
	}
	return false, true
}
