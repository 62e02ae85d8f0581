package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestReadTCP4LeavesTheRest(t *testing.T) {
	h := Header{Source: netip.MustParseAddrPort("192.0.2.7:51234"), Destination: netip.MustParseAddrPort("198.51.100.1:22")}
	r := bytes.NewReader(append(Encode(h), "SSH-2.0-OpenSSH_9.2\r\n"...))
	got, err := Read(r)
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("got %+v, want %+v", got, h)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "SSH-2.0-OpenSSH_9.2\r\n" {
		t.Fatalf("Read consumed bytes past the header: rest %q", rest)
	}
}

func TestReadTCP6AndMapped(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"[2001:db8::5]:40000", "[2001:db8::5]:40000"},
		{"[::ffff:192.0.2.9]:40000", "192.0.2.9:40000"}, // one form per client
	} {
		h := Header{Source: netip.MustParseAddrPort(tc.src), Destination: netip.MustParseAddrPort("[2001:db8::1]:22")}
		got, err := Read(bytes.NewReader(Encode(h)))
		if err != nil {
			t.Fatal(err)
		}
		if got.Source.String() != tc.want {
			t.Errorf("source %s: got %s, want %s", tc.src, got.Source, tc.want)
		}
	}
}

// A header as HAProxy 2.6 sends it with send-proxy-v2 for a client
// 127.0.0.5:40000 connecting to 127.0.0.1:2222, followed by one TLV
// (PP2_TYPE_NOOP, 3 bytes).
func TestReadWithTLV(t *testing.T) {
	b, _ := hex.DecodeString("0d0a0d0a000d0a515549540a" + "2111" + "0012" + "7f000005" + "7f000001" + "9c40" + "08ae" + "04" + "0003" + "000000")
	h, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.Source.String() != "127.0.0.5:40000" || h.Destination.String() != "127.0.0.1:2222" {
		t.Fatalf("got %+v", h)
	}
}

func TestLocal(t *testing.T) {
	h, err := Read(bytes.NewReader(Encode(Header{Local: true})))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Local || h.Source.IsValid() {
		t.Fatalf("LOCAL: got %+v", h)
	}
	// LOCAL with addresses (allowed by the specification): ignored.
	b, _ := hex.DecodeString("0d0a0d0a000d0a515549540a" + "2011" + "000c" + "7f000005" + "7f000001" + "9c40" + "08ae")
	if h, err := Read(bytes.NewReader(b)); err != nil || !h.Local || h.Source.IsValid() {
		t.Fatalf("LOCAL with addresses: %+v, %v", h, err)
	}
}

