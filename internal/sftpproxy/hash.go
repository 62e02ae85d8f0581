package sftpproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sort"
	"sync"
	"sync/atomic"
)

// Bounds on the reordering buffer of a streamHash. The relay hashes a
// READ's data when the target's answer passes and a WRITE's when the
// target confirms it. OpenSSH's sftp-server answers in request order, so
// chunks normally come in offset order; a client that sends its requests
// out of order, or a target that answers out of order, can make a chunk
// be overtaken by at most the requests the client keeps outstanding
// behind it: 63 for OpenSSH's sftp (64 requests), of up to 255 KiB each.
// The bounds take that whole window, so a pipelining client's file is
// hashed in offset order; what goes beyond them (a client keeping more
// requests outstanding, or seeking) is hashed in arrival order and marked
// non-sequential. maxSessionPending bounds the buffers of all files of
// one SFTP session together, so that opening many handles cannot make the
// gateway hold more (M30).
const (
	maxPendingChunks  = 64
	maxPendingBytes   = 16 << 20
	maxSessionPending = 32 << 20
)

// pendingBudget is the reordering memory one SFTP session may still use.
type pendingBudget struct{ left atomic.Int64 }

func newPendingBudget() *pendingBudget {
	b := &pendingBudget{}
	b.left.Store(maxSessionPending)
	return b
}

// take reserves n bytes, or reports false without reserving any.
func (b *pendingBudget) take(n int) bool {
	if b.left.Add(-int64(n)) >= 0 {
		return true
	}
	b.left.Add(int64(n))
	return false
}

func (b *pendingBudget) give(n int) { b.left.Add(int64(n)) }

// streamHash counts and hashes the bytes that pass one way through an open
// file. While access is sequential it hashes in offset order, buffering a
// bounded number of chunks that arrive early, so the digest equals the
// SHA-256 of the file content transferred. When access turns out not to be
// sequential (a gap that never fills, an overlap, a re-read, or reordering
// beyond the bounds) it hashes what it had buffered in offset order and
// everything after that in arrival order, and reports sequential=false.
type streamHash struct {
	mu         sync.Mutex
	budget     *pendingBudget // the session's, shared by its files
	h          hash.Hash
	next       int64            // offset of the next byte expected in order
	pending    map[int64][]byte // early chunks by offset (copies)
	pendingLen int
	total      int64
	inOrder    bool
}

func newStreamHash(budget *pendingBudget) *streamHash {
	return &streamHash{budget: budget, h: sha256.New(), pending: make(map[int64][]byte), inOrder: true}
}

// add accounts for p having passed at offset off. p is copied if kept.
func (s *streamHash) add(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(p, off)
}

// addNext accounts for p as the bytes that follow those before it,
// whatever offset its request named: writes to a file opened for
// appending.
func (s *streamHash) addNext(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(p, s.next)
}

func (s *streamHash) addLocked(p []byte, off int64) {
	s.total += int64(len(p))
	if !s.inOrder {
		s.h.Write(p)
		return
	}
	switch {
	case off == s.next:
		s.h.Write(p)
		s.next += int64(len(p))
		s.drainLocked()
	case off > s.next:
		_, dup := s.pending[off]
		if dup || len(s.pending) >= maxPendingChunks || s.pendingLen+len(p) > maxPendingBytes || !s.budget.take(len(p)) {
			s.giveUpLocked(p, off)
			return
		}
		s.pending[off] = bytes.Clone(p)
		s.pendingLen += len(p)
	default: // before the next expected byte: a re-read, rewrite or overlap
		s.giveUpLocked(p, off)
	}
}

// drainLocked hashes buffered chunks that have become next in order.
func (s *streamHash) drainLocked() {
	for len(s.pending) > 0 {
		b, ok := s.pending[s.next]
		if !ok {
			return
		}
		delete(s.pending, s.next)
		s.pendingLen -= len(b)
		s.budget.give(len(b))
		s.h.Write(b)
		s.next += int64(len(b))
	}
}

// giveUpLocked marks the stream non-sequential and hashes the buffered
// chunks, plus p at off if p is non-nil, in offset order (p last among
// chunks of the same offset).
func (s *streamHash) giveUpLocked(p []byte, off int64) {
	s.inOrder = false
	offs := make([]int64, 0, len(s.pending))
	for o := range s.pending {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	wrote := p == nil
	for _, o := range offs {
		if !wrote && off < o {
			s.h.Write(p)
			wrote = true
		}
		s.h.Write(s.pending[o])
	}
	if !wrote {
		s.h.Write(p)
	}
	clear(s.pending)
	s.budget.give(s.pendingLen)
	s.pendingLen = 0
}

// sum finishes the stream: chunks still buffered mean a gap that was never
// filled, so the stream is non-sequential. It returns the byte count, the
// hex SHA-256 and whether access was sequential.
func (s *streamHash) sum() (total int64, digest string, sequential bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 0 {
		s.giveUpLocked(nil, 0)
	}
	return s.total, hex.EncodeToString(s.h.Sum(nil)), s.inOrder
}
