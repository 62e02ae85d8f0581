package syslog

import (
	"errors"
	"fmt"
	"math"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// errBatchFull stops a read once a batch is full; errWait stops at a
// checkpoint whose records are not all sent yet.
var (
	errBatchFull = errors.New("batch full")
	errWait      = errors.New("checkpoint ahead of the records")
)

// batch is the messages of one write, framed.
type batch struct {
	buf []byte
	n   int
}

func (b *batch) add(msg []byte) {
	b.buf = appendFrame(b.buf, msg)
	b.n++
}

func (b *batch) full() bool { return b.n >= batchRecords || len(b.buf) >= batchBytes }

// send writes the next batch from sent on: records up to what is
// durable, then the checkpoints those records complete, and moves sent
// past them. It reports how many messages it wrote and whether the batch
// was full (more may be waiting).
func (c *collector) send(conn interface {
	Write([]byte) (int, error)
	SetWriteDeadline(time.Time) error
}, sent *cursor) (int, bool, error) {
	var b batch
	next, err := c.s.fill(&b, *sent)
	if err != nil {
		return 0, false, err
	}
	if b.n > 0 {
		// The real clock: o.Now may be a test's clock, moved by days.
		if err := conn.SetWriteDeadline(time.Now().Add(c.s.o.Config.Timeout.Duration)); err != nil {
			return 0, false, err
		}
		if _, err := conn.Write(b.buf); err != nil {
			return 0, false, fmt.Errorf("write: %w", err)
		}
	}
	*sent = next
	return b.n, b.full(), nil
}

// fill adds to b what follows cur and returns the cursor after it. A
// closed segment is sent to its end and then left for the next one.
func (s *Shipper) fill(b *batch, cur cursor) (cursor, error) {
	dir := s.segDirs[cur.Segment-1]
	closed := cur.Segment < len(s.segDirs)
	limit := uint64(math.MaxUint64)
	if !closed {
		limit = s.o.Durable()
	}
	err := audit.ReadFrom(dir, cur.Next, limit, func(raw []byte, next audit.Position) error {
		env, err := audit.OpenEnvelope(raw)
		if err != nil {
			return fmt.Errorf("syslog: segment %d record %d: %w", cur.Segment, cur.Next.Index, err)
		}
		b.add(s.hdr.recordMessage(cur.Segment, env, raw))
		cur.Next = next
		if b.full() {
			return errBatchFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		if !closed {
			return cur, err
		}
		// A closed segment was closed because it is damaged; what could
		// be read went, the loss is recorded in the next one's log.segment.
		s.o.Log.Warn("syslog: the rest of a closed log segment cannot be read; going on with the next", "segment", cur.Segment, "err", err)
		return cursor{Segment: cur.Segment + 1}, nil
	}
	if b.full() {
		return cur, nil
	}
	err = audit.ReadCheckpointsFrom(dir, cur.Checkpoints, func(cp audit.SignedCheckpoint) error {
		if !closed && cp.Size > cur.Next.Index {
			return errWait // it covers records not sent yet
		}
		b.add(s.hdr.checkpointMessage(cur.Segment, cp, s.o.Now()))
		cur.Checkpoints = cp.Next
		if b.full() {
			return errBatchFull
		}
		return nil
	})
	switch {
	case err == nil && closed:
		return cursor{Segment: cur.Segment + 1}, nil
	case err != nil && !errors.Is(err, errBatchFull) && !errors.Is(err, errWait):
		if !closed {
			return cur, err
		}
		// As for the records above: its checkpoints.log may be what was
		// damaged.
		s.o.Log.Warn("syslog: the rest of a closed log segment's checkpoints cannot be read; going on with the next", "segment", cur.Segment, "err", err)
		return cursor{Segment: cur.Segment + 1}, nil
	}
	return cur, nil
}
