package retention

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// rig is a retention job over a real vault and state store in a temp
// dir, with a clock the test moves.
type rig struct {
	t     *testing.T
	v     *vault.Vault
	st    *store.Store
	sink  *audit.MemorySink
	now   time.Time
	days  fakeDays
	job   *Job
	notes *fakeNotifier
}

type fakeDays map[string][]TenantDay

func (f fakeDays) DaysOf(scope, id string) ([]TenantDay, error) { return f[scope+":"+id], nil }

type fakeNotifier struct {
	mu   sync.Mutex
	fail error
	sent []string
}

func (f *fakeNotifier) Via() string { return "command" }
func (f *fakeNotifier) Deliver(_ context.Context, subject, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.sent = append(f.sent, subject)
	return nil
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	kp := filepath.Join(dir, "kek")
	if err := vault.GenerateFileKEK(kp); err != nil {
		t.Fatal(err)
	}
	kek, err := vault.FileKEK(kp)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(filepath.Join(dir, "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.WithKeyDir(filepath.Join(dir, "keys")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, v: v, st: st, sink: &audit.MemorySink{}, now: day0.Add(10 * time.Hour), days: fakeDays{}, notes: &fakeNotifier{}}
	r.job = &Job{Vault: v, State: st, Audit: r.sink, Period: periods, Days: r.days, Notifier: r.notes,
		Now: func() time.Time { return r.now }, Log: slog.New(slog.DiscardHandler)}
	return r
}

// keys creates the keys of every class for tenant on days n.
func (r *rig) keys(tenant string, ns ...int) {
	for _, n := range ns {
		for _, c := range vault.Classes {
			if _, _, err := r.v.Key(c, tenant, day0.Add(time.Duration(n)*day)); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// at runs the job on day n and returns what is destroyed afterwards, as
// "class/tenant/day-index".
func (r *rig) at(n int) map[string]bool {
	r.t.Helper()
	r.now = day0.Add(time.Duration(n)*day + 10*time.Hour)
	if _, err := r.job.Run(context.Background()); err != nil {
		r.t.Fatalf("run on day %d: %v", n, err)
	}
	return r.destroyed()
}

func (r *rig) destroyed() map[string]bool {
	ks, err := r.v.List()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range ks {
		if k.Shredded {
			d, _ := vault.ParseDay(k.Day)
			out[string(k.Class)+"/"+k.Tenant+"/"+strconv.Itoa(int(d.Sub(day0)/day))] = true
		}
	}
	return out
}

func (r *rig) events(typ audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range r.sink.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestJobDestroysOnTime(t *testing.T) {
	r := newRig(t)
	r.keys("t1", 0, 2)
	if got := r.at(3); len(got) != 0 {
		t.Fatalf("day 3: destroyed %v", got)
	}
	got := r.at(4)
	if !got["operational/t1/0"] || len(got) != 1 {
		t.Fatalf("day 4: destroyed %v, want operational day 0 only", got)
	}
	if got := r.at(6); !got["operational/t1/2"] || len(got) != 2 {
		t.Fatalf("day 6: %v", got)
	}
	got = r.at(91)
	for _, want := range []string{"admin/t1/0", "content/t1/0", "sealed/t1/0"} {
		if !got[want] {
			t.Fatalf("day 91: %s kept: %v", want, got)
		}
	}
	if got["content/t1/2"] {
		t.Fatal("day 2's content destroyed early")
	}
	evs := r.events(audit.KeyDestroyed)
	if len(evs) != 5 || evs[0].Tenant != "t1" || evs[0].Attrs["class"] != "operational" || evs[0].Attrs["day"] != dayN(0) ||
		evs[0].Attrs["key_id"] == "" || evs[0].Attrs["repaired"] != "" {
		t.Fatalf("events %+v", evs)
	}
	// Idempotent: a second run at the same time does nothing more.
	r.at(91)
	if n := len(r.events(audit.KeyDestroyed)); n != 5 {
		t.Fatalf("second run wrote %d events", n-5)
	}
}

func TestJobExtensionAndHold(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.keys("t1", 0)
	r.keys("t2", 0)
	x := store.Extension{ID: "x1", Tenant: "t1", Class: "operational", Until: day0.Add(8 * day), RequestRef: "INC-7", By: "alice", Created: r.now}
	ev := audit.RetentionExtendedEvent{ID: "x1", Tenant: "t1"}.Event()
	ev.Time = r.now
	if err := r.st.AddExtension(ctx, x, ev, NoticeText(x)); err != nil {
		t.Fatal(err)
	}
	h := store.Hold{ID: "h1", Scope: store.HoldPerson, Subject: "bob", By: "alice", Created: r.now, Expires: day0.Add(30 * day)}
	if err := r.st.PutHold(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	r.days["person:bob"] = []TenantDay{{"t2", dayN(0)}}

	got := r.at(4)
	if got["operational/t1/0"] || got["operational/t2/0"] {
		t.Fatalf("day 4: extension or hold ignored: %v", got)
	}
	if len(r.notes.sent) != 1 || len(r.events(audit.RetentionNotice)) != 1 {
		t.Fatalf("notice: sent %v", r.notes.sent)
	}
	if got := r.at(8); got["operational/t1/0"] {
		t.Fatal("destroyed on the extension's last day")
	}
	if got := r.at(9); !got["operational/t1/0"] || got["operational/t2/0"] {
		t.Fatalf("day 9: %v", got)
	}
	// Released: the held key goes on the next run.
	h.Released, h.ReleasedBy = r.now, "alice"
	if err := r.st.PutHold(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	if got := r.at(10); !got["operational/t2/0"] {
		t.Fatalf("released hold still keeps: %v", got)
	}
}

func TestJobHoldExpires(t *testing.T) {
	r := newRig(t)
	r.keys("t1", 0)
	ev := audit.RetentionHoldEvent{ID: "h1"}.Event()
	ev.Time = r.now
	if err := r.st.PutHold(context.Background(), store.Hold{ID: "h1", Scope: store.HoldTenant, Subject: "t1", Created: r.now, Expires: day0.Add(20 * day)}, ev); err != nil {
		t.Fatal(err)
	}
	if got := r.at(19); len(got) != 0 {
		t.Fatalf("tenant hold: %v", got)
	}
	if got := r.at(20); !got["operational/t1/0"] {
		t.Fatalf("expired hold keeps: %v", got)
	}
}

// TestJobRepairsLostEvents: a key destroyed whose event never reached the
// log (a crash, or a log that refused) is audited on the next run.
func TestJobRepairsLostEvents(t *testing.T) {
	r := newRig(t)
	r.keys("t1", 0)
	r.sink.SetErr(errors.New("disk full"))
	r.now = day0.Add(4*day + time.Hour)
	if _, err := r.job.Run(context.Background()); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("a refused event did not stop the run: %v", err)
	}
	if !r.destroyed()["operational/t1/0"] {
		t.Fatal("not destroyed")
	}
	// A crash: a tombstone with no record, made by the vault alone.
	if _, err := r.v.Shred(vault.Admin, "t1", day0); err != nil {
		t.Fatal(err)
	}
	r.sink.SetErr(nil)
	r.at(5)
	evs := r.events(audit.KeyDestroyed)
	if len(evs) != 2 || evs[0].Attrs["repaired"] != "true" || evs[1].Attrs["repaired"] != "true" {
		t.Fatalf("repair events %+v", evs)
	}
	r.at(5)
	if n := len(r.events(audit.KeyDestroyed)); n != 2 {
		t.Fatalf("repaired twice: %d", n)
	}
}

func TestJobFailsClosedOnForgedHolds(t *testing.T) {
	r := newRig(t)
	r.keys("t1", 0)
	ev := audit.RetentionHoldEvent{ID: "h1"}.Event()
	ev.Time = r.now
	if err := r.st.PutHold(context.Background(), store.Hold{ID: "h1", Scope: store.HoldPerson, Subject: "nobody", Created: r.now, Expires: day0.Add(20 * day)}, ev); err != nil {
		t.Fatal(err)
	}
	r.job.Days = nil // person holds cannot be resolved
	r.now = day0.Add(5 * day)
	if _, err := r.job.Run(context.Background()); err == nil || len(r.destroyed()) != 0 {
		t.Fatalf("destroyed without its holds: %v %v", err, r.destroyed())
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 5: 16 * time.Minute, 30: 6 * time.Hour} {
		if got := backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
