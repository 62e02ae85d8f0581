package sftpproxy

import (
	"bytes"
	"errors"
	"path"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// body drops a test packet's length field: the parsers take type and body.
func body(p []byte) []byte { return p[4:] }

func TestParseRequest(t *testing.T) {
	attrs := bytes.Join([][]byte{u32(attrSize | attrPermissions | attrACModTime | attrExtended), u64(7), u32(0o640), u32(1000), u32(2000),
		u32(1), str("x@y"), str("z")}, nil)
	for _, c := range []struct {
		name string
		pkt  []byte
		want request
	}{
		{"open", packet(fxpOpen, u32(1), str("a/b"), u32(fxfWrite|fxfCreat), u32(0)),
			request{typ: fxpOpen, id: 1, path: []byte("a/b"), pflags: fxfWrite | fxfCreat}},
		{"read", packet(fxpRead, u32(2), str("h1"), u64(1<<40), u32(4096)),
			request{typ: fxpRead, id: 2, handle: []byte("h1"), offset: 1 << 40, length: 4096, lenAt: 1 + 4 + 6 + 8}},
		{"write", packet(fxpWrite, u32(3), str("h"), u64(9), str("data")),
			request{typ: fxpWrite, id: 3, handle: []byte("h"), offset: 9, data: []byte("data")}},
		{"setstat", packet(fxpSetstat, u32(4), str("/f"), attrs),
			request{typ: fxpSetstat, id: 4, path: []byte("/f"), attrs: attrs3(attrSize|attrPermissions|attrACModTime|attrExtended, 7, 0o640, 1000, 2000)}},
		{"symlink", packet(fxpSymlink, u32(5), str("contents"), str("link")),
			request{typ: fxpSymlink, id: 5, path: []byte("contents"), path2: []byte("link")}},
		{"posix-rename", packet(fxpExtended, u32(6), str(posixRenameExt), str("a"), str("b")),
			request{typ: fxpExtended, id: 6, ext: posixRenameExt, path: []byte("a"), path2: []byte("b")}},
		{"fsync", packet(fxpExtended, u32(7), str(fsyncExt), str("h")),
			request{typ: fxpExtended, id: 7, ext: fsyncExt, handle: []byte("h")}},
		{"unknown extension", packet(fxpExtended, u32(8), str("copy-data"), str("anything")),
			request{typ: fxpExtended, id: 8, ext: "copy-data"}},
		{"unknown type", packet(99, u32(9), []byte("junk")), request{typ: 99, id: 9}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseRequest(body(c.pkt))
			if err != nil {
				t.Fatal(err)
			}
			if !sameRequest(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func attrs3(flags uint32, size uint64, perm, atime, mtime uint32) attrs {
	return attrs{flags: flags, size: size, perm: perm, atime: atime, mtime: mtime}
}

func sameRequest(a, b request) bool {
	return a.typ == b.typ && a.id == b.id && a.ext == b.ext && bytes.Equal(a.path, b.path) &&
		bytes.Equal(a.path2, b.path2) && bytes.Equal(a.handle, b.handle) && a.offset == b.offset &&
		a.length == b.length && (b.lenAt == 0 || a.lenAt == b.lenAt) && bytes.Equal(a.data, b.data) &&
		a.pflags == b.pflags && a.attrs == b.attrs
}

// TestParseRequestRefusesBadPackets: short fields and strings longer than
// the packet are clear errors naming the request and the field.
func TestParseRequestRefusesBadPackets(t *testing.T) {
	for _, c := range []struct {
		name, want string
		p          []byte
	}{
		{"empty", "empty packet", nil},
		{"no id", "truncated request id", []byte{fxpStat, 0, 0}},
		{"path too long", "path of 100 bytes with 1 left", body(packet(fxpStat, u32(1), u32(100), []byte("x")))},
		{"read without length", "read: truncated length", body(packet(fxpRead, u32(1), str("h"), u64(0)))},
		{"write data cut", "write: data of 10 bytes", body(packet(fxpWrite, u32(1), str("h"), u64(0), u32(10), []byte("abc")))},
		{"attrs cut", "setstat: truncated permissions", body(packet(fxpSetstat, u32(1), str("/"), u32(attrPermissions)))},
		{"huge extended count", "truncated extended type", body(packet(fxpSetstat, u32(1), str("/"), u32(attrExtended), u32(1<<31)))},
		{"extension name cut", "truncated extended request name", body(packet(fxpExtended, u32(1), []byte{0, 0}))},
		{"second INIT", "INIT after the start", body(packet(fxpInit, u32(3)))},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseRequest(c.p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	st, err := parseReply(body(packet(fxpStatus, u32(3), u32(fxNoSuchFile), str("No such file"), str("en"))))
	if err != nil || st.id != 3 || st.code != fxNoSuchFile || string(st.msg) != "No such file" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if result(st) != `sftp: "No such file" (SSH_FX_NO_SUCH_FILE)` {
		t.Fatalf("result %q", result(st))
	}
	// Old servers end a status after its code.
	if st, err := parseReply(body(packet(fxpStatus, u32(3), u32(fxOK)))); err != nil || result(st) != "ok" {
		t.Fatalf("short status %+v, %v", st, err)
	}
	d, err := parseReply(body(packet(fxpData, u32(4), str("bytes"))))
	if err != nil || string(d.data) != "bytes" {
		t.Fatalf("data %+v, %v", d, err)
	}
	names := packet(fxpName, u32(5), u32(3), str("."), str("l"), u32(0), str(".."), str("l"), u32(0),
		str("f"), str("-rw"), u32(attrSize), u64(3))
	n, err := parseReply(body(names))
	if err != nil || n.count != 3 || string(n.name) != "." || countEntries(n) != 1 {
		t.Fatalf("name %+v (%d entries), %v", n, countEntries(n), err)
	}
	for name, p := range map[string][]byte{
		"unknown type": body(packet(fxpVersion, u32(3))),
		"cut data":     body(packet(fxpData, u32(4), u32(9), []byte("ab"))),
		"cut handle":   body(packet(fxpHandle, u32(4), u32(9))),
		"no id":        {fxpStatus, 1},
		"empty":        nil,
	} {
		if _, err := parseReply(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fuzzSeeds are well-formed and broken packets of both directions.
var fuzzSeeds = [][]byte{
	body(packet(fxpHandle, u32(1), str(strings.Repeat("h", maxHandleLen+1)))),
	body(packet(fxpOpen, u32(1), str("a"), u32(fxfRead), u32(0))),
	body(packet(fxpWrite, u32(3), str("h"), u64(9), str("data"))),
	body(packet(fxpSetstat, u32(4), str("/f"), u32(0x8000000f), u64(1), u32(2), u32(3), u32(4), u32(5), u32(6), u32(1), str("a"), str("b"))),
	body(packet(fxpExtended, u32(6), str(lsetstatExt), str("a"), u32(attrUIDGID), u32(1), u32(2))),
	body(packet(fxpName, u32(5), u32(1), str("f"), str("-rw"), u32(attrSize), u64(3))),
	body(packet(fxpStatus, u32(3), u32(fxEOF), str("eof"), str(""))),
	{fxpRead, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff},
}

// FuzzParseRequest: any client packet parses or fails with an error,
// never panics, and what it returns lies inside the packet.
func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := parseRequest(p)
		if err != nil {
			return
		}
		total := len(r.path) + len(r.path2) + len(r.handle) + len(r.data)
		if total > len(p) {
			t.Fatalf("fields of %d bytes from a packet of %d", total, len(p))
		}
		if r.typ == fxpRead && r.lenAt+4 > len(p) {
			t.Fatalf("read length at %d of %d", r.lenAt, len(p))
		}
		_ = typeName(r.typ, r.ext)
	})
}

// FuzzParseReply: any target packet parses or fails with an error, never
// panics, counting a NAME's entries stays inside the packet, and no
// handle it gives is longer than the protocol allows.
func FuzzParseReply(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := parseReply(p)
		if err != nil {
			if errors.Is(err, errEmptyPacket) && len(p) != 0 {
				t.Fatal("non-empty packet called empty")
			}
			return
		}
		if n := countEntries(r); n < 0 || uint32(n) > r.count {
			t.Fatalf("%d entries of %d", n, r.count)
		}
		if len(r.handle) > maxHandleLen {
			t.Fatalf("a handle of %d bytes", len(r.handle))
		}
		_ = result(r)
	})
}

// FuzzRecordedPath: any path a client sends is recorded absolute, without
// "." or empty elements, as path.Clean would give it when it has no "..",
// and as valid UTF-8 once escaped for the recording.
func FuzzRecordedPath(f *testing.F) {
	for _, s := range []string{"", ".", "/", "a/./b//c/", "../x", "l/../f", "/..", "a\xff/\x1b[2J"} {
		f.Add(s)
	}
	r := &relay{start: "/home/u"}
	f.Fuzz(func(t *testing.T, p string) {
		got := r.abs([]byte(p))
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") || strings.HasSuffix(got, "/.") ||
			strings.Contains(got, "/./") || (got != "/" && strings.HasSuffix(got, "/")) {
			t.Fatalf("%q recorded as %q", p, got)
		}
		if !slices.Contains(strings.Split(p, "/"), "..") {
			want := path.Clean(p)
			if !path.IsAbs(want) {
				want = path.Join(r.start, want)
			}
			if got != want {
				t.Fatalf("%q recorded as %q, want %q", p, got, want)
			}
		}
		op := map[string]string{"path": got}
		escapeInvalid(op)
		if !utf8.ValidString(op["path"]) || (op["escaped"] != "") == utf8.ValidString(got) {
			t.Fatalf("%q escaped as %v", got, op)
		}
	})
}
