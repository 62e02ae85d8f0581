package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is the injected clock of the tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	dir   string
	v     *Vault
	clock *fakeClock
}

// newEnv makes a data directory with a file KEK kept outside it.
func newEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	kekPath := filepath.Join(root, "kek")
	if err := GenerateFileKEK(kekPath); err != nil {
		t.Fatal(err)
	}
	kek, err := FileKEK(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	v, err := OpenVault(dir, kek)
	if err != nil {
		t.Fatal(err)
	}
	return &env{dir: dir, v: v, clock: newClock()}
}

func (e *env) meta(session string, kind Kind) Meta {
	return Meta{SessionID: session, Tenant: "acme", Kind: kind, Started: e.clock.Now(),
		Host: "db1", Login: "root", Owner: "alice", Term: "xterm-256color", Cols: 120, Rows: 40}
}

// create starts a writer whose ticker never fires on its own.
func (e *env) create(t testing.TB, m Meta, opt Options) *Writer {
	t.Helper()
	if opt.Now == nil {
		opt.Now = e.clock.Now
	}
	if opt.Tick == nil {
		opt.Tick = make(chan time.Time)
	}
	w, err := Create(e.v, e.dir, m, opt)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readAll opens path and returns all events and the error that ended them.
func readAll(t testing.TB, v *Vault, path string) ([]Event, error) {
	t.Helper()
	r, err := Open(v, path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var evs []Event
	for i := 0; i < 1<<20; i++ {
		ev, err := r.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	t.Fatal("too many events")
	return nil, nil
}

// splitFile cuts a recording file into its header line and chunk frames
// (length prefix included).
func splitFile(t testing.TB, data []byte) (header []byte, frames [][]byte) {
	t.Helper()
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		t.Fatal("no header line")
	}
	header, rest := data[:i+1], data[i+1:]
	for len(rest) > 0 {
		if len(rest) < 4 {
			t.Fatalf("trailing %d bytes", len(rest))
		}
		n := int(binary.BigEndian.Uint32(rest)) + 4
		if n > len(rest) {
			t.Fatalf("frame of %d bytes, %d left", n, len(rest))
		}
		frames = append(frames, rest[:n])
		rest = rest[n:]
	}
	return header, frames
}

func join(header []byte, frames ...[]byte) []byte {
	out := bytes.Clone(header)
	for _, f := range frames {
		out = append(out, f...)
	}
	return out
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	must(t, os.WriteFile(path, data, 0o600))
}

// outputText concatenates the data of all output events.
func outputText(evs []Event) string {
	var b bytes.Buffer
	for _, ev := range evs {
		if ev.Type == EvOutput {
			b.Write(ev.Data)
		}
	}
	return b.String()
}

func isErr(err, target error) bool { return errors.Is(err, target) }
