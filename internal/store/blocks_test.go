package store

import (
	"context"
	"testing"
	"time"
)

func TestBlocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		path := bk.fresh(t)
		st := mustOpen(t, path, keyed(path))
		ctx := context.Background()
		now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		for _, b := range []Block{
			{Scope: BlockSource, Key: "127.0.0.2", Until: now.Add(15 * time.Minute), Reason: "too many", At: now},
			{Scope: BlockPerson, Key: "bob", Until: now.Add(time.Minute), Reason: "too many", At: now},
			{Scope: BlockSource, Key: "127.0.0.9", Until: now.Add(-time.Second), Reason: "over", At: now.Add(-time.Hour)},
		} {
			if err := st.RecordBlock(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.RecordBlock(ctx, Block{Scope: "planet", Key: "x"}); err == nil {
			t.Error("a block of an unknown scope was stored")
		}
		bs, err := st.Blocks(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 2 || bs[0].Key != "127.0.0.2" || bs[1].Key != "bob" {
			t.Fatalf("blocks in force: got %+v, want 127.0.0.2 then bob", bs)
		}
		found, err := st.RequestUnblock(ctx, BlockSource, "127.0.0.2", "local:root", now)
		if err != nil || !found {
			t.Fatalf("unblock: %v %v", found, err)
		}
		if found, _ := st.RequestUnblock(ctx, BlockPerson, "nobody", "local:root", now); found {
			t.Error("an unblock of nobody found a block")
		}
		us, err := st.PendingUnblocks(ctx)
		if err != nil || len(us) != 2 || us[0].Key != "127.0.0.2" || us[0].By != "local:root" {
			t.Fatalf("pending unblocks: %+v %v", us, err)
		}
		if err := st.MarkUnblockApplied(ctx, us[0].ID); err != nil {
			t.Fatal(err)
		}
		if us, _ := st.PendingUnblocks(ctx); len(us) != 1 {
			t.Errorf("after marking one applied: %+v", us)
		}
		if bs, _ := st.Blocks(ctx, now); len(bs) != 1 || bs[0].Key != "bob" {
			t.Errorf("blocks after the unblock: %+v", bs)
		}
	})
}
