// Package audittest builds small audit logs for the tests of the
// packages that read them (reports, disclosures): events appended with
// the typed constructors, encrypted with a vault of their own, signed,
// witnessed and closed.
package audittest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// Log is a closed audit log in a test's temporary directory.
type Log struct {
	Dir     string // the log directory
	Data    string // the data directory it lies in (Data/audit)
	Witness string // the witness file
	Key     string // the verifier key
	Keys    *vault.Vault
}

// New writes events to a new log, each a minute after the one before,
// from start on, and closes it (which signs a last checkpoint).
func New(t testing.TB, start time.Time, events ...audit.Event) *Log {
	t.Helper()
	base := t.TempDir()
	kek := filepath.Join(base, "kek")
	if err := vault.GenerateFileKEK(kek); err != nil {
		t.Fatal(err)
	}
	k, err := vault.FileKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	v, err := vault.Open(filepath.Join(data, "vault"), k)
	if err != nil {
		t.Fatal(err)
	}
	sk, _, err := audit.GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{Dir: filepath.Join(data, "audit"), Data: data, Witness: filepath.Join(base, "witness"), Key: sk.Verifier(), Keys: v}
	var mu sync.Mutex
	clock := start
	w, err := audit.Open(audit.Options{Dir: l.Dir, Key: sk, Keys: v, WitnessFile: l.Witness, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Minute)
		return clock
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := w.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return l
}
