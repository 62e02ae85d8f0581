package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSharedStateNeverGetsASecondKey: a gateway that shares the state
// database but was not given the state key is refused, instead of
// resealing every row under a key of its own (which would put every
// other gateway into lock-down). With the key copied it opens the store
// and reads the other gateway's locks.
func TestSharedStateNeverGetsASecondKey(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "shared", "state.db")
	keysA, keysB := filepath.Join(dir, "a", "keys"), filepath.Join(dir, "b", "keys")

	a, err := Open(db, WithKeyDir(keysA)) // the first gateway creates the key
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	if err := a.Lock(ctx, Lock{Person: "mallory", Reason: "left", By: "alice", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}

	_, err = Open(db, WithKeyDir(keysB))
	if !errors.Is(err, ErrKeyElsewhere) || !strings.Contains(err.Error(), filepath.Join(keysB, KeyFile)) {
		t.Fatalf("a second gateway without the key: %v, want ErrKeyElsewhere naming the key file", err)
	}
	if _, err := os.Stat(filepath.Join(keysB, KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused gateway left a key behind: %v", err)
	}
	if _, err := a.Locks(ctx, time.Now()); err != nil {
		t.Fatalf("the first gateway's locks after the refusal: %v", err)
	}

	key, err := os.ReadFile(filepath.Join(keysA, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(keysB, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keysB, KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Open(db, WithKeyDir(keysB))
	if err != nil {
		t.Fatalf("a second gateway with the copied key: %v", err)
	}
	defer b.Close()
	locks, err := b.Locks(ctx, time.Now())
	if _, ok := locks["mallory"]; err != nil || len(locks) != 1 || !ok {
		t.Fatalf("the second gateway reads %v, %v; want mallory's lock", locks, err)
	}
}
