package sftpproxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRequestSize(t *testing.T) {
	for _, c := range []struct {
		pkt, read, write uint64
		want             int
	}{
		{256 << 10, 255 << 10, 255 << 10, 255 << 10}, // OpenSSH
		{256 << 10, 1 << 20, 1 << 20, 255 << 10},     // the packet limit, less a header
		{1 << 20, 1 << 20, 1 << 20, maxTxPacket},     // pkg/sftp's own bound
		{256 << 10, 64 << 10, 128 << 10, 64 << 10},   // the smaller length
		{256 << 10, 16 << 10, 255 << 10, 0},          // below 32 KiB: the default
		{0, 255 << 10, 255 << 10, 0},                 // unknown
		{256 << 10, 0, 255 << 10, 0},
		{1000, 255 << 10, 255 << 10, 0},
	} {
		if got := requestSize(c.pkt, c.read, c.write); got != c.want {
			t.Errorf("requestSize(%d, %d, %d) = %d, want %d", c.pkt, c.read, c.write, got, c.want)
		}
	}
}

// fakeTarget answers INIT with a version packet naming exts, and a limits
// request with reply (nil: the connection ends). It returns what it read.
func fakeTarget(t *testing.T, c net.Conn, exts []string, reply []byte) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		var seen []byte
		defer func() { got <- seen }()
		p, err := readPacket(c, 1<<20)
		if err != nil {
			return
		}
		seen = append(seen, p...)
		body := [][]byte{u32(3)}
		for _, e := range exts {
			body = append(body, str(e), str("1"))
		}
		if _, err := c.Write(packet(fxpVersion, body...)); err != nil {
			return
		}
		if p, err = readPacket(c, 1<<20); err != nil {
			return
		}
		seen = append(seen, p...)
		if reply != nil {
			_, _ = c.Write(reply)
		}
		c.Close()
	}()
	return got
}

func limitsOf(id uint32, pkt, read, write uint64) []byte {
	b := u32(id)
	for _, v := range []uint64{pkt, read, write, 64} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return packet(fxpExtendedReply, b)
}

func TestTargetHandshake(t *testing.T) {
	for _, c := range []struct {
		name     string
		exts     []string
		reply    []byte
		wantSize int
		asked    bool
	}{
		{"OpenSSH limits", []string{"posix-rename@openssh.com", limitsExt}, limitsOf(limitsID, 256<<10, 255<<10, 255<<10), 255 << 10, true},
		{"no limits offered", []string{"posix-rename@openssh.com"}, nil, 0, false},
		{"limits refused", []string{limitsExt}, packet(101, u32(limitsID), u32(8), str("unsupported"), str("")), 0, true},
		{"reply for another id", []string{limitsExt}, limitsOf(9, 256<<10, 255<<10, 255<<10), 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw, tg := net.Pipe()
			defer gw.Close()
			seen := fakeTarget(t, tg, c.exts, c.reply)
			version, size, err := targetHandshake(gw, gw)
			if err != nil {
				t.Fatal(err)
			}
			if size != c.wantSize {
				t.Errorf("size %d, want %d", size, c.wantSize)
			}
			if version[4] != fxpVersion {
				t.Errorf("version packet % x", version)
			}
			gw.Close()
			got := <-seen
			init := packet(fxpInit, u32(3))
			want := init
			if c.asked {
				want = append(append([]byte{}, init...), limitsRequest(limitsID)...)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("target read % x, want % x", got, want)
			}
		})
	}
}

// TestTargetHandshakeRefusesGarbage: a target that answers INIT with
// anything but a version packet of sane size is refused.
func TestTargetHandshakeRefusesGarbage(t *testing.T) {
	for name, answer := range map[string][]byte{
		"status":   packet(101, u32(0), u32(8)),
		"huge":     u32(1 << 30),
		"empty":    u32(0),
		"cut":      packet(fxpVersion, u32(3))[:6],
		"no bytes": nil,
	} {
		t.Run(name, func(t *testing.T) {
			gw, tg := net.Pipe()
			go func() {
				_, _ = readPacket(tg, 1<<10)
				_, _ = tg.Write(answer)
				tg.Close()
			}()
			if _, _, err := targetHandshake(gw, gw); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestSkipInit: pkg/sftp's INIT is dropped, in one write or several, and
// everything after it passes.
func TestSkipInit(t *testing.T) {
	init := packet(fxpInit, u32(3))
	next := packet(17, u32(1), str("/"))
	for _, cuts := range [][]int{{len(init)}, {4, len(init)}, {2, 7, len(init)}} {
		var out nopCloser
		s := &skipInit{w: &out}
		prev := 0
		for _, c := range cuts {
			if n, err := s.Write(init[prev:c]); err != nil || n != c-prev {
				t.Fatalf("cuts %v: write %d bytes: %d, %v", cuts, c-prev, n, err)
			}
			prev = c
		}
		if _, err := s.Write(next); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), next) {
			t.Errorf("cuts %v: target got % x, want % x", cuts, out.Bytes(), next)
		}
	}
	if _, err := (&skipInit{w: &nopCloser{}}).Write(next); err == nil {
		t.Error("a first packet other than INIT passed")
	}
}

type nopCloser struct{ bytes.Buffer }

func (*nopCloser) Close() error { return nil }

// TestTargetClientOpenSSH: against OpenSSH's sftp-server the client takes
// its limits and moves files of several request sizes intact.
func TestTargetClientOpenSSH(t *testing.T) {
	if _, err := os.Stat(sftpServer); err != nil {
		t.Skipf("%s not installed", sftpServer)
	}
	dir := t.TempDir()
	srv := exec.Command(sftpServer, "-d", dir)
	in, err := srv.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = srv.Wait() })
	c, err := NewTargetClient(out, in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.HasExtension(limitsExt); !ok {
		t.Fatal("the version packet replayed to pkg/sftp lost limits@openssh.com")
	}
	data := randomBytes(t, 3<<20+12345)
	f, err := c.Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 300 << 10 { // above the limit: split by pkg/sftp
		if _, err := f.WriteAt(data[off:min(off+300<<10, len(data))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	g, err := c.Open(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(g)
	g.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
}

// FuzzTargetHandshake: whatever a target answers, the handshake neither
// panics nor reads past what it was given, and a request size it takes
// lies between pkg/sftp's default and what pkg/sftp can receive.
func FuzzTargetHandshake(f *testing.F) {
	f.Add(append(packet(fxpVersion, u32(3), str(limitsExt), str("1")), limitsOf(limitsID, 256<<10, 255<<10, 255<<10)...))
	f.Add(packet(fxpVersion, u32(3), str("posix-rename@openssh.com"), str("1")))
	f.Add(append(packet(fxpVersion, u32(3), str(limitsExt), str("1")), limitsOf(limitsID, 1<<40, 1<<40, 1<<40)...))
	f.Add(packet(fxpVersion, u32(3), u32(1<<31)))
	f.Fuzz(func(t *testing.T, answer []byte) {
		var sent bytes.Buffer
		version, size, err := targetHandshake(bytes.NewReader(answer), &sent)
		if err != nil {
			return
		}
		if len(version) < 5 || version[4] != fxpVersion || !bytes.HasPrefix(answer, version) {
			t.Fatalf("version % x is not the start of the answer", version)
		}
		if size != 0 && (size < minTargetPacket || size > maxTxPacket) {
			t.Fatalf("request size %d", size)
		}
	})
}
