package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestPrefixKey(t *testing.T) {
	tests := []struct {
		in     string
		v4, v6 int
		want   string
	}{
		{"192.0.2.77:22", 24, 64, "192.0.2.0/24"},
		{"192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"192.0.3.1:1", 24, 64, "192.0.3.0/24"},
		{"127.0.0.9:5", 24, 64, "127.0.0.0/24"},
		{"127.1.0.9:5", 24, 64, "127.1.0.0/24"},
		{"192.0.2.77:22", 16, 64, "192.0.0.0/16"},
		{"192.0.2.77:22", 32, 64, "192.0.2.77/32"},
		{"[::ffff:192.0.2.77]:22", 24, 64, "192.0.2.0/24"}, // mapped: counts as IPv4
		{"[2001:db8:1:2:3:4:5:6]:22", 24, 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:22", 24, 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::9]:22", 24, 64, "2001:db8:1:3::/64"},
		{"[2001:db8:1:2::9]:22", 24, 48, "2001:db8:1::/48"},
		{"[fe80::1%eth0]:22", 24, 64, "fe80::/64"},
		{"[::1]:22", 24, 64, "::/64"},
		{"pipe", 24, 64, "pipe"},
		{"", 24, 64, ""},
	}
	for _, tt := range tests {
		if got := PrefixKey(tt.in, tt.v4, tt.v6); got != tt.want {
			t.Errorf("PrefixKey(%q, %d, %d) = %q, want %q", tt.in, tt.v4, tt.v6, got, tt.want)
		}
	}
}

// TestAdmitPrefixCap: one network cannot take more than its share of the
// unauthenticated slots, whatever number of addresses it uses; another
// network, and another address of the same network while one address
// floods, still get in.
func TestAdmitPrefixCap(t *testing.T) {
	tests := []struct {
		name    string
		flood   []string // sources admitted in this order; refusals expected once a cap is reached
		then    string   // the honest source
		wantOK  bool
		wantWhy string // the reason the flood's last attempt got
	}{
		{name: "one address: per-address cap, same /24 still admitted",
			flood: repeat("192.0.2.5:%d", 20), then: "192.0.2.6:1", wantOK: true, wantWhy: ReasonTooManyPerSrc},
		{name: "many addresses of one /24: prefix cap, other /24 admitted",
			flood: spread("192.0.2.%d:1", 30, 4), then: "192.0.3.1:1", wantOK: true, wantWhy: ReasonTooManyPerNet},
		{name: "many addresses of one /24: same /24 refused once its share is taken",
			flood: spread("192.0.2.%d:1", 30, 4), then: "192.0.2.200:1", wantOK: false, wantWhy: ReasonTooManyPerNet},
		{name: "IPv6 /64 flood: other /64 admitted",
			flood: spread("[2001:db8:0:1::%x]:1", 30, 4), then: "[2001:db8:0:2::1]:1", wantOK: true, wantWhy: ReasonTooManyPerNet},
		{name: "IPv6 /64 flood: IPv4 admitted",
			flood: spread("[2001:db8:0:1::%x]:1", 30, 4), then: "192.0.2.1:1", wantOK: true, wantWhy: ReasonTooManyPerNet},
		{name: "many networks: total cap",
			flood: spread("10.%d.0.1:1", 40, 3), then: "192.0.2.1:1", wantOK: false, wantWhy: ReasonTooManyUnauth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(newClock(), Options{MaxUnauth: 100, MaxUnauthPerSource: 10, MaxUnauthPerPrefix: 25})
			admitted := 0
			lastWhy := ""
			for _, src := range tt.flood {
				if _, ok, why := l.Admit(src, nil); ok {
					admitted++
				} else {
					lastWhy = why
				}
			}
			if lastWhy != tt.wantWhy {
				t.Errorf("flood refused with %q, want %q (%d admitted)", lastWhy, tt.wantWhy, admitted)
			}
			_, ok, why := l.Admit(tt.then, nil)
			if ok != tt.wantOK {
				t.Errorf("honest %s: admitted %v (%q), want %v", tt.then, ok, why, tt.wantOK)
			}
		})
	}
}

func repeat(format string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(format, i+1))
	}
	return out
}

// spread returns per connections from each of n addresses, interleaved.
func spread(format string, n, per int) []string {
	var out []string
	for range per {
		for i := range n {
			out = append(out, fmt.Sprintf(format, i+1))
		}
	}
	return out
}

func TestAdmitPrefixReleased(t *testing.T) {
	l := newLimiter(newClock(), Options{MaxUnauthPerPrefix: 2, MaxUnauthPerSource: 5})
	r1, _, _ := l.Admit("192.0.2.1:1", nil)
	_, _, _ = l.Admit("192.0.2.2:1", nil)
	if _, ok, why := l.Admit("192.0.2.3:1", nil); ok || why != ReasonTooManyPerNet {
		t.Fatalf("third from the /24: %v %q", ok, why)
	}
	if a, p := l.UnauthenticatedFrom("192.0.2.1:9"); a != 1 || p != 2 {
		t.Fatalf("UnauthenticatedFrom = %d, %d", a, p)
	}
	r1()
	r1()
	if _, ok, _ := l.Admit("192.0.2.3:1", nil); !ok {
		t.Fatal("slot of the /24 not released")
	}
}

func TestBudget(t *testing.T) {
	clk := newClock()
	b := NewBudget(3, 2, clk.Now)
	for i := range 5 {
		if got, want := b.Allow("192.0.2.1:1"), i < 3; got != want {
			t.Fatalf("event %d: allowed %v, want %v", i, got, want)
		}
	}
	if !b.Allow("192.0.2.2:7") {
		t.Fatal("other source held back")
	}
	// The table holds two sources: a third shares the overflow bucket.
	for range 4 {
		b.Allow("192.0.2.3:1")
	}
	got := b.TakeDropped()
	if got["192.0.2.1"] != 2 || got[OverflowKey] != 1 || len(got) != 2 {
		t.Fatalf("dropped = %v", got)
	}
	if got := b.TakeDropped(); len(got) != 0 {
		t.Fatalf("dropped again = %v", got)
	}
	clk.Add(20 * time.Second) // one token back (3 per minute)
	if !b.Allow("192.0.2.1:1") || b.Allow("192.0.2.1:1") {
		t.Fatal("refill wrong")
	}
	clk.Add(time.Hour)
	b.TakeDropped()
	if len(b.buckets) != 0 {
		t.Fatalf("full buckets kept: %d", len(b.buckets))
	}
}
