package sftpproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
)

// pipeEnd is the client channel as the wire sees it: reads come from in,
// writes go to out.
type pipeEnd struct {
	in  io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *pipeEnd) Read(b []byte) (int, error) { return p.in.Read(b) }
func (p *pipeEnd) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}
func (p *pipeEnd) Close() error { return nil }

func packet(typ byte, body ...[]byte) []byte { return packetOf(typ, body...) }
func u32(v uint32) []byte                    { return binary.BigEndian.AppendUint32(nil, v) }
func str(s string) []byte                    { return sftpString(s) }

// limitsRequest is OpenSSH's limits@openssh.com request with id.
func limitsRequest(id uint32) []byte { return packet(fxpExtended, u32(id), str(limitsExt)) }

// TestWireAnswersLimits: the wire answers limits@openssh.com itself with
// OpenSSH's values and hands every other packet to the request server
// byte for byte, including other extended requests and large packets.
func TestWireAnswersLimits(t *testing.T) {
	other := packet(fxpExtended, u32(8), str("statvfs@openssh.com"), str("/"))
	write := packet(6, u32(9), str("1"), make([]byte, 8), str(string(bytes.Repeat([]byte("x"), 100_000))))
	var in []byte
	in = append(in, limitsRequest(7)...)
	in = append(in, other...)
	in = append(in, write...)
	in = append(in, limitsRequest(10)...)
	end := &pipeEnd{in: bytes.NewReader(in)}
	w := newWire(end)
	got, err := io.ReadAll(w)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte{}, other...), write...); !bytes.Equal(got, want) {
		t.Fatalf("the request server got %d bytes, want the %d of the other packets", len(got), len(want))
	}
	want := append(limitsReply(7), limitsReply(10)...)
	if !bytes.Equal(end.out.Bytes(), want) {
		t.Fatalf("replies % x, want % x", end.out.Bytes(), want)
	}
	r := limitsReply(7)
	if binary.BigEndian.Uint32(r) != uint32(len(r)-4) || r[4] != fxpExtendedReply || binary.BigEndian.Uint32(r[5:]) != 7 {
		t.Fatalf("reply header % x", r[:9])
	}
	for i, want := range []uint64{256 << 10, 255 << 10, 255 << 10, 0} {
		if v := binary.BigEndian.Uint64(r[9+8*i:]); v != want {
			t.Errorf("limit %d = %d, want %d", i, v, want)
		}
	}
}

// TestWireCutPacket: a stream that ends inside a packet is an unexpected
// end, not a clean one.
func TestWireCutPacket(t *testing.T) {
	for _, in := range [][]byte{
		limitsRequest(1)[:10],
		packet(5, make([]byte, 40))[:20],
		{0, 0, 0, 9},
	} {
		w := newWire(&pipeEnd{in: bytes.NewReader(in)})
		_, err := io.ReadAll(w)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("% x: err %v, want unexpected EOF", in, err)
		}
	}
}

// TestWireWritesPacketsWhole: the version packet gains the extension; a
// header and its payload reach the channel together, and a reply of the
// wire made between the two lands after the payload.
func TestWireWritesPacketsWhole(t *testing.T) {
	limits := limitsRequest(3)
	pr, pw := io.Pipe()
	end := &pipeEnd{in: pr}
	w := newWire(end)

	version := packet(fxpVersion, u32(3), str("posix-rename@openssh.com"), str("1"))
	if n, err := w.Write(version); err != nil || n != len(version) {
		t.Fatalf("write version: %d, %v", n, err)
	}
	wantVersion := packet(fxpVersion, u32(3), str("posix-rename@openssh.com"), str("1"), str(limitsExt), str("1"))
	if !bytes.Equal(end.out.Bytes(), wantVersion) {
		t.Fatalf("version packet % x, want % x", end.out.Bytes(), wantVersion)
	}
	end.out.Reset()

	payload := bytes.Repeat([]byte{0xab}, 1000)
	full := packet(103, u32(5), u32(uint32(len(payload))), payload)
	header := full[:len(full)-len(payload)]
	if _, err := w.Write(header); err != nil {
		t.Fatal(err)
	}
	// The client's limits request arrives now; Read answers it and then
	// waits for the next packet.
	read := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 16))
		read <- err
	}()
	if _, err := pw.Write(limits); err != nil {
		t.Fatal(err)
	}
	// Wait until the reply is out or held: the reply takes the write
	// lock, so after Write below returns it has happened either way.
	if _, err := w.Write(payload); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-read; !errors.Is(err, io.EOF) {
		t.Fatalf("read after the limits request: %v", err)
	}
	out := end.out.Bytes()
	reply := limitsReply(3)
	switch {
	case bytes.Equal(out, append(append([]byte{}, full...), reply...)):
	case bytes.Equal(out, append(append([]byte{}, reply...), full...)):
	default:
		t.Fatalf("channel got % x…; want the whole packet and the reply, one after the other", out[:min(len(out), 32)])
	}
	// A second version packet (there is none in SFTP) is left alone.
	end.out.Reset()
	if _, err := w.Write(version); err != nil || !bytes.Equal(end.out.Bytes(), version) {
		t.Fatalf("second version packet changed: %v", err)
	}
}

// FuzzWireRead: whatever the client sends, the request server gets the
// same bytes with exactly the well-formed limits requests taken out, and
// the client gets one reply for each of them.
func FuzzWireRead(f *testing.F) {
	f.Add(limitsRequest(1))
	f.Add(append(limitsRequest(2), packet(1, u32(3))...))
	f.Add(packet(fxpExtended, u32(4), str("statvfs@openssh.com"), str("/")))
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3})
	f.Add(packet(fxpExtended, u32(5), u32(1000)))
	f.Fuzz(func(t *testing.T, in []byte) {
		end := &pipeEnd{in: bytes.NewReader(in)}
		got, _ := io.ReadAll(newWire(end))
		var want, replies []byte
		rest := in
		for len(rest) >= 4 {
			n := int(binary.BigEndian.Uint32(rest))
			if n == 0 { // handed over as it is: the request server refuses it
				want = append(want, rest[:4]...)
				rest = rest[4:]
				continue
			}
			if n > len(rest)-4 {
				break
			}
			pkt := rest[:4+n]
			if id, name, ok := extendedName(pkt[5:]); ok && pkt[4] == fxpExtended && n <= limitExtendedBytes && name == limitsExt {
				replies = append(replies, limitsReply(id)...)
			} else {
				want = append(want, pkt...)
			}
			rest = rest[4+n:]
		}
		// What follows the last whole packet is handed over as far as it
		// goes (the request server then sees a cut packet), except a cut
		// extended request of the wire's size, which it reads whole first.
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("request server got % x, want a start of % x", got, want)
		}
		if tail := got[len(want):]; !bytes.HasPrefix(rest, tail) {
			t.Fatalf("after the whole packets the request server got % x, not a start of % x", tail, rest)
		}
		if !bytes.Equal(end.out.Bytes(), replies) {
			t.Fatalf("replies % x, want % x", end.out.Bytes(), replies)
		}
	})
}
