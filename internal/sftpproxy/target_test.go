package sftpproxy

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
)

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(s string) []byte { return sftpString(s) }

// packet frames a test packet.
func packet(typ byte, body ...[]byte) []byte { return packetOf(typ, body...) }

func limitsOf(id uint32, pkt, read, write uint64) []byte {
	b := u32(id)
	for _, v := range []uint64{pkt, read, write, 64} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return packet(fxpExtendedReply, b)
}

// nameReply is a NAME answer with one entry.
func nameReply(id uint32, name string) []byte {
	return packet(fxpName, u32(id), u32(1), str(name), str(name), u32(0))
}

// fakeTarget answers INIT with a version packet naming exts, a limits
// request (if exts offer it) with limitsAnswer, and realpath "." with
// /home/x. It returns what it read.
func fakeTarget(c net.Conn, exts []string, limitsAnswer []byte) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		var seen []byte
		defer func() { got <- seen }()
		defer c.Close()
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
		for {
			if p, err = readPacket(c, 1<<20); err != nil {
				return
			}
			seen = append(seen, p...)
			answer := nameReply(binary.BigEndian.Uint32(p[5:]), "/home/x")
			if p[4] == fxpExtended {
				answer = limitsAnswer
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	}()
	return got
}

func TestTargetHandshake(t *testing.T) {
	realpath := packet(fxpRealpath, u32(realpathID), str("."))
	for _, c := range []struct {
		name   string
		exts   []string
		reply  []byte
		limits *limits
		asked  bool
	}{
		{"OpenSSH limits", []string{posixRenameExt, limitsExt}, limitsOf(limitsID, 256<<10, 255<<10, 255<<10), &limits{256 << 10, 255 << 10, 255 << 10, 64}, true},
		{"no limits offered", []string{posixRenameExt}, nil, nil, false},
		{"limits refused", []string{limitsExt}, packet(fxpStatus, u32(limitsID), u32(8), str("unsupported"), str("")), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw, tg := net.Pipe()
			defer gw.Close()
			seen := fakeTarget(tg, c.exts, c.reply)
			ti, err := targetHandshake(gw, gw)
			if err != nil {
				t.Fatal(err)
			}
			if (ti.limits == nil) != (c.limits == nil) || (ti.limits != nil && *ti.limits != *c.limits) {
				t.Errorf("limits %+v, want %+v", ti.limits, c.limits)
			}
			if ti.start != "/home/x" || len(ti.exts) != len(c.exts) {
				t.Errorf("start %q, extensions %v", ti.start, ti.exts)
			}
			gw.Close()
			got := <-seen
			want := packet(fxpInit, u32(3))
			if c.asked {
				want = append(want, packet(fxpExtended, u32(limitsID), str(limitsExt))...)
			}
			want = append(want, realpath...)
			if !bytes.Equal(got, want) {
				t.Errorf("target read % x, want % x", got, want)
			}
		})
	}
}

