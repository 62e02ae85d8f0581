package record

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestSpoolRidesOutAnOutage: with the spool, a recording that runs while
// PostgreSQL is stopped goes on — its flushes sync to the spool — and,
// once the server is back, one upload pass brings every part into the
// database: the recording reads whole, from any node. A new recording
// still needs the database to start (fail closed).
func TestSpoolRidesOutAnOutage(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	db := openRecordingDB(t, pg.NewDatabase(t))
	st, err := NewSQL(db).WithSpool(filepath.Join(t.TempDir(), "spool"))
	must(t, err)
	e := newEnv(t)
	e.st, e.db = st, db
	w := e.create(t, e.meta("s-spooled", KindPTY), Options{})
	must(t, w.Output([]byte("before the outage\r\n")))
	must(t, w.Flush())
	must(t, st.Upload(context.Background()))

	must(t, pg.Stop())
	must(t, w.Output([]byte("during the outage\r\n")))
	if err := w.Flush(); err != nil {
		t.Fatalf("a flush during the outage: %v (the spool takes it)", err)
	}
	if _, err := Create(e.v, st, e.meta("s-new", KindPTY), Options{Tick: make(chan time.Time)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a new recording during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatalf("Close during the outage: %v", err)
	}
	if err := st.Upload(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("upload during the outage: %v, want ErrUnavailable", err)
	}
	if n, _ := st.Spooled(); n != 1 {
		t.Fatalf("spooled objects during the outage: %d", n)
	}

	must(t, pg.Start())
	must(t, st.Upload(context.Background()))
	if n, _ := st.Spooled(); n != 0 {
		t.Fatalf("spooled objects after the upload: %d", n)
	}
	evs, err := readAll(t, e, w.Path())
	must(t, err)
	if got := outputText(evs); got != "before the outage\r\nduring the outage\r\n" {
		t.Fatalf("the recording after the outage holds %q", got)
	}
	// A second pass finds nothing and changes nothing.
	must(t, st.Upload(context.Background()))
}

// TestSpoolFrames: frames read back as written; a frame cut short or
// with a changed byte ends the file there (it was never synced whole).
func TestSpoolFrames(t *testing.T) {
	var b []byte
	b = appendFrame(b, frame{seq: 0, pos: 0, data: []byte("header")})
	b = appendFrame(b, frame{seq: 1, pos: 6, flags: frameClosed, data: []byte("chunk")})
	r := bytes.NewReader(b)
	for i, want := range []string{"header", "chunk"} {
		fr, err := readFrame(r)
		if err != nil || string(fr.data) != want || fr.seq != int64(i) {
			t.Fatalf("frame %d: %+v %v", i, fr, err)
		}
	}
	if _, err := readFrame(r); err == nil {
		t.Fatal("a frame past the end")
	}
	one := appendFrame(nil, frame{data: []byte("x")})
	for _, cut := range []int{1, frameHead, len(one) - 1} {
		fr, err := readFrame(bytes.NewReader(one[:cut]))
		if err == nil {
			t.Fatalf("a frame cut at %d read as %+v", cut, fr)
		}
	}
	bad := appendFrame(nil, frame{data: []byte("payload")})
	bad[frameHead+2] ^= 1
	if _, err := readFrame(bytes.NewReader(bad)); err == nil {
		t.Fatal("a changed frame passed its checksum")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frame{seq: 3, pos: 9, data: []byte("abc")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := readFrame(bytes.NewReader(b))
		if err == nil && len(fr.data) > spoolMaxFrame {
			t.Fatalf("a frame of %d bytes", len(fr.data))
		}
	})
}
