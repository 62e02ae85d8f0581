package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/vault"
)

// gateway is a data directory as serve keeps it, with the trust anchors
// (signing key, witness, KEK, escrow key store) outside it.
type gateway struct {
	data, witness, kekFile string
	key                    *audit.SigningKey
	vault                  *vault.Vault
	escrow                 *Escrow
	log                    *audit.Log
	id                     *age.X25519Identity
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	base := t.TempDir()
	g := &gateway{data: filepath.Join(base, "data"), witness: filepath.Join(base, "witness"), kekFile: filepath.Join(base, "kek")}
	var err error
	if g.key, _, err = audit.GenerateSigningKey("tandem-test"); err != nil {
		t.Fatal(err)
	}
	if err := vault.GenerateFileKEK(g.kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := vault.FileKEK(g.kekFile)
	if err != nil {
		t.Fatal(err)
	}
	if g.vault, err = vault.Open(filepath.Join(g.data, "vault"), kek); err != nil {
		t.Fatal(err)
	}
	if g.escrow, err = OpenEscrow(filepath.Join(base, "escrow")); err != nil {
		t.Fatal(err)
	}
	g.vault.SetShredHook(g.escrow.ShredHook())
	g.openLog(t)
	st, err := store.Open(filepath.Join(g.data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if g.id, err = age.GenerateX25519Identity(); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gateway) openLog(t *testing.T) {
	t.Helper()
	l, err := audit.Open(audit.Options{Dir: filepath.Join(g.data, "audit"), Key: g.key, Keys: g.vault,
		WitnessFile: g.witness, CheckpointEvents: 7, CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g.log = l
	t.Cleanup(func() { l.Close() })
}

func event(i int) audit.Event {
	return audit.Event{Type: audit.Exec, Person: "alice", Tenant: "acme", Host: "db1", Login: "root",
		Attrs: map[string]string{"n": strconv.Itoa(i)}}
}

func (g *gateway) appendN(t *testing.T, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := g.log.Append(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func (g *gateway) backup(t *testing.T) *Result {
	t.Helper()
	res, err := Create(context.Background(), filepath.Join(t.TempDir(), "b.tar.age"),
		Options{DataDir: g.data, Escrow: g.escrow, Recipients: []age.Recipient{g.id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (g *gateway) restore(t *testing.T, file string) (*Restored, string) {
	t.Helper()
	to := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(file, RestoreOptions{To: to, Identities: []age.Identity{g.id}, Escrow: g.escrow,
		VerifierKey: g.key.Verifier(), WitnessFile: g.witness})
	if err != nil {
		t.Fatal(err)
	}
	return res, to
}

// A backup taken while events are appended holds every event acknowledged
// before it started, restores elsewhere and verifies.
func TestBackupDuringLoad(t *testing.T) {
	g := newGateway(t)
	g.appendN(t, 0, 20)
	var acked atomic.Int64
	acked.Store(20)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 20; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := g.log.Append(context.Background(), event(i)); err != nil {
				t.Error(err)
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	time.Sleep(50 * time.Millisecond)
	before := int(acked.Load())
	res := g.backup(t)
	close(stop)
	wg.Wait()

	chk, err := Verify(res.Path, []age.Identity{g.id}, g.key.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Audit.OK() {
		t.Fatalf("backup verify: %v", chk.Audit.Problems)
	}
	if st, _ := os.Stat(res.Path); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v", st.Mode())
	}
	rest, to := g.restore(t, res.Path)
	if !rest.Audit.OK() {
		t.Fatalf("restored log: %v", rest.Audit.Problems)
	}
	kek, _ := vault.FileKEK(g.kekFile)
	rv, err := vault.Open(filepath.Join(to, "data", "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	if err := audit.ReadKeys(filepath.Join(to, "data", "audit"), rv, audit.Filter{Types: []audit.Type{audit.Exec}}, func(r audit.Record) error {
		seen[r.Event.Attrs["n"]] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < before; i++ {
		if !seen[strconv.Itoa(i)] {
			t.Fatalf("event %d acknowledged before the backup is missing from the restore (%d present)", i, len(seen))
		}
	}
	if _, err := os.Stat(filepath.Join(to, "data", "state.db")); err != nil {
		t.Fatal(err)
	}
}

// Any changed byte or a cut anywhere makes `backup verify` fail.
func TestVerifyDetectsTamperingAndTruncation(t *testing.T) {
	g := newGateway(t)
	g.appendN(t, 0, 30)
	res := g.backup(t)
	raw, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"flipped":   func() []byte { b := append([]byte(nil), raw...); b[len(b)/2] ^= 1; return b }(),
		"truncated": raw[:len(raw)-100],
		"cut short": raw[:len(raw)/2],
	} {
		p := filepath.Join(t.TempDir(), "bad")
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(p, []age.Identity{g.id}, g.key.Verifier()); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: Verify = %v, want ErrDamaged", name, err)
		}
	}
	if _, err := Verify(res.Path, []age.Identity{g.id}, g.key.Verifier()); err != nil {
		t.Fatalf("intact backup: %v", err)
	}
}

// A backup older than the latest witnessed checkpoint is reported as
// behind, with both sizes.
func TestRestoreOldBackupIsBehind(t *testing.T) {
	g := newGateway(t)
	g.appendN(t, 0, 10)
	res := g.backup(t)
	g.appendN(t, 10, 30)
	if err := g.log.Close(); err != nil { // a final checkpoint, witnessed
		t.Fatal(err)
	}
	rest, _ := g.restore(t, res.Path)
	if !rest.Behind || rest.WitnessSize <= res.Manifest.AuditRecords {
		t.Fatalf("Behind=%v witness size %d, backup %d records", rest.Behind, rest.WitnessSize, res.Manifest.AuditRecords)
	}
	if !rest.Audit.OK() {
		t.Fatalf("what the old backup holds must still agree with the witness: %v", rest.Audit.Problems)
	}
}

// A key shredded after a backup stays shredded when that backup is
// restored, even into a directory without the live vault.
func TestShreddedKeyStaysShreddedAfterRestore(t *testing.T) {
	g := newGateway(t)
	old := time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)
	keep := time.Date(2020, 1, 3, 0, 0, 0, 0, time.UTC)
	oldID, _, err := g.vault.Key(vault.Operational, "acme", old)
	if err != nil {
		t.Fatal(err)
	}
	keepID, keepKey, err := g.vault.Key(vault.Operational, "acme", keep)
	if err != nil {
		t.Fatal(err)
	}
	res := g.backup(t)
	if _, err := g.vault.Shred(vault.Operational, "acme", old); err != nil {
		t.Fatal(err)
	}
	rest, to := g.restore(t, res.Path)
	if len(rest.Shredded) != 1 || rest.Shredded[0].ID != oldID {
		t.Fatalf("restore reports shredded %+v", rest.Shredded)
	}
	kek, _ := vault.FileKEK(g.kekFile)
	rv, err := vault.Open(filepath.Join(to, "data", "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rv.KeyByID(vault.Operational, "acme", vault.Day(old), oldID); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("shredded key after restore: %v", err)
	}
	got, err := rv.KeyByID(vault.Operational, "acme", vault.Day(keep), keepID)
	if err != nil || string(got) != string(keepKey) {
		t.Fatalf("kept key after restore: %v", err)
	}
	// The backup itself holds the old key only under an escrow identity
	// that no longer exists anywhere.
	if _, err := g.escrow.identity(vault.Operational, "acme", vault.Day(old)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("escrow identity of a shredded key: %v", err)
	}
}
