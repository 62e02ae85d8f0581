package audit

import (
	"bytes"
	"testing"

	"tandem.dev/tandem/internal/vault"
)

// A disclosed record opens with its one-time subkeys alone, only the
// classes disclosed, and proves its place in the log against a checkpoint
// followed through the key hand-over from either key.
func TestDiscloseAndProve(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	o := rotatedLog(t, k1, k2)
	cp, err := LatestCheckpoint(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	hos, err := Handovers(o.Dir)
	if err != nil || len(hos) != 1 {
		t.Fatalf("hand-overs: %d %v", len(hos), err)
	}
	for _, key := range []string{k1.Verifier(), k2.Verifier()} {
		_, size, root, err := OpenCheckpointChain(cp.Note, key, hos)
		if err != nil || size != cp.Size || !bytes.Equal(root, cp.Root) {
			t.Fatalf("checkpoint through the chain: %d %v", size, err)
		}
	}
	if _, _, _, err := OpenCheckpointChain(cp.Note, k1.Verifier(), nil); err == nil {
		t.Fatal("the old key alone accepted a checkpoint of the new one")
	}
	if _, _, _, err := OpenCheckpointChain(cp.Note, newTestKey(t).Verifier(), hos); err == nil {
		t.Fatal("a stranger's key accepted the checkpoint")
	}
	if ok, err := Witnessed(o.WitnessFile, cp.Note); err != nil || !ok {
		t.Fatalf("witness does not hold the latest checkpoint: %v %v", ok, err)
	}

	var recs []Record
	if err := Read(o.Dir, Filter{Types: []Type{Exec}}, func(r Record) error {
		if r.Index < cp.Size && len(recs) < 3 {
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	idx := []uint64{recs[0].Index, recs[1].Index, recs[2].Index}
	paths, err := cp.Prove(o.Dir, idx)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysFor(t, o.Dir)
	for _, r := range recs {
		if err := VerifyInclusion(r.Raw, r.Index, cp.Size, paths[r.Index], cp.Root); err != nil {
			t.Fatalf("record %d: %v", r.Index, err)
		}
		if err := VerifyInclusion(r.Raw, r.Index+1, cp.Size, paths[r.Index], cp.Root); err == nil {
			t.Fatalf("record %d passed as another index", r.Index)
		}
		sub, err := Disclose(r.Raw, keys, vault.Admin)
		if err != nil || len(sub) != 1 {
			t.Fatalf("disclose %d: %v %v", r.Index, sub, err)
		}
		_, e, bad, err := OpenDisclosed(r.Raw, sub)
		if err != nil || e.Person != "alice" || e.Host != "db1" || e.Attrs["n"] == "" || len(bad) != 0 {
			t.Fatalf("open disclosed: %+v %+v %v", e, bad, err)
		}
		// A class not disclosed stays closed, and is said to be.
		if _, e, bad, _ := OpenDisclosed(r.Raw, nil); e.Person != "" || len(bad) != 1 || bad[0].Reason != ReasonNotDisclosed {
			t.Fatalf("undisclosed part: %+v %+v", e, bad)
		}
		sub[vault.Admin][0] ^= 1
		if _, e, bad, _ := OpenDisclosed(r.Raw, sub); e.Person != "" || len(bad) != 1 || bad[0].Reason != ReasonCorrupt {
			t.Fatalf("a wrong subkey opened the part: %+v %+v", e, bad)
		}
	}
	// A subkey of one record does not open another of the same day.
	sub, _ := Disclose(recs[0].Raw, keys, vault.Admin)
	if _, e, _, _ := OpenDisclosed(recs[1].Raw, sub); e.Person != "" {
		t.Fatal("one record's subkey opened another record")
	}
}
