package main

import (
	"testing"
	"time"
)

func TestOpenRatio(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name       string
		rounds     []openRound
		want       float64
		wantRounds int
	}{
		{"none", nil, 0, 0},
		{"one", []openRound{{Direct: 4 * s, Tandem: 5 * s, DirectOpened: 200, TandemOpened: 200}}, 1.25, 1},
		{"median of three", []openRound{
			{Direct: 4 * s, Tandem: 6 * s, DirectOpened: 200, TandemOpened: 200},
			{Direct: 4 * s, Tandem: 4 * s, DirectOpened: 200, TandemOpened: 200},
			{Direct: 4 * s, Tandem: 4400 * time.Millisecond, DirectOpened: 200, TandemOpened: 200},
		}, 1.1, 3},
		{"a round that did not open them all does not count", []openRound{
			{Direct: 4 * s, Tandem: 2 * s, DirectOpened: 200, TandemOpened: 100},
			{Direct: 4 * s, Tandem: 5 * s, DirectOpened: 200, TandemOpened: 200},
		}, 1.25, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n := idleResult{Want: 200, Rounds: tc.rounds}.openRatio()
			if n != tc.wantRounds || (n > 0 && (got < tc.want-1e-9 || got > tc.want+1e-9)) {
				t.Errorf("openRatio = %v over %d rounds, want %v over %d", got, n, tc.want, tc.wantRounds)
			}
		})
	}
}