// TestTargetHandshakeRefusesGarbage: a target that answers INIT with
// anything but a version 3 packet of sane size, or its limits with
// another request's answer, is refused.
func TestTargetHandshakeRefusesGarbage(t *testing.T) {
	for name, answer := range map[string][]byte{
		"status":        packet(fxpStatus, u32(0), u32(8)),
		"huge":          u32(1 << 30),
		"empty":         u32(0),
		"cut":           packet(fxpVersion, u32(3))[:6],
		"no bytes":      nil,
		"version 4":     packet(fxpVersion, u32(4)),
		"cut extension": packet(fxpVersion, u32(3), u32(1000)),
	} {
		t.Run(name, func(t *testing.T) {
			gw, tg := net.Pipe()
			go func() {
				_, _ = readPacket(tg, 1<<10)
				_, _ = tg.Write(answer)
				tg.Close()
			}()
			if _, err := targetHandshake(gw, gw); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("long start directory", func(t *testing.T) {
		gw, tg := net.Pipe()
		defer gw.Close()
		go func() {
			defer tg.Close()
			_, _ = readPacket(tg, 1<<10)
			_, _ = tg.Write(packet(fxpVersion, u32(3)))
			_, _ = readPacket(tg, 1<<10)
			_, _ = tg.Write(nameReply(realpathID, "/"+strings.Repeat("d", maxPathLen)))
		}()
		if _, err := targetHandshake(gw, gw); err == nil || !strings.Contains(err.Error(), "start directory") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("limits of another id", func(t *testing.T) {
		gw, tg := net.Pipe()
		defer gw.Close()
		fakeTarget(tg, []string{limitsExt}, limitsOf(9, 256<<10, 255<<10, 255<<10))
		if _, err := targetHandshake(gw, gw); err == nil {
			t.Fatal("accepted")
		}
	})
}

// TestClientVersionAndLimits: the client is offered only the extensions
// the relay records, limits@openssh.com only if the target has limits,
// and never more than the relay's own caps.
func TestClientVersionAndLimits(t *testing.T) {
	ti := targetInfo{exts: []extension{
		{posixRenameExt, "1"}, {"copy-data", "1"}, {"expand-path@openssh.com", "1"}, {hardlinkExt, "1"},
	}}
	v, exts, err := parseVersion(clientVersion(ti)[5:])
	if err != nil || v != 3 {
		t.Fatal(v, err)
	}
	if want := []extension{{posixRenameExt, "1"}, {hardlinkExt, "1"}}; len(exts) != 2 || exts[0] != want[0] || exts[1] != want[1] {
		t.Fatalf("offered %v", exts)
	}
	ti.limits = &limits{1 << 20, 64 << 10, 0, 100}
	_, exts, _ = parseVersion(clientVersion(ti)[5:])
	if !hasExtension(exts, limitsExt) {
		t.Fatal("limits not offered")
	}
	got := limitsReply(7, *ti.limits)
	want := packet(fxpExtendedReply, u32(7), u64(limitMaxPacket), u64(64<<10), u64(0), u64(100))
	if !bytes.Equal(got, want) {
		t.Fatalf("limits reply % x, want % x", got, want)
	}
	// The relay's own bound on open handles, whatever the target allows.
	for _, h := range []uint64{0, 1 << 20} {
		got, want = limitsReply(7, limits{handles: h}), packet(fxpExtendedReply, u32(7), u64(0), u64(0), u64(0), u64(maxHandles))
		if !bytes.Equal(got, want) {
			t.Fatalf("limits reply for %d handles % x, want % x", h, got, want)
		}
	}
}

// FuzzTargetHandshake: whatever a target answers, the handshake neither
// panics nor reads past what it was given, and a start directory it takes
// is absolute.
func FuzzTargetHandshake(f *testing.F) {
	f.Add(append(append(packet(fxpVersion, u32(3), str(limitsExt), str("1")), limitsOf(limitsID, 256<<10, 255<<10, 255<<10)...), nameReply(realpathID, "/root")...))
	f.Add(append(packet(fxpVersion, u32(3), str(posixRenameExt), str("1")), nameReply(realpathID, "rel")...))
	f.Add(append(packet(fxpVersion, u32(3), str(limitsExt), str("1")), limitsOf(limitsID, 1<<40, 1<<40, 1<<40)...))
	f.Add(packet(fxpVersion, u32(3), u32(1<<31)))
	f.Add(append(packet(fxpVersion, u32(3)), nameReply(realpathID, "/"+strings.Repeat("d", maxPathLen))...))
	f.Fuzz(func(t *testing.T, answer []byte) {
		var sent bytes.Buffer
		ti, err := targetHandshake(bytes.NewReader(answer), &sent)
		if err != nil {
			return
		}
		if ti.start == "" || ti.start[0] != '/' || len(ti.start) > maxPathLen {
			t.Fatalf("start %q", ti.start)
		}
		_ = clientVersion(ti)
	})
}
