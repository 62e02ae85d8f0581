package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A log is a chain of segments. The current segment is the log directory
// itself; Recover closes a damaged one by moving its files, untouched, to
// segments/NNNN and starts a new segment whose first record, log.segment,
// names the last checkpoint of the closed one that the witness confirms
// (the anchor) and what lies beyond it (the gap). Checkpoints of segment
// N ≥ 2 carry the origin "<origin>/segment/N", so that the witness file,
// which receives every segment's checkpoints, tells them apart.

const segmentsDir = "segments"

const segmentSuffix = "/segment/"

// segmentOrigin is the checkpoint origin of segment n.
func segmentOrigin(base string, n int) string {
	if n <= 1 {
		return base
	}
	return base + segmentSuffix + strconv.Itoa(n)
}

// splitOrigin is segmentOrigin's inverse.
func splitOrigin(origin string) (base string, n int) {
	if i := strings.LastIndex(origin, segmentSuffix); i > 0 {
		if n, err := strconv.Atoi(origin[i+len(segmentSuffix):]); err == nil && n >= 2 {
			return origin[:i], n
		}
	}
	return origin, 1
}

// segmentOf returns the segment number of a checkpoint origin, if it
// belongs to the log whose first segment's origin is base.
func segmentOf(base, origin string) (int, bool) {
	b, n := splitOrigin(origin)
	return n, b == base
}

// closedSegments returns the directories of the closed segments in order
// (segment 1 first). They must be numbered 0001, 0002, … without holes.
func closedSegments(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, segmentsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read segments: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		want := segmentName(len(out) + 1)
		if e.Name() != want {
			return nil, fmt.Errorf("%w: %s holds %q where segment %s was expected", ErrDamaged, filepath.Join(dir, segmentsDir), e.Name(), want)
		}
		out = append(out, filepath.Join(dir, segmentsDir, want))
	}
	return out, nil
}

func segmentName(n int) string { return fmt.Sprintf("%04d", n) }

