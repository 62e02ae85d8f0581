package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

func TestFreezesSealed(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		st, rep := openReported(t, path)
		ctx := context.Background()
		now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		gen0, _ := st.Generation(ctx)
		for _, f := range []Freeze{
			{ID: "f1", Kind: FreezeHost, Value: "db1", Reason: "CVE-1", By: "sina", Created: now},
			{ID: "f2", Kind: FreezeTenant, Value: "acme", Reason: "breach", By: "sina", Created: now},
		} {
			if err := st.PutFreeze(ctx, f, audit.FreezeEvent{ID: f.ID, Kind: f.Kind, Value: f.Value, By: f.By}.Event()); err != nil {
				t.Fatal(err)
			}
		}
		if gen, _ := st.Generation(ctx); gen != gen0+2 {
			t.Errorf("generation %d, want %d: every freeze must reach the gateways' poll", gen, gen0+2)
		}
		fs, err := st.Freezes(ctx)
		if err != nil || len(fs) != 2 || fs[0].Value != "db1" || !fs[0].Active() {
			t.Fatalf("Freezes = %+v, %v", fs, err)
		}
		evs, _ := st.PendingAudit(ctx)
		if len(evs) != 2 {
			t.Errorf("queued events: %d, want 2 (freeze and event in one transaction)", len(evs))
		}
		// Lift one: it stays, lifted.
		fs[1].Lifted, fs[1].LiftedBy = now.Add(time.Hour), "sina"
		if err := st.PutFreeze(ctx, fs[1], audit.UnfreezeEvent{ID: "f2"}.Event()); err != nil {
			t.Fatal(err)
		}
		if fs, _ = st.Freezes(ctx); fs[1].Active() {
			t.Fatal("lifted freeze still active")
		}

		// Deleting a freeze by hand breaks the table's seal: the rows that
		// pass come back with a forgery, and nothing may be changed.
		db := raw(t, path)
		exec(t, db, `DELETE FROM freezes WHERE id = 'f1'`)
		fs, err = st.Freezes(ctx)
		var f *Forgery
		if !errors.As(err, &f) || f.Table != "freezes" || f.Row != "*" {
			t.Fatalf("after a deleted row: %v (%+v)", err, fs)
		}
		if err := st.PutFreeze(ctx, Freeze{ID: "f3", Kind: FreezeLabel, Value: "zone=dmz", Created: now}, audit.FreezeEvent{ID: "f3"}.Event()); !errors.Is(err, ErrForged) {
			t.Fatalf("a freeze into a forged table: %v", err)
		}
		if len(rep.all()) == 0 {
			t.Error("the forgery was not reported")
		}
		n, err := st.ResealFreezes(ctx, "local:root", now)
		if err != nil || n != 1 {
			t.Fatalf("reseal: %d %v", n, err)
		}
		if _, err := st.Freezes(ctx); err != nil {
			t.Fatalf("after reseal: %v", err)
		}

		// A forged row (the reason edited) fails its MAC.
		edit := `UPDATE freezes SET body = replace(body, 'breach', 'nothing') WHERE id = 'f2'`
		if db.postgres() {
			edit = `UPDATE freezes SET body = convert_to(replace(convert_from(body, 'UTF8'), 'breach', 'nothing'), 'UTF8') WHERE id = 'f2'`
		}
		exec(t, db, edit)
		if _, err := st.Freezes(ctx); !errors.Is(err, ErrForged) {
			t.Fatalf("an edited row passed: %v", err)
		}
	})
}
