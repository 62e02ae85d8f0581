package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// readSegmentStart reads the first record of segment n (n ≥ 2) in dir,
// which must be the log.segment event Recover wrote.
func readSegmentStart(dir string, n int) (LogSegmentEvent, error) {
	f, err := os.Open(filepath.Join(dir, recordsFile))
	if err != nil {
		return LogSegmentEvent{}, fmt.Errorf("its first record cannot be read: %w", err)
	}
	defer f.Close()
	payload, err := newFrameReader(bufio.NewReader(f)).next()
	if err != nil {
		return LogSegmentEvent{}, fmt.Errorf("its first record cannot be read: %v", err)
	}
	idx, e, err := DecodeRecord(payload)
	switch {
	case err != nil:
		return LogSegmentEvent{}, fmt.Errorf("its first record: %v", err)
	case idx != 0 || e.Type != LogSegment:
		return LogSegmentEvent{}, fmt.Errorf("its first record is %s (index %d), not the log.segment a recovery writes", e.Type, idx)
	}
	s, err := parseSegmentEvent(e)
	if err == nil && s.Segment != n {
		err = fmt.Errorf("its log.segment record names segment %d", s.Segment)
	}
	return s, err
}

func parseSegmentEvent(e Event) (LogSegmentEvent, error) {
	s := LogSegmentEvent{Time: e.Time, AnchorRoot: e.Attrs["anchor_root"], Reason: e.Attrs["reason"]}
	var errs []error
	num := func(key string) uint64 {
		v, err := strconv.ParseUint(e.Attrs[key], 10, 63)
		if err != nil {
			errs = append(errs, fmt.Errorf("log.segment %s %q", key, e.Attrs[key]))
		}
		return v
	}
	s.Segment, s.Previous = int(num("segment")), int(num("previous"))
	s.AnchorSize, s.LostFrom, s.LostTo = num("anchor_size"), num("lost_from"), num("lost_to")
	s.LostBytes = int64(num("lost_bytes"))
	return s, errors.Join(errs...)
}

// verifyClosed checks closed segment n (in dir) up to its anchor: the
// records before it must reproduce the anchor root that the next
// segment's log.segment record (in next) names, and agree with the
// witness; what lies beyond is reported as the recovery's gap.
func verifyClosed(dir string, n int, next string, kc *keyChain, wcps []cpEntry, haveWitness, deep bool, keys KeyReader, rep *Report) error {
	start, err := readSegmentStart(next, n+1)
	if err != nil {
		rep.bad(-1, "segment %d: %v; segment %d cannot be tied to it", n+1, err, n)
		return nil
	}
	// The closed segment's own checkpoints only tell which checkpoints its
	// log.checkpoint records may name; damage in them is part of the gap.
	cps, _ := readCheckpoints(filepath.Join(dir, checkpointsFile), "checkpoints.log", kc, &Report{FirstBad: -1})
	haveCP := map[uint64]bool{}
	for _, list := range [][]cpEntry{cps, wcps} {
		for _, c := range list {
			haveCP[c.Size] = c.Size <= start.AnchorSize
		}
	}
	w := newTreeWalk()
	w.deep, w.keys = deep, keys
	w.roots[start.AnchorSize] = nil
	for _, c := range wcps {
		w.roots[c.Size] = nil
	}
	if err := w.walkPrefix(dir, n, start.AnchorSize, rep, haveCP); err != nil {
		return err
	}
	if root := w.roots[start.AnchorSize]; root == nil || rootString(root) != start.AnchorRoot {
		rep.bad(-1, "segment %d: its first %d records do not give the anchor root that segment %d's log.segment recorded", n, start.AnchorSize, n+1)
	}
	anchored := start.AnchorSize == 0
	for _, c := range wcps {
		switch root := w.roots[c.Size]; {
		case c.Size > start.AnchorSize:
			if c.Size > start.LostTo {
				rep.bad(-1, "segment %d: the witness has a checkpoint at size %d, beyond the %d records the recovery says existed", n, c.Size, start.LostTo)
			}
		case !bytes.Equal(root, c.Root):
			rep.bad(-1, "segment %d: the log diverges from the witnessed checkpoint at size %d, before the recovery's anchor", n, c.Size)
		case c.Size == start.AnchorSize:
			anchored = true
		}
	}
	if haveWitness && !anchored {
		rep.bad(-1, "segment %d: the anchor at size %d that segment %d starts from is not a witnessed checkpoint", n, start.AnchorSize, n+1)
	}
	rep.Gaps = append(rep.Gaps, gapText(n, start))
	return nil
}

func gapText(n int, s LogSegmentEvent) string {
	lost := "no records lost"
	if s.LostTo > s.LostFrom {
		lost = fmt.Sprintf("indices %d–%d of segment %d lost", s.LostFrom, s.LostTo-1, n)
	}
	return fmt.Sprintf("segment %d starts after a recovery at %s: %s (%d bytes after the anchor at size %d; reason: %s); segment %d's files are kept in audit/segments/%s",
		n+1, s.Time.UTC().Format("2006-01-02T15:04:05Z"), lost, s.LostBytes, s.AnchorSize, s.Reason, n, segmentName(n))
}

// walkPrefix checks the first size records of closed segment n the way
// walkRecords checks a whole segment, hashing them from records.log (its
// leaves.bin may be the damaged file).
func (w *treeWalk) walkPrefix(dir string, n int, size uint64, rep *Report, haveCP map[uint64]bool) error {
	f, err := os.Open(filepath.Join(dir, recordsFile))
	if err != nil {
		return fmt.Errorf("audit: segment %d: %w", n, err)
	}
	defer f.Close()
	fr := newFrameReader(bufio.NewReaderSize(f, 1<<16))
	w.start()
	sub := &Report{FirstBad: -1}
	for i := uint64(0); i < size; i++ {
		payload, err := fr.next()
		if err != nil {
			rep.bad(-1, "segment %d: only %d records can be read before its anchor at size %d", n, i, size)
			return nil
		}
		w.checkRecord(i, payload, sub, haveCP)
		leaf, err := leafHash(payload)
		if err != nil {
			rep.bad(-1, "segment %d: record %d is not a record: %v", n, i, err)
			return nil
		}
		if err := w.add(leaf); err != nil {
			return err
		}
	}
	for _, p := range sub.Problems {
		rep.bad(-1, "segment %d: %s", n, p)
	}
	return nil
}
