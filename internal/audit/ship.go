package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/formats/log"

	"tandem.dev/tandem/internal/vault"
)

// What a shipper needs to send the log elsewhere exactly as it is stored
// (internal/syslog, docs/CENTRAL-LOG.md): records read from a position
// without keys, what each shows in clear, and the signed checkpoints.

// Position is a place in one segment's records.log: the index of the next
// record and its byte offset.
type Position struct {
	Index  uint64 `json:"index"`
	Offset int64  `json:"offset"`
}

// PartInfo is what a v2 record shows of one encrypted part.
type PartInfo struct {
	Class    vault.Class
	Day      string
	Key      string
	CTSHA256 string
}

// Envelope is what a record shows without keys: index, tenant, time and
// type, and of a v2 record the class, day, key id and ciphertext hash of
// each part. V is the record format (1: every field in clear).
type Envelope struct {
	Index  uint64
	Tenant string
	Time   time.Time
	Type   Type
	Parts  []PartInfo
	V      int
}

// OpenEnvelope reads the clear fields of a canonical record.
func OpenEnvelope(raw []byte) (Envelope, error) {
	if !isV2(raw) {
		idx, e, err := decodeV1(raw)
		return Envelope{Index: idx, Tenant: e.Tenant, Time: e.Time, Type: e.Type, V: 1}, err
	}
	var w wireV2
	if err := json.Unmarshal(raw, &w); err != nil || w.Index == nil {
		return Envelope{}, fmt.Errorf("decode record: %v", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Envelope{}, fmt.Errorf("decode record: time: %w", err)
	}
	if err := checkWireV2(&w, ts, raw); err != nil {
		return Envelope{}, fmt.Errorf("decode record: %w", err)
	}
	env := Envelope{Index: *w.Index, Tenant: w.Tenant, Time: ts.UTC(), Type: w.Type, V: recordV2}
	for _, p := range w.Parts {
		env.Parts = append(env.Parts, PartInfo{Class: p.Class, Day: p.Day, Key: p.Key, CTSHA256: p.CTSHA256})
	}
	return env, nil
}

// SegmentDirs returns the directories of the log's segments in order: the
// closed ones, then dir itself (the current segment). Segment n is at
// index n-1.
func SegmentDirs(dir string) ([]string, error) {
	closed, err := closedSegments(dir)
	if err != nil {
		return nil, err
	}
	return append(closed, dir), nil
}

// ReadFrom calls fn with the canonical bytes of every record of the
// segment in dir from position from on, up to (not including) index
// limit, with the position after each record. The bytes are valid only
// during the call. A wrong offset (the file is not where from says) is
// corrected by reading from the start. An unfinished record at the end
// ends the read quietly, as in Read.
func ReadFrom(dir string, from Position, limit uint64, fn func(raw []byte, next Position) error) error {
	if from.Index >= limit {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, recordsFile))
	if err != nil {
		return fmt.Errorf("audit: open records: %w", err)
	}
	defer f.Close()
	fr, err := seekFrame(f, from)
	if err != nil {
		return err
	}
	for i := from.Index; i < limit; i++ {
		payload, err := fr.next()
		var fe *frameError
		if err == io.EOF || errors.As(err, &fe) && fe.Torn {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: record %d: %w", i, err)
		}
		if idx, ok := fastIndex(payload); !ok || idx != i {
			return fmt.Errorf("audit: record %d claims index %d", i, idx)
		}
		if err := fn(payload, Position{Index: i + 1, Offset: fr.off}); err != nil {
			return err
		}
	}
	return nil
}

// seekFrame returns a frame reader standing at from: at its offset if the
// record there has its index, else after reading from the start.
func seekFrame(f *os.File, from Position) (*frameReader, error) {
	if from.Offset > 0 {
		if _, err := f.Seek(from.Offset, io.SeekStart); err != nil {
			return nil, fmt.Errorf("audit: seek records: %w", err)
		}
		fr := newFrameReader(bufio.NewReaderSize(f, 1<<16))
		if p, err := fr.next(); err == nil {
			if idx, ok := fastIndex(p); ok && idx == from.Index {
				if _, err := f.Seek(from.Offset, io.SeekStart); err != nil {
					return nil, fmt.Errorf("audit: seek records: %w", err)
				}
				fr = newFrameReader(bufio.NewReaderSize(f, 1<<16))
				fr.off = from.Offset
				return fr, nil
			}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("audit: seek records: %w", err)
		}
	}
	fr := newFrameReader(bufio.NewReaderSize(f, 1<<16))
	for i := uint64(0); i < from.Index; i++ {
		if _, err := fr.next(); err != nil {
			return nil, fmt.Errorf("audit: find record %d: %w", from.Index, err)
		}
	}
	return fr, nil
}

// SignedCheckpoint is one signed note from a checkpoint file, with the
// tree size and origin its body states (the signature is not checked
// here; Verify does that).
type SignedCheckpoint struct {
	Note   []byte
	Size   uint64
	Origin string
	Next   int64 // offset in the file after this note
}

// CheckpointsEnd is the size of the checkpoints file of the segment in
// dir: no reader's offset into it may lie beyond.
func CheckpointsEnd(dir string) (int64, error) {
	st, err := os.Stat(filepath.Join(dir, checkpointsFile))
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoints: %w", err)
	}
	return st.Size(), nil
}

// ReadCheckpointsFrom calls fn for every complete checkpoint of the
// segment in dir from byte offset on; an unfinished note at the end ends
// the read quietly.
func ReadCheckpointsFrom(dir string, offset int64, fn func(SignedCheckpoint) error) error {
	f, err := os.Open(filepath.Join(dir, checkpointsFile))
	if err != nil {
		return fmt.Errorf("audit: open checkpoints: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("audit: seek checkpoints: %w", err)
	}
	err = readNotes(f, func(n rawNote) error {
		body, _, ok := bytes.Cut(n.Text, []byte("\n\n"))
		var cp log.Checkpoint
		if _, err := cp.Unmarshal(append(body, '\n')); !ok || err != nil {
			return fmt.Errorf("audit: checkpoint at byte %d: not a checkpoint", offset+n.Offset)
		}
		return fn(SignedCheckpoint{Note: n.Text, Size: cp.Size, Origin: cp.Origin, Next: offset + n.Offset + int64(len(n.Text))})
	})
	var ne *noteError
	if errors.As(err, &ne) && ne.Torn {
		return nil
	}
	return err
}
