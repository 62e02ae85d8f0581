package store

import (
	"context"
	"testing"
	"time"
)

func mustAck(t *testing.T, s *Store, gateway string, gen int64, at time.Time) {
	t.Helper()
	if err := s.AckGeneration(context.Background(), gateway, gen, at); err != nil {
		t.Fatalf("AckGeneration(%s, %d): %v", gateway, gen, err)
	}
}

func TestAckedGeneration(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, path := openTemp(t, bk)
		if gen, n, err := s.AckedGeneration(ctx, t0); gen != 0 || n != 0 || err != nil {
			t.Fatalf("no acks: %d, %d, %v; want 0, 0", gen, n, err)
		}
		if err := s.AckGeneration(ctx, "", 1, t0); err == nil {
			t.Error("AckGeneration accepted an empty gateway name")
		}

		g0 := mustGeneration(t, s)
		mustAck(t, s, "gw1", 7, t0)
		mustAck(t, s, "gw2", 5, t0.Add(time.Second))
		mustAck(t, s, "old", 1, t0.Add(-time.Minute)) // stopped long ago
		if g := mustGeneration(t, s); g != g0 {
			t.Errorf("acks moved the generation to %d, want %d", g, g0)
		}

		// A second handle stands for the CLI reading what the gateways wrote.
		other := mustOpen(t, path, keyed(path))
		for _, tt := range []struct {
			name     string
			since    time.Time
			gen      int64
			gateways int
		}{
			{"all three", t0.Add(-time.Hour), 1, 3},
			{"stale gateway ignored", t0, 5, 2},
			{"only the latest", t0.Add(time.Second), 5, 1},
			{"none fresh", t0.Add(time.Hour), 0, 0},
		} {
			gen, n, err := other.AckedGeneration(ctx, tt.since)
			if err != nil || gen != tt.gen || n != tt.gateways {
				t.Errorf("%s: %d, %d, %v; want %d, %d", tt.name, gen, n, err, tt.gen, tt.gateways)
			}
		}

		// An acknowledgement replaces the gateway's earlier one.
		mustAck(t, s, "gw2", 9, t0.Add(2*time.Second))
		if gen, n, err := other.AckedGeneration(ctx, t0); gen != 7 || n != 2 || err != nil {
			t.Errorf("after gw2 caught up: %d, %d, %v; want 7, 2", gen, n, err)
		}
	})
}

// stepClock is a clock for WaitApplied: every reading moves it on by step,
// and do[i] runs before the i-th reading (from 1), standing for a gateway
// acknowledging while the caller waits.
type stepClock struct {
	t     time.Time
	step  time.Duration
	calls int
	do    map[int]func()
}

func (c *stepClock) now() time.Time {
	c.calls++
	if f := c.do[c.calls]; f != nil {
		f()
	}
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func TestWaitApplied(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		const want = 10
		type ack struct {
			gateway string
			gen     int64
			ago     time.Duration // before t0
		}
		tests := []struct {
			name     string
			acks     []ack
			later    map[int]ack // acknowledgements made at the i-th clock reading
			applied  bool
			gateways int
			maxCalls int // bounds the clock readings, so "at once" is checked
		}{
			{"applied at once", []ack{{"gw1", want, 0}, {"gw2", want + 1, 0}}, nil, true, 2, 2},
			{"applied once the slower gateway acks", []ack{{"gw1", want - 1, 0}, {"gw2", want, 0}},
				map[int]ack{4: {"gw1", want, 0}}, true, 2, 5},
			{"stale gateway ignored", []ack{{"gw1", want - 1, 3 * time.Second}, {"gw2", want, 0}}, nil, true, 1, 2},
			{"timeout", []ack{{"gw1", want - 1, 0}}, nil, false, 1, 100},
			{"no gateway", nil, nil, false, 0, 2},
			{"only a stopped gateway", []ack{{"gw1", want, 3 * time.Second}}, nil, false, 0, 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				s, _ := openTemp(t, bk)
				for _, a := range tt.acks {
					mustAck(t, s, a.gateway, a.gen, t0.Add(-a.ago))
				}
				clock := &stepClock{t: t0, step: 100 * time.Millisecond, do: map[int]func(){}}
				for i, a := range tt.later {
					clock.do[i] = func() { mustAck(t, s, a.gateway, a.gen, t0.Add(-a.ago)) }
				}
				applied, n, err := s.WaitApplied(ctx, want, time.Second, time.Millisecond, clock.now)
				if err != nil || applied != tt.applied || n != tt.gateways {
					t.Errorf("WaitApplied = %v, %d, %v; want %v, %d", applied, n, err, tt.applied, tt.gateways)
				}
				if clock.calls > tt.maxCalls {
					t.Errorf("read the clock %d times, want at most %d", clock.calls, tt.maxCalls)
				}
			})
		}
	})
}

// A cancelled context ends the wait with its error.
func TestWaitAppliedCancelled(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		s, _ := openTemp(t, bk)
		mustAck(t, s, "gw1", 0, t0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		clock := &stepClock{t: t0}
		if applied, _, err := s.WaitApplied(ctx, 1, time.Second, time.Millisecond, clock.now); applied || err == nil {
			t.Errorf("WaitApplied after cancel = %v, %v; want false and an error", applied, err)
		}
	})
}
