package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

func TestHoldsSealedLikeLocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, rep := openReported(t, path)
		now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
		ev := audit.RetentionHoldEvent{ID: "h1", Scope: HoldTenant, Tenant: "t1", By: "alice", Reason: "court order", Ref: "AZ 1", Expires: now.Add(time.Hour)}.Event()
		ev.Time = now
		for _, id := range []string{"h1", "h2"} {
			h := Hold{ID: id, Scope: HoldTenant, Subject: "t1", Reason: "court order", Ref: "AZ 1", By: "alice", Created: now, Expires: now.Add(time.Hour)}
			if err := s.PutHold(ctx, h, ev); err != nil {
				t.Fatal(err)
			}
		}
		hs, err := s.Holds(ctx)
		if err != nil || len(hs) != 2 || !hs[0].Active(now) || hs[0].Active(now.Add(time.Hour)) {
			t.Fatalf("holds %+v, %v", hs, err)
		}
		if q, _ := s.PendingAudit(ctx); len(q) != 2 {
			t.Fatalf("queued %d events, want one per hold", len(q))
		}

		// A hold deleted by hand breaks the table's seal: reported, and the
		// table refuses changes.
		exec(t, raw(t, path), `DELETE FROM retention_holds WHERE id = 'h2'`)
		_, err = s.Holds(ctx)
		var f *Forgery
		if !errors.As(err, &f) || f.Row != "*" || len(rep.all()) != 1 {
			t.Fatalf("deleted hold: err %v, reports %v", err, rep.all())
		}
		if err := s.PutHold(ctx, Hold{ID: "h3", Subject: "t1"}, ev); !errors.Is(err, ErrForged) {
			t.Fatalf("a forged table was changed: %v", err)
		}
	})
}

func TestDestroyedKeysAndNotices(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, _ := openReported(t, path)
		now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
		if err := s.RecordDestroyed(ctx, Destroyed{Class: "operational", Tenant: "t1", Day: "2026-11-25", KeyID: "k", At: now}); err != nil {
			t.Fatal(err)
		}
		m, err := s.DestroyedKeys(ctx)
		if err != nil || m["operational/t1/2026-11-25"].KeyID != "k" {
			t.Fatalf("%v %v", m, err)
		}
		// A forged record is left out, so the destruction is audited again.
		exec(t, raw(t, path), `UPDATE retention_destroyed SET mac = x'00'`)
		if m, err := s.DestroyedKeys(ctx); err != nil || len(m) != 0 {
			t.Fatalf("forged record honoured: %v %v", m, err)
		}

		x := Extension{ID: "x1", Tenant: "t1", Class: "operational", Until: now, RequestRef: "INC-1", By: "alice", Created: now}
		ev := audit.RetentionExtendedEvent{ID: "x1", Tenant: "t1"}.Event()
		ev.Time = now
		if err := s.AddExtension(ctx, x, ev, "notice text"); err != nil {
			t.Fatal(err)
		}
		ns, err := s.Notices(ctx)
		if err != nil || len(ns) != 1 || ns[0].Text != "notice text" || !ns[0].Next.Equal(now) {
			t.Fatalf("%+v %v", ns, err)
		}
		if err := s.NoticeAttempt(ctx, ns[0].ID, now, "connection refused", now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.NoticeAttempt(ctx, ns[0].ID, now.Add(time.Minute), "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		ns, _ = s.Notices(ctx)
		if ns[0].Attempts != 2 || ns[0].Delivered.IsZero() || ns[0].LastError != "" {
			t.Fatalf("%+v", ns[0])
		}
		xs, err := s.Extensions(ctx)
		if err != nil || len(xs) != 1 || xs[0].RequestRef != "INC-1" {
			t.Fatalf("%+v %v", xs, err)
		}
	})
}