func TestRefused(t *testing.T) {
	good := Encode(Header{Source: netip.MustParseAddrPort("192.0.2.7:1"), Destination: netip.MustParseAddrPort("192.0.2.1:22")})
	set := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	long := append([]byte(Signature), 0x21, 0x11, 0xff, 0xff)
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"ssh client":         {[]byte("SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), "no PROXY protocol v2 header"},
		"version 1":          {[]byte("PROXY TCP4 192.0.2.7 192.0.2.1 1 22\r\nSSH-2.0-x\r\n"), "version 1"},
		"version 1 nudge":    {[]byte("PROXY TCP4 192.0.2.7 192.0.2.1 1 22\r\nSSH-2.0-x\r\n"), "send-proxy-v2"},
		"version 3":          {set(12, 0x31), "version 3"},
		"unknown command":    {set(12, 0x22), "unknown command"},
		"udp":                {set(13, 0x12), "0x12"},
		"unix":               {set(13, 0x31), "0x31"},
		"unspec with proxy":  {set(13, 0x00), "0x00"},
		"too long":           {long, "more than the 512"},
		"cut short":          {good[:20], "cut short"},
		"empty":              {nil, "EOF"},
		"short for address":  {set(15, 4), "too short for its addresses"},
		"zero source":        {Encode(Header{Source: netip.MustParseAddrPort("0.0.0.0:1"), Destination: netip.MustParseAddrPort("192.0.2.1:22")}), "unspecified source"},
		"tlv past the end":   {append(set(15, 12+3), 0x04, 0x00, 0x09), "runs past"},
		"tlv header cut":     {append(set(15, 12+2), 0x04, 0x00), "TLV cut short"},
		"tlv past the bytes": {append(set(15, 12+3), 0x04, 0x00), "cut short"},
	} {
		_, err := Read(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
	if _, err := Read(strings.NewReader("SSH-2.0-OpenSSH_9.2p1\r\n")); !errors.Is(err, ErrNotProxy) {
		t.Errorf("an SSH client: %v, want ErrNotProxy", err)
	}
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		in              string
		header, decided bool
	}{
		{"", false, false},
		{"S", false, true},
		{"SSH-2.0-OpenSSH", false, true},
		{"\r\n\r\n", false, false},
		{Signature, true, true},
		{Signature + "\x21\x11", true, true},
		{"\r\n\r\nx", false, true},
		{"PROX", false, false},
		{"PROXY TCP4", true, true},
		{"PROXYZ", false, true},
	} {
		h, d := Sniff([]byte(tc.in))
		if h != tc.header || d != tc.decided {
			t.Errorf("Sniff(%q) = %v, %v; want %v, %v", tc.in, h, d, tc.header, tc.decided)
		}
	}
}

// FuzzRead: any bytes either parse into a header that encodes back to an
// equal header, or give an error; never a panic, never a read past the
// header, never more than MaxLength bytes.
func FuzzRead(f *testing.F) {
	f.Add(Encode(Header{Source: netip.MustParseAddrPort("192.0.2.7:51234"), Destination: netip.MustParseAddrPort("198.51.100.1:22")}))
	f.Add(Encode(Header{Source: netip.MustParseAddrPort("[2001:db8::5]:1"), Destination: netip.MustParseAddrPort("[2001:db8::1]:22")}))
	f.Add(Encode(Header{Local: true}))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := Read(r)
		used := len(b) - r.Len()
		if used > 16+MaxLength {
			t.Fatalf("read %d bytes, more than a header may have", used)
		}
		ph, n, perr := Parse(b)
		if (err == nil) != (perr == nil) {
			t.Fatalf("Read and Parse disagree: %v / %v", err, perr)
		}
		if err != nil {
			return
		}
		if ph != h || n != used {
			t.Fatalf("Read %+v (%d bytes), Parse %+v (%d bytes)", h, used, ph, n)
		}
		if hd, decided := Sniff(b[:min(len(b), 12)]); !hd || !decided {
			t.Fatalf("a header Read accepts is not recognised by Sniff")
		}
		again, _, err := Parse(Encode(h))
		if err != nil || again != h {
			t.Fatalf("round trip: %+v -> %+v, %v", h, again, err)
		}
	})
}

// FuzzSniff: Sniff's answer, once decided, holds for every longer start
// of the same stream, so the gateway may stop looking once it is decided;
// and it calls a header exactly what starts like one.
func FuzzSniff(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1\r\n"))
	f.Add([]byte(Signature + "\x21\x11"))
	f.Add([]byte("PROXY TCP4 1.2.3.4"))
	f.Add([]byte("\r\n\r\n\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var first struct{ header, set bool }
		for i := 0; i <= len(b); i++ {
			header, decided := Sniff(b[:i])
			if first.set && header != first.header {
				t.Fatalf("Sniff(%q) = %v after it decided %v on a shorter start", b[:i], header, first.header)
			}
			if decided && !first.set {
				first.header, first.set = header, true
			}
		}
		want := bytes.HasPrefix(b, []byte(Signature)) || bytes.HasPrefix(b, []byte(v1Prefix))
		if header, decided := Sniff(b); decided && header != want {
			t.Fatalf("Sniff(%q) = %v, want %v", b, header, want)
		}
	})
}
