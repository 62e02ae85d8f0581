package sftpproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sort"
	"sync"
)

// Bounds on the reordering buffer of a streamHash. The request server runs
// reads and writes of one handle on several workers and clients pipeline
// dozens of 32 KiB requests, so chunks arrive slightly out of order; these
// bounds absorb that without letting a client make the gateway hold a whole
// file in memory.
const (
	maxPendingChunks = 64
	maxPendingBytes  = 4 << 20
)

// streamHash counts and hashes the bytes that pass one way through an open
// file. While access is sequential it hashes in offset order, buffering a
// bounded number of chunks that arrive early, so the digest equals the
// SHA-256 of the file content transferred. When access turns out not to be
// sequential (a gap that never fills, an overlap, a re-read, or reordering
// beyond the bounds) it hashes what it had buffered in offset order and
// everything after that in arrival order, and reports sequential=false.
type streamHash struct {
	mu         sync.Mutex
	h          hash.Hash
	next       int64            // offset of the next byte expected in order
	pending    map[int64][]byte // early chunks by offset (copies)
	pendingLen int
	total      int64
	inOrder    bool
}

func newStreamHash() *streamHash {
	return &streamHash{h: sha256.New(), pending: make(map[int64][]byte), inOrder: true}
}

// add accounts for p having passed at offset off. p is copied if kept.
func (s *streamHash) add(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
		if dup || len(s.pending) >= maxPendingChunks || s.pendingLen+len(p) > maxPendingBytes {
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
