package record

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The spool keeps a recording's parts on the gateway's own disk until the
// database has them. With it, a recording in the shared storage syncs to
// local disk (fast, and durable within the flush interval, as a file is)
// and a background uploader moves the parts to PostgreSQL in order. The
// session never waits for the database: output is not held while it is
// slow, and a PostgreSQL restart ends no live session; the parts wait in
// the spool and reach the database when it is back. What the database
// does not have yet, other nodes do not see yet.
//
// One file per object, <spool>/<object id>.parts, a sequence of frames:
//
//	seq u64 | pos u64 | flags u8 | len u32 | data | crc32 (IEEE) u32
//
// over everything before the checksum. flags 1 marks the object's last
// frame (closed). A frame cut short by a crash fails its length or
// checksum and ends the file: it was never synced. The uploader inserts
// parts idempotently (ON CONFLICT DO NOTHING), so a pass interrupted by a
// crash is repeated at the next start without harm, and removes the file
// once its last frame is in the database.

const (
	spoolExt      = ".parts"
	frameHead     = 8 + 8 + 1 + 4
	frameClosed   = 1
	spoolMaxFrame = sqlPartMax + frameHead + 4 // a part is at most sqlPartMax (Write spills at that size)
)

// WithSpool makes s write through the spool directory dir (created 0700)
// and returns s. The caller runs the uploader (RunUploader).
func (s *SQL) WithSpool(dir string) (*SQL, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record: spool: %w", err)
	}
	s.spool, s.kick, s.uploaded = dir, make(chan struct{}, 1), map[int64]int64{}
	return s, nil
}

func (s *SQL) spoolPath(id int64) string {
	return filepath.Join(s.spool, strconv.FormatInt(id, 10)+spoolExt)
}

// wake asks the uploader for a pass; it never waits.
func (s *SQL) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// RunUploader moves spooled parts to the database: at once when a
// recording syncs, and every interval while parts wait (the database
// being away). It returns when ctx ends; parts left wait in the spool for
// the next start.
func (s *SQL) RunUploader(ctx context.Context, every time.Duration, warn func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Upload(ctx); err != nil && ctx.Err() == nil && warn != nil {
			warn(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
	}
}

// Upload makes one pass over the spool: every complete frame of every file
// into the database, in order, and the files of closed objects whose last
// frame is in removed. It stops at the first file the database refuses.
func (s *SQL) Upload(ctx context.Context) error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	files, err := filepath.Glob(filepath.Join(s.spool, "*"+spoolExt))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := s.uploadFile(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// Spooled reports how many objects have parts the database does not have
// yet, and the time the oldest of their files was last written.
func (s *SQL) Spooled() (n int, oldest time.Time) {
	files, _ := filepath.Glob(filepath.Join(s.spool, "*"+spoolExt))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n++
			if oldest.IsZero() || st.ModTime().Before(oldest) {
				oldest = st.ModTime()
			}
		}
	}
	return n, oldest
}

func (s *SQL) uploadFile(ctx context.Context, path string) error {
	id, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(path), spoolExt), 10, 64)
	if err != nil {
		return nil // not ours
	}
	// A file no appender of this process writes is left by a process
	// that ended without closing it (a crash): what it synced is all
	// there will be.
	_, live := s.writing.Load(id)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record: spool: %w", err)
	}
	defer f.Close()
	off := s.uploaded[id]
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("record: spool: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	closed := false
	for {
		fr, err := readFrame(r)
		if err != nil {
			break // the end, or a frame still being written (or cut by a crash)
		}
		if err := s.insertPart(ctx, id, fr.seq, fr.pos, fr.data); err != nil {
			return err
		}
		off += int64(frameHead + len(fr.data) + 4)
		s.uploaded[id] = off
		closed = closed || fr.flags&frameClosed != 0
	}
	if closed || !live {
		delete(s.uploaded, id)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("record: spool: %w", err)
		}
	}
	return nil
}

// insertPart stores one part; a part already there (an earlier pass that
// did not get to remove its file) is left as it is.
func (s *SQL) insertPart(ctx context.Context, id, seq, pos int64, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO recording_parts (object, seq, pos, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (object, seq) DO NOTHING`, id, seq, pos, data); err != nil {
		return s.unavailable(fmt.Sprintf("store part %d of object %d", seq, id), err)
	}
	return nil
}

type frame struct {
	seq, pos int64
	flags    byte
	data     []byte
}

func appendFrame(b []byte, fr frame) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint64(b, uint64(fr.seq))
	b = binary.BigEndian.AppendUint64(b, uint64(fr.pos))
	b = append(b, fr.flags)
	b = binary.BigEndian.AppendUint32(b, uint32(len(fr.data)))
	b = append(b, fr.data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

var errTornFrame = errors.New("record: spool: a frame cut short")

func readFrame(r io.Reader) (frame, error) {
	var head [frameHead]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(head[17:21])
	if n > spoolMaxFrame {
		return frame{}, errTornFrame
	}
	rest := make([]byte, int(n)+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return frame{}, errTornFrame
	}
	crc := crc32.ChecksumIEEE(head[:])
	crc = crc32.Update(crc, crc32.IEEETable, rest[:n])
	if crc != binary.BigEndian.Uint32(rest[n:]) {
		return frame{}, errTornFrame
	}
	return frame{seq: int64(binary.BigEndian.Uint64(head[0:8])), pos: int64(binary.BigEndian.Uint64(head[8:16])),
		flags: head[16], data: rest[:n]}, nil
}

// spoolFile is an appender's spool file.
type spoolFile struct {
	f   *os.File
	buf []byte
	mu  sync.Mutex
}

func createSpoolFile(path string) (*spoolFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record: spool: %w", err)
	}
	return &spoolFile{f: f}, nil
}

// put writes one frame in a single write, so that the uploader reading
// alongside sees it whole or not at all (its checksum tells).
func (sf *spoolFile) put(fr frame, sync bool) error {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.buf = appendFrame(sf.buf[:0], fr)
	if _, err := sf.f.Write(sf.buf); err != nil {
		return fmt.Errorf("record: spool: %w", err)
	}
	if cap(sf.buf) > 2*DefaultChunkSize {
		sf.buf = nil
	}
	if sync {
		if err := sf.f.Sync(); err != nil {
			return fmt.Errorf("record: spool: %w", err)
		}
	}
	return nil
}
