package store

import (
	"bytes"
	"context"
	"testing"
)

// TestCosignExchange: a submission waits for its witness until answered,
// whatever the answer; a refusal keeps the last co-signed note; answers
// are per node and witness.
func TestCosignExchange(t *testing.T) {
	eachBackend(t, testCosignExchange)
}

func testCosignExchange(t *testing.T, bk backend) {
	ctx := context.Background()
	s, _ := openTemp(t, bk)
	pending := func(w string) int {
		t.Helper()
		b, err := s.CosignPending(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	if err := s.CosignSubmit(ctx, "a", "b", 10, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.CosignSubmit(ctx, "a", "b", 12, []byte(`{"n":2}`)); err != nil { // replaces
		t.Fatal(err)
	}
	if got := pending("b"); got != 1 {
		t.Fatalf("pending for b: %d", got)
	}
	if got := pending("a"); got != 0 {
		t.Fatalf("pending for a: %d", got)
	}
	posted, err := s.CosignPending(ctx, "b")
	if err != nil || len(posted) != 1 || string(posted[0].Body) != `{"n":2}` {
		t.Fatalf("pending: %+v %v", posted, err)
	}
	if err := s.CosignAnswer(ctx, "a", "b", posted[0].Seq, 12, []byte("note12"), "", t0); err != nil {
		t.Fatal(err)
	}
	if got := pending("b"); got != 0 {
		t.Fatalf("answered, still pending: %d", got)
	}
	if err := s.CosignSubmit(ctx, "a", "b", 20, []byte(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	posted, err = s.CosignPending(ctx, "b")
	if err != nil || len(posted) != 1 {
		t.Fatalf("pending: %+v %v", posted, err)
	}
	if err := s.CosignAnswer(ctx, "a", "b", posted[0].Seq, 12, nil, "rewritten", t0); err != nil {
		t.Fatal(err)
	}
	a, ok, err := s.CosignAnswerOf(ctx, "a", "b")
	if err != nil || !ok || a.Size != 12 || a.Refusal != "rewritten" || !bytes.Equal(a.Note, []byte("note12")) {
		t.Fatalf("after a refusal: %+v %v %v", a, ok, err)
	}
	if got := pending("b"); got != 0 {
		t.Fatalf("a refused submission is still pending: %d", got)
	}
	if err := s.CosignSubmit(ctx, "a", "b", 20, []byte(`{"n":4}`)); err != nil { // the same size again
		t.Fatal(err)
	}
	if got := pending("b"); got != 1 {
		t.Fatalf("a new submission of the same size is not pending: %d", got)
	}
	if _, ok, _ := s.CosignAnswerOf(ctx, "b", "a"); ok {
		t.Error("an answer to b that nobody gave")
	}
	if list, err := s.CosignAnswers(ctx, "a"); err != nil || len(list) != 1 || list[0].Witness != "b" {
		t.Fatalf("answers to a: %+v %v", list, err)
	}
	if err := s.CosignSubmit(ctx, "a", "b", 21, make([]byte, maxCosignBody+1)); err == nil {
		t.Error("an oversized submission was stored")
	}
}
