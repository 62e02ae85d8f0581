package sftpproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

type chunk struct {
	off int64
	n   int
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestStreamHash(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	whole := sumHex(data)
	tests := []struct {
		name    string
		chunks  []chunk
		seq     bool
		digest  string // empty: only check sequential and total
		wantLen int64
	}{
		{"in order", []chunk{{0, 300}, {300, 300}, {600, 400}}, true, whole, 1000},
		{"reordered", []chunk{{300, 300}, {600, 400}, {0, 300}}, true, whole, 1000},
		{"one chunk", []chunk{{0, 1000}}, true, whole, 1000},
		{"empty", nil, true, sumHex(nil), 0},
		{"gap never filled", []chunk{{0, 100}, {200, 100}}, false,
			sumHex(append(append([]byte{}, data[:100]...), data[200:300]...)), 200},
		{"re-read", []chunk{{0, 100}, {0, 100}}, false,
			sumHex(append(append([]byte{}, data[:100]...), data[:100]...)), 200},
		{"overlap", []chunk{{0, 100}, {50, 100}}, false,
			sumHex(append(append([]byte{}, data[:100]...), data[50:150]...)), 200},
		{"duplicate pending", []chunk{{500, 10}, {500, 10}}, false,
			sumHex(append(append([]byte{}, data[500:510]...), data[500:510]...)), 20},
		{"start past zero", []chunk{{100, 900}}, false, sumHex(data[100:]), 900},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStreamHash(newPendingBudget())
			for _, c := range tc.chunks {
				s.add(data[c.off:c.off+int64(c.n)], c.off)
			}
			n, d, seq := s.sum()
			if n != tc.wantLen || seq != tc.seq || (tc.digest != "" && d != tc.digest) {
				t.Fatalf("got (%d, %s, %v), want (%d, %s, %v)", n, d, seq, tc.wantLen, tc.digest, tc.seq)
			}
		})
	}
}

// TestStreamHashBounds: reordering beyond the buffer bounds gives up on
// order but still counts every byte, and the early chunks are hashed in
// offset order.
func TestStreamHashBounds(t *testing.T) {
	s := newStreamHash(newPendingBudget())
	const n = maxPendingChunks + 2
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := n - 1; i >= 1; i-- { // everything but byte 0, backwards
		s.add(buf[i:i+1], int64(i))
	}
	s.add(buf[:1], 0)
	total, _, seq := s.sum()
	if total != n || seq {
		t.Fatalf("total %d seq %v, want %d false", total, seq, n)
	}
}

// FuzzStreamHash: any split of a buffer into chunks delivered with bounded
// reordering (as pipelined clients and worker pools produce) hashes to the
// SHA-256 of the buffer and counts as sequential.
func FuzzStreamHash(f *testing.F) {
	f.Add([]byte("hello, world"), uint64(1), uint8(3))
	f.Add(make([]byte, 5000), uint64(42), uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, window uint8) {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var chunks []chunk
		for off := 0; off < len(data); {
			n := 1 + r.IntN(64)
			if off+n > len(data) {
				n = len(data) - off
			}
			chunks = append(chunks, chunk{int64(off), n})
			off += n
		}
		// Shuffle within windows smaller than the pending bound.
		w := 1 + int(window)%(maxPendingChunks/2)
		for i := 0; i < len(chunks); i += w {
			end := min(i+w, len(chunks))
			r.Shuffle(end-i, func(a, b int) { chunks[i+a], chunks[i+b] = chunks[i+b], chunks[i+a] })
		}
		s := newStreamHash(newPendingBudget())
		for _, c := range chunks {
			s.add(data[c.off:c.off+int64(c.n)], c.off)
		}
		n, d, seq := s.sum()
		if n != int64(len(data)) || !seq || d != sumHex(data) {
			t.Fatalf("got (%d, %s, %v) for %d bytes", n, d, seq, len(data))
		}
	})
}

// TestStreamHashWindow: OpenSSH's window of 64 outstanding requests of
// 255 KiB, the first one finishing last, is still hashed in offset order.
func TestStreamHashWindow(t *testing.T) {
	const chunk, n = 255 << 10, 64
	data := make([]byte, chunk*n)
	for i := range data {
		data[i] = byte(i * 31)
	}
	b := newPendingBudget()
	s := newStreamHash(b)
	for i := 1; i < n; i++ {
		s.add(data[i*chunk:(i+1)*chunk], int64(i*chunk))
	}
	s.add(data[:chunk], 0)
	total, d, seq := s.sum()
	if total != int64(len(data)) || !seq || d != sumHex(data) {
		t.Fatalf("got (%d, %s, %v), want the whole window in order", total, d, seq)
	}
	if b.left.Load() != maxSessionPending {
		t.Fatalf("budget %d after the drain, want %d back", b.left.Load(), maxSessionPending)
	}
}

// TestStreamHashSessionBudget: files of one session share the budget; a
// file that would exceed it is hashed in arrival order and marked
// non-sequential, and what it had buffered is given back.
func TestStreamHashSessionBudget(t *testing.T) {
	b := newPendingBudget()
	big := make([]byte, maxPendingBytes-1)
	var files []*streamHash
	for range maxSessionPending / len(big) {
		s := newStreamHash(b)
		s.add(big, 1) // offset 1: waits for byte 0
		files = append(files, s)
	}
	last := newStreamHash(b)
	last.add(big, 1)
	if _, _, seq := last.sum(); seq {
		t.Fatal("a file beyond the session's budget stayed sequential")
	}
	for _, s := range files {
		s.add([]byte{0}, 0)
		if _, _, seq := s.sum(); !seq {
			t.Fatal("a file within the budget lost its order")
		}
	}
	if b.left.Load() != maxSessionPending {
		t.Fatalf("budget %d at the end, want %d", b.left.Load(), maxSessionPending)
	}
}
