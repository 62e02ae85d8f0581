package retention

import (
	"context"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
)

// A tenant's destruction takes every key of it, none of another tenant,
// is in the retention state (no repair later), and is refused as a whole
// while a legal hold keeps any of its days.
func TestDestroyTenant(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.keys("t1", 0, 1)
	r.keys("t2", 0)
	h := store.Hold{ID: "h1", Scope: store.HoldPerson, Subject: "bob", By: "alice", Created: r.now, Expires: day0.Add(30 * day)}
	ev := audit.RetentionHoldEvent{ID: "h1"}.Event()
	ev.Time = r.now
	if err := r.st.PutHold(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	r.days["person:bob"] = []TenantDay{{"t1", dayN(1)}}
	if _, err := r.job.DestroyTenant(ctx, "t1"); err == nil || !strings.Contains(err.Error(), "h1") {
		t.Fatalf("a held tenant was destroyed: %v", err)
	}
	if got := r.destroyed(); len(got) != 0 {
		t.Fatalf("keys went despite the refusal: %v", got)
	}
	h.Released, h.ReleasedBy = r.now, "alice"
	if err := r.st.PutHold(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	keys, err := r.job.DestroyTenant(ctx, "t1")
	if err != nil || len(keys) != 8 {
		t.Fatalf("destroyed %d keys: %v", len(keys), err)
	}
	got := r.destroyed()
	if len(got) != 8 || got["admin/t2/0"] {
		t.Fatalf("destroyed: %v", got)
	}
	// The next run repairs nothing and audits nothing of t1.
	r.now = r.now.Add(time.Minute)
	rep, err := r.job.Run(ctx)
	if err != nil || rep.Repaired != 0 {
		t.Fatalf("run after: %+v %v", rep, err)
	}
	for _, e := range r.events(audit.KeyDestroyed) {
		if e.Tenant == "t1" {
			t.Fatalf("a key.destroyed of t1: %+v", e)
		}
	}
}
