package sftpproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// memRecorder collects operations; failOn makes it fail for matching ops.
type memRecorder struct {
	mu     sync.Mutex
	ops    []map[string]string
	failOn func(op map[string]string) bool
}

var errDiskFull = errors.New("recording disk full")

func (m *memRecorder) rec(op map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOn != nil && m.failOn(op) {
		return errDiskFull
	}
	c := make(map[string]string, len(op))
	for k, v := range op {
		c[k] = v
	}
	m.ops = append(m.ops, c)
	return nil
}

func (m *memRecorder) setFail(f func(op map[string]string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failOn = f
}

// find returns the recorded ops that have all the given key/values.
func (m *memRecorder) find(kv ...string) []map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []map[string]string
next:
	for _, op := range m.ops {
		for i := 0; i+1 < len(kv); i += 2 {
			if op[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, op)
	}
	return out
}

func (m *memRecorder) one(t *testing.T, kv ...string) map[string]string {
	t.Helper()
	got := m.find(kv...)
	if len(got) != 1 {
		m.mu.Lock()
		defer m.mu.Unlock()
		t.Fatalf("want exactly one op with %v, got %d; all ops: %v", kv, len(got), m.ops)
	}
	return got[0]
}

// rig is a user client (pkg/sftp) talking to Serve, which relays to a
// real sftp-server running in dir; the client side over an in-memory pipe.
type rig struct {
	dir    string
	user   *sftp.Client
	rec    *memRecorder
	cancel context.CancelFunc
	served chan error
	closed bool
}

func requireServer(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(sftpServer); err != nil {
		t.Skipf("%s not installed", sftpServer)
	}
}

func newRig(t testing.TB, o Options, userOpts ...sftp.ClientOption) *rig {
	t.Helper()
	target, dir := realTarget(t)
	r := &rig{dir: dir, rec: &memRecorder{}, served: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	uc, us := net.Pipe()
	tg, err := Handshake(target)
	if err != nil {
		t.Fatal(err)
	}
	go func() { r.served <- Serve(ctx, us, tg, r.rec.rec, o) }()
	r.user, err = sftp.NewClientPipe(uc, uc, userOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !r.closed {
			r.user.Close()
			<-r.served
		}
		cancel()
	})
	return r
}

// stop closes the user client and returns Serve's result.
func (r *rig) stop() error {
	r.user.Close()
	r.closed = true
	return <-r.served
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPutGetRecordsSizesAndHashes(t *testing.T) {
	r := newRig(t, Options{}, sftp.UseConcurrentWrites(true))
	data := randomBytes(t, 5<<20)
	want := sumHex(data)
	size := strconv.Itoa(len(data))

	f, err := r.user.Create("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(r.dir, "big.bin"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("target file differs (err %v)", err)
	}
	path := filepath.ToSlash(filepath.Join(r.dir, "big.bin"))
	open := r.rec.one(t, "op", "open", "path", path, "flags", "read,write,create,truncate")
	if open["result"] != "ok" || open["handle"] == "" {
		t.Fatalf("open record %v", open)
	}
	put := r.rec.one(t, "op", "close", "handle", open["handle"])
	if put["bytes_written"] != size || put["sha256_written"] != want || put["sequential"] != "true" ||
		put["bytes_read"] != "0" || put["result"] != "ok" || put["path"] != path {
		t.Fatalf("put close record %v", put)
	}

	// The pkg/sftp client pipelines concurrent reads for WriteTo.
	g, err := r.user.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := g.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("downloaded data differs")
	}
	gopen := r.rec.one(t, "op", "open", "path", path, "flags", "read")
	get := r.rec.one(t, "op", "close", "handle", gopen["handle"])
	if get["bytes_read"] != size || get["sha256_read"] != want || get["sequential"] != "true" || get["bytes_written"] != "0" {
		t.Fatalf("get close record %v", get)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestRandomAccessMarkedNonSequential: reads at scattered offsets are
// counted and flagged sequential=false.
func TestRandomAccessMarkedNonSequential(t *testing.T) {
	r := newRig(t, Options{})
	data := randomBytes(t, 256<<10)
	if err := os.WriteFile(filepath.Join(r.dir, "r.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := r.user.Open("r.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	var total int
	for _, off := range []int64{200000, 0, 100000, 0} {
		n, err := f.ReadAt(buf, off)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	f.Close()
	c := r.rec.one(t, "op", "close")
	if c["sequential"] != "false" || c["bytes_read"] != strconv.Itoa(total) {
		t.Fatalf("close record %v", c)
	}
}

func TestCommandsRecorded(t *testing.T) {
	r := newRig(t, Options{})
	abs := func(p string) string { return filepath.ToSlash(filepath.Join(r.dir, p)) }
	if err := os.WriteFile(filepath.Join(r.dir, "a.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := r.user
	steps := []struct {
		name string
		do   func() error
		kv   []string // identifying key/values of the expected record
	}{
		{"mkdir", func() error { return u.Mkdir("d") }, []string{"op", "mkdir", "path", abs("d")}},
		{"rename", func() error { return u.Rename("a.txt", "d/b.txt") },
			[]string{"op", "rename", "path", abs("a.txt"), "to", abs("d/b.txt")}},
		{"posix rename", func() error { return u.PosixRename("d/b.txt", "d/c.txt") },
			[]string{"op", "rename", "path", abs("d/b.txt"), "to", abs("d/c.txt"), "overwrite", "true"}},
		{"chmod", func() error { return u.Chmod("d/c.txt", 0o640) },
			[]string{"op", "setstat", "path", abs("d/c.txt"), "mode", "0640"}},
		// Link contents as the client gave them; sftp-server keeps them
		// relative, so the link resolves against its own directory.
		{"symlink", func() error { return u.Symlink("c.txt", "d/link") },
			[]string{"op", "symlink", "path", abs("d/link"), "target", "c.txt"}},
		{"readlink", func() error {
			got, err := u.ReadLink("d/link")
			if err == nil && got != "c.txt" {
				return errors.New("readlink gave " + got)
			}
			return err
		}, []string{"op", "readlink", "path", abs("d/link"), "target", "c.txt"}},
		{"lstat", func() error {
			fi, err := u.Lstat("d/link")
			if err == nil && fi.Mode()&os.ModeSymlink == 0 {
				return errors.New("lstat followed the link")
			}
			return err
		}, []string{"op", "lstat", "path", abs("d/link")}},
		{"stat", func() error {
			fi, err := u.Stat("d/link")
			if err == nil && (fi.Size() != 5 || fi.Mode().Perm() != 0o640) {
				return errors.New("stat gave wrong size or mode")
			}
			return err
		}, []string{"op", "stat", "path", abs("d/link")}},
		{"list", func() error {
			fis, err := u.ReadDir("d")
			if err == nil && len(fis) != 2 {
				return errors.New("list gave " + strconv.Itoa(len(fis)) + " entries")
			}
			return err
		}, []string{"op", "list", "path", abs("d"), "entries", "2"}},
		{"hardlink", func() error { return u.Link("d/c.txt", "d/hard") },
			[]string{"op", "link", "path", abs("d/hard"), "target", abs("d/c.txt")}},
		{"chtimes", func() error { return u.Chtimes("d/c.txt", time.Unix(1000, 0), time.Unix(2000, 0)) },
			[]string{"op", "setstat", "path", abs("d/c.txt"), "atime", "1000", "mtime", "2000"}},
		{"truncate", func() error { return u.Truncate("d/c.txt", 2) },
			[]string{"op", "setstat", "path", abs("d/c.txt"), "size", "2"}},
		{"remove", func() error { return u.Remove("d/link") }, []string{"op", "remove", "path", abs("d/link")}},
		{"realpath", func() error {
			got, err := u.RealPath(".")
			if err == nil && got != filepath.ToSlash(r.dir) {
				return errors.New("realpath gave " + got)
			}
			return err
		}, []string{"op", "realpath", "path", ".", "resolved", filepath.ToSlash(r.dir)}},
		{"statvfs", func() error { _, err := u.StatVFS("d"); return err }, []string{"op", "statvfs", "path", abs("d")}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.do(); err != nil {
				t.Fatal(err)
			}
			if op := r.rec.one(t, s.kv...); op["result"] != "ok" {
				t.Fatalf("record %v", op)
			}
		})
	}

	// Failures are recorded with the error and keep their status code.
	t.Run("rmdir not empty", func(t *testing.T) {
		if err := u.RemoveDirectory("d"); err == nil {
			t.Fatal("rmdir of a non-empty directory succeeded")
		}
		if op := r.rec.one(t, "op", "rmdir", "path", abs("d")); op["result"] == "ok" {
			t.Fatalf("record %v", op)
		}
	})
	t.Run("remove missing", func(t *testing.T) {
		if err := u.Remove("nope"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("remove missing: %v, want not exist", err)
		}
		if op := r.rec.one(t, "op", "remove", "path", abs("nope")); op["result"] == "ok" {
			t.Fatalf("record %v", op)
		}
	})
	t.Run("remove directory refused", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(r.dir, "empty"), 0o700); err != nil {
			t.Fatal(err)
		}
		// sftp.Client.Remove itself retries as rmdir, so only the remove
		// record shows the refusal.
		u.Remove("empty")
		if op := r.rec.one(t, "op", "remove", "path", abs("empty")); op["result"] == "ok" {
			t.Fatalf("record %v", op)
		}
	})
	t.Run("rmdir", func(t *testing.T) {
		for _, p := range []string{"d/c.txt", "d/hard"} {
			if err := u.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := u.RemoveDirectory("d"); err != nil {
			t.Fatal(err)
		}
		if got := r.rec.find("op", "rmdir", "path", abs("d"), "result", "ok"); len(got) != 1 {
			t.Fatalf("rmdir records %v", got)
		}
	})
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	r := newRig(t, Options{ReadOnly: true})
	if err := os.WriteFile(filepath.Join(r.dir, "keep.txt"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(r.dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	u := r.user
	writes := []struct {
		name string
		do   func() error
		op   string
	}{
		{"put", func() error { _, err := u.Create("new.txt"); return err }, "open"},
		{"read-write open", func() error { _, err := u.OpenFile("keep.txt", os.O_RDWR); return err }, "open"},
		{"remove", func() error { return u.Remove("keep.txt") }, "remove"},
		{"rename", func() error { return u.Rename("keep.txt", "other.txt") }, "rename"},
		{"mkdir", func() error { return u.Mkdir("dir") }, "mkdir"},
		{"chmod", func() error { return u.Chmod("keep.txt", 0o777) }, "setstat"},
		{"symlink", func() error { return u.Symlink("keep.txt", "l") }, "symlink"},
		{"posix rename", func() error { return u.PosixRename("keep.txt", "other.txt") }, "rename"},
		{"hardlink", func() error { return u.Link("keep.txt", "hard") }, "link"},
		{"truncate", func() error { return u.Truncate("keep.txt", 0) }, "setstat"},
		{"rmdir", func() error { return u.RemoveDirectory("sub") }, "rmdir"},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := w.do(); !errors.Is(err, os.ErrPermission) {
				t.Fatalf("got %v, want permission denied", err)
			}
			if got := r.rec.find("op", w.op, "result", errReadOnly.msg); len(got) == 0 {
				t.Fatalf("refusal of %s not recorded", w.op)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(r.dir, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("read-only put created a file")
	}
	// Nothing of the refused requests reached the target.
	if fi, err := os.Stat(filepath.Join(r.dir, "keep.txt")); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 4 {
		t.Fatalf("read-only remove, rename, chmod or truncate took effect (%v)", err)
	}
	for _, p := range []string{"dir", "l", "other.txt", "hard"} {
		if _, err := os.Lstat(filepath.Join(r.dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("read-only session created %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, "sub")); err != nil {
		t.Fatal("read-only rmdir took effect")
	}
	// Reads still work.
	f, err := u.Open("keep.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "data" {
		t.Fatalf("read %q, %v", b, err)
	}
	f.Close()
	if c := r.rec.one(t, "op", "close"); c["sha256_read"] != sumHex([]byte("data")) {
		t.Fatalf("close record %v", c)
	}
}

func TestRecorderFailureFailsClosed(t *testing.T) {
	r := newRig(t, Options{})
	if err := r.user.Mkdir("ok"); err != nil {
		t.Fatal(err)
	}
	r.rec.setFail(func(op map[string]string) bool { return op["op"] == "mkdir" })
	if err := r.user.Mkdir("second"); err == nil {
		t.Fatal("mkdir succeeded although it could not be recorded")
	}
	err := <-r.served
	r.closed = true
	r.user.Close()
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Serve returned %v, want the recording error", err)
	}
	// The session is gone: nothing more reaches the target.
	if err := r.user.Mkdir("third"); err == nil {
		t.Fatal("operation after recording failure succeeded")
	}
	if _, err := os.Stat(filepath.Join(r.dir, "third")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("operation after recording failure reached the target")
	}
}

// TestRecorderFailureAtClose: a transfer whose summary cannot be recorded
// fails at close.
func TestRecorderFailureAtClose(t *testing.T) {
	r := newRig(t, Options{})
	f, err := r.user.Create("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	r.rec.setFail(func(op map[string]string) bool { return op["op"] == "close" })
	if err := f.Close(); err == nil {
		t.Fatal("close succeeded although it could not be recorded")
	}
	if err := <-r.served; !errors.Is(err, errDiskFull) {
		t.Fatalf("Serve returned %v", err)
	}
	r.closed = true
	r.user.Close()
}

func TestContextCancelEndsServe(t *testing.T) {
	r := newRig(t, Options{})
	if _, err := r.user.Getwd(); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	if err := <-r.served; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve returned %v", err)
	}
	r.closed = true
	r.user.Close()
}

// TestUnclosedFileRecordedAtEnd: a session that ends with a file still
// open still records its close with what had passed.
func TestUnclosedFileRecordedAtEnd(t *testing.T) {
	r := newRig(t, Options{})
	f, err := r.user.Create("partial")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c := r.rec.one(t, "op", "close")
	if c["bytes_written"] != "3" || c["sha256_written"] != sumHex([]byte("abc")) || c["transfer_error"] == "" {
		t.Fatalf("close record %v", c)
	}
}

func TestShuffledWritesHashInOrder(t *testing.T) {
	r := newRig(t, Options{})
	data := randomBytes(t, 64<<10)
	f, err := r.user.Create("s.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Bounded reordering: swap neighbours.
	offs := make([]int, 16)
	for i := range offs {
		offs[i] = i
	}
	for i := 0; i+1 < len(offs); i += 2 {
		offs[i], offs[i+1] = offs[i+1], offs[i]
	}
	const cs = 4 << 10
	for _, i := range offs {
		if _, err := f.WriteAt(data[i*cs:(i+1)*cs], int64(i*cs)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	c := r.rec.one(t, "op", "close")
	if c["sequential"] != "true" || c["sha256_written"] != sumHex(data) {
		t.Fatalf("close record %v", c)
	}
}

func BenchmarkProxyGet(b *testing.B) {
	benchGet(b, true)
}

// BenchmarkDirectGet is the baseline: the same client straight to the
// target server.
func BenchmarkDirectGet(b *testing.B) {
	benchGet(b, false)
}

func benchGet(b *testing.B, viaProxy bool) {
	r := newRig(b, Options{})
	data := randomBytes(b, 32<<20)
	if err := os.WriteFile(filepath.Join(r.dir, "bench.bin"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	c := r.user
	if !viaProxy {
		t, err := startTarget(r.dir, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { t.Close(); _ = t.cmd.Wait() }()
		if c, err = sftp.NewClientPipe(t, t.in); err != nil {
			b.Fatal(err)
		}
		defer c.Close()
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		f, err := c.Open("bench.bin")
		if err != nil {
			b.Fatal(err)
		}
		n, err := f.WriteTo(io.Discard)
		if err != nil || n != int64(len(data)) {
			b.Fatalf("read %d, %v", n, err)
		}
		f.Close()
	}
}