// segmentEmpty reports whether the segment in dir has no records yet.
func segmentEmpty(dir string) (bool, error) {
	st, err := os.Stat(filepath.Join(dir, recordsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	return st.Size() == 0, nil
}

// RecoverOptions say which log to recover, and why.
type RecoverOptions struct {
	Dir         string      // the log directory
	Key         *SigningKey // the checkpoint signing key
	Origin      string      // the first segment's origin; default "tandem/audit"
	WitnessFile string      // required: the anchor must be a witnessed checkpoint
	Reason      string      // required: why, in the operator's words
	Keys        Keys        // required: the data keys the new segment's records are encrypted under
	Now         func() time.Time
}

// Recovery is what Recover did.
type Recovery struct {
	Closed     int    // the closed segment's number
	ClosedDir  string // where its files are now
	AnchorSize uint64 // records of the closed segment the new one carries on from
	AnchorRoot string
	Witnessed  int    // witnessed checkpoints of the closed segment that agree with it
	LostFrom   uint64 // first index lost
	LostTo     uint64 // one past the last index lost (as far as records or witness tell)
	LostBytes  int64  // bytes of records.log after the anchor
}

// Recover closes the current, damaged segment and starts a new one
// anchored to its last checkpoint that the witness confirms, whose first
// record (log.segment) says what was lost and why. The closed segment's
// files are kept as they were. Nothing may write the log meanwhile (the
// caller holds the data directory's lock). A recovery interrupted after
// the move is finished by running Recover again.
func Recover(o RecoverOptions) (*Recovery, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	closed, err := closedSegments(o.Dir)
	if err != nil {
		return nil, err
	}
	empty, err := segmentEmpty(o.Dir)
	if err != nil {
		return nil, err
	}
	var r *Recovery
	if len(closed) > 0 && empty {
		// Interrupted after the move: describe the last closed segment.
		r, err = analyse(closed[len(closed)-1], len(closed), o)
	} else {
		n := len(closed) + 1
		if r, err = analyse(o.Dir, n, o); err == nil {
			err = closeSegment(o.Dir, n)
		}
	}
	if err != nil {
		return nil, err
	}
	r.ClosedDir = filepath.Join(o.Dir, segmentsDir, segmentName(r.Closed))
	return r, startSegment(o, r)
}

func (o *RecoverOptions) check() error {
	switch {
	case o.Dir == "":
		return errors.New("audit: no log directory")
	case o.Key == nil:
		return errors.New("audit: no signing key")
	case o.Keys == nil:
		return errors.New("audit: no data keys (vault): the new segment's records are encrypted like every other")
	case strings.TrimSpace(o.Reason) == "":
		return errors.New("audit: a recovery needs a reason")
	case o.WitnessFile == "":
		return errors.New("audit: a recovery needs the witness file: only a witnessed checkpoint can anchor the new segment")
	}
	if o.Origin == "" {
		o.Origin = "tandem/audit"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// analyse finds the anchor of segment n (in dir): the largest witnessed
// checkpoint of that segment whose root the records reproduce.
func analyse(dir string, n int, o RecoverOptions) (*Recovery, error) {
	files, err := checkpointFiles(o.Dir, o.WitnessFile)
	if err != nil {
		return nil, err
	}
	kc, err := buildKeyChain(o.Key.verifier, files, &Report{FirstBad: -1})
	if err != nil {
		return nil, err
	}
	wit, err := loadWitness(o.WitnessFile, kc, &Report{FirstBad: -1})
	if err != nil {
		return nil, err
	}
	wcps := wit[n]
	r := &Recovery{Closed: n, AnchorRoot: rootString(hasher.EmptyRoot())}
	at := map[uint64][]byte{}
	for _, c := range wcps {
		at[c.Size] = c.Root
		r.LostTo = max(r.LostTo, c.Size)
	}
	var anchorOff int64
	diverged := false
	if root, ok := at[0]; ok && !bytes.Equal(root, hasher.EmptyRoot()) {
		diverged = true
	}
	total, err := scanRecords(dir, func(i uint64, off int64, root []byte) {
		want, ok := at[i]
		switch {
		case diverged || !ok:
		case bytes.Equal(want, root):
			r.AnchorSize, r.AnchorRoot, anchorOff = i, rootString(root), off
			r.Witnessed++
		default:
			diverged = true
		}
	})
	if err != nil {
		return nil, err
	}
	if at0, ok := at[0]; ok && bytes.Equal(at0, hasher.EmptyRoot()) {
		r.Witnessed = max(r.Witnessed, 1)
	}
	r.LostFrom = r.AnchorSize
	r.LostTo = max(r.LostTo, total.records, leafCount(dir))
	r.LostBytes = total.bytes - anchorOff
	return r, nil
}

type scanTotal struct {
	records uint64
	bytes   int64 // size of records.log
}

// scanRecords hashes the readable records of the segment in dir and calls
// fn before the first and after every record with the record count, the
// byte offset reached and the tree's root at that count.
func scanRecords(dir string, fn func(i uint64, off int64, root []byte)) (scanTotal, error) {
	f, err := os.Open(filepath.Join(dir, recordsFile))
	if errors.Is(err, fs.ErrNotExist) {
		fn(0, 0, hasher.EmptyRoot())
		return scanTotal{}, nil
	}
	if err != nil {
		return scanTotal{}, fmt.Errorf("audit: open records: %w", err)
	}
	defer f.Close()
	size, err := fileSize(f)
	if err != nil {
		return scanTotal{}, err
	}
	rng := rangeFactory.NewEmptyRange(0)
	fr := newFrameReader(bufio.NewReaderSize(f, 1<<16))
	fn(0, 0, hasher.EmptyRoot())
	for {
		payload, err := fr.next()
		var fe *frameError
		if err == io.EOF || errors.As(err, &fe) {
			return scanTotal{records: rng.End(), bytes: size}, nil
		}
		if err != nil {
			return scanTotal{}, fmt.Errorf("audit: read records: %w", err)
		}
		leaf, err := leafHash(payload)
		if err != nil {
			// A record that is not even a record ends what can be
			// trusted, like a torn frame.
			return scanTotal{records: rng.End(), bytes: size}, nil
		}
		if err := rng.Append(leaf, nil); err != nil {
			return scanTotal{}, err
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return scanTotal{}, err
		}
		fn(rng.End(), fr.off, root)
	}
}

// leafCount is how many records leaves.bin says were written: records
// past damage in records.log cannot be read, but their leaves count them.
func leafCount(dir string) uint64 {
	st, err := os.Stat(filepath.Join(dir, leavesFile))
	if err != nil {
		return 0
	}
	return uint64(st.Size() / 32)
}

// closeSegment moves the segment's files from dir to segments/NNNN.
func closeSegment(dir string, n int) error {
	dst := filepath.Join(dir, segmentsDir, segmentName(n))
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("audit: create %s: %w", dst, err)
	}
	for _, name := range []string{recordsFile, leavesFile, checkpointsFile} {
		err := os.Rename(filepath.Join(dir, name), filepath.Join(dst, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: move %s aside: %w", name, err)
		}
	}
	if err := syncDir(dst); err != nil {
		return err
	}
	return syncDir(dir)
}

// startSegment opens the new segment, writes its log.segment record and
// signs a checkpoint over it, which goes to the witness as well.
func startSegment(o RecoverOptions, r *Recovery) error {
	l, err := Open(Options{Dir: o.Dir, Key: o.Key, Keys: o.Keys, Origin: o.Origin, WitnessFile: o.WitnessFile, Now: o.Now, CheckpointEvery: time.Hour, newSegment: true})
	if err != nil {
		return err
	}
	ev := LogSegmentEvent{
		Segment: r.Closed + 1, Previous: r.Closed, AnchorSize: r.AnchorSize, AnchorRoot: r.AnchorRoot,
		LostFrom: r.LostFrom, LostTo: r.LostTo, LostBytes: r.LostBytes, Reason: o.Reason,
	}
	if err := l.Append(context.Background(), ev.Event()); err != nil {
		l.Close()
		return fmt.Errorf("audit: record the recovery: %w", err)
	}
	if _, err := l.Checkpoint(); err != nil {
		l.Close()
		return err
	}
	return l.Close()
}
