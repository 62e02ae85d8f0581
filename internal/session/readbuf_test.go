package session

import "testing"

func TestReadBuf(t *testing.T) {
	tests := []struct {
		name  string
		reads []int // bytes each read returns; -1: fill the buffer
		want  int   // buffer size for the next read
	}{
		{"starts small", nil, 1024},
		{"small reads keep it small", []int{3, 1, 1024 / 2}, 1024},
		{"a full read doubles", []int{-1}, 2048},
		{"grows to max only", []int{-1, -1, -1, -1, -1, -1}, 8192},
		{"a medium read keeps the size", []int{-1, -1, 2000}, 4096},
		{"a small read after a burst shrinks", []int{-1, -1, -1, 10}, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newReadBuf(1024, 8192)
			for _, n := range tt.reads {
				buf := b.next()
				if n < 0 {
					n = len(buf)
				}
				b.used(n)
			}
			if got := len(b.next()); got != tt.want {
				t.Fatalf("buffer size %d, want %d", got, tt.want)
			}
		})
	}
}
