package record

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// kekFile makes a new file KEK and returns its path and key.
func kekFile(t *testing.T, name string) (string, KEK) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	must(t, GenerateFileKEK(path))
	k, err := FileKEK(path)
	must(t, err)
	return path, k
}

// recordOn records one short session of tenant on n and returns its
// reference.
func recordOn(t *testing.T, n *node, tenant, id string, at time.Time) Ref {
	t.Helper()
	w, err := Create(n.v, n.st, Meta{SessionID: id, Tenant: tenant, Kind: KindPTY, Started: at, Host: "db1", Login: "root", Owner: "alice"},
		Options{Now: func() time.Time { return at }, Tick: make(chan time.Time)})
	must(t, err)
	must(t, w.Output([]byte("root@db1# id\r\n")))
	_, err = w.Close()
	must(t, err)
	return w.Ref()
}

// readsOn fails unless n reads ref whole.
func readsOn(t *testing.T, n *node, ref Ref) {
	t.Helper()
	r, err := OpenIn(n.v, n.st, ref)
	if err != nil {
		t.Fatalf("%s opens %s: %v", n.dir, ref.Session, err)
	}
	defer r.Close()
	if _, err := r.Verify(); err != nil {
		t.Fatalf("%s reads %s: %v", n.dir, ref.Session, err)
	}
}

func sharedKeyRows(t *testing.T, st *SQL) int {
	t.Helper()
	var n int
	must(t, st.db.QueryRow(`SELECT count(*) FROM recording_keys`).Scan(&n))
	return n
}

// TestKEKCheckAtStart: the cluster's database records which KEK the
// copies of the data keys are wrapped with; a gateway with another KEK
// is refused, one with the cluster's passes. In a database from before
// the check, the first KEK to check must open the copies stored already.
func TestKEKCheckAtStart(t *testing.T) {
	st := NewSQL(recordingDB(t))
	kekA, ka := kekFile(t, "kek-a")
	_, kb := kekFile(t, "kek-b")
	a := newNode(t, kekA, st)
	recordOn(t, a, "acme", "s-1", newClock().Now()) // copies from before the check

	// The wrong KEK first: it opens none of the copies, so it is not
	// recorded as the cluster's.
	if err := st.CheckKEK(kb); !errors.Is(err, ErrOtherKEK) || !strings.Contains(err.Error(), "newest copies of data keys opens with it") {
		t.Fatalf("a KEK that opens no copy: %v, want ErrOtherKEK", err)
	}
	must(t, st.CheckKEK(ka)) // records A's
	if err := st.CheckKEK(kb); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("another KEK after the check value is stored: %v", err)
	}
	must(t, st.CheckKEK(ka))
	var check []byte
	must(t, st.db.QueryRow(`SELECT check_value FROM recording_kek`).Scan(&check))
	if raw, err := os.ReadFile(kekA); err != nil || bytes.Contains(check, raw) {
		t.Fatalf("the check value holds the KEK: %v", err)
	}

	// An empty database: the first gateway's KEK is the cluster's, an age
	// identity as well as a key file.
	st2 := NewSQL(recordingDB(t))
	agePath := filepath.Join(t.TempDir(), "kek.age")
	_, err := GenerateAgeKEK(agePath)
	must(t, err)
	age, err := AgeKEK(agePath)
	must(t, err)
	must(t, st2.CheckKEK(age))
	if err := st2.CheckKEK(ka); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("a key file where the cluster holds an age identity: %v", err)
	}
	must(t, st2.CheckKEK(age))
}

// rotation is a cluster about to rotate its KEK: gateway a on the old
// KEK, which the database names the cluster's, and a new KEK.
type rotation struct {
	st               *SQL
	oldPath, newPath string
	oldK, newK       KEK
	a                *node
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	r := &rotation{st: NewSQL(recordingDB(t))}
	r.oldPath, r.oldK = kekFile(t, "kek-old")
	r.newPath, r.newK = kekFile(t, "kek-new")
	r.a = newNode(t, r.oldPath, r.st)
	must(t, r.st.CheckKEK(r.oldK))
	return r
}

// TestKEKRotationRewrapsSharedCopies: a rotation rewraps the copies in
// the database, so a gateway that holds only the new KEK reads a
// recording made before the rotation, and the new KEK becomes the
// cluster's (the old one is refused at start). Run again, it finds
// nothing to move.
func TestKEKRotationRewrapsSharedCopies(t *testing.T) {
	rot := newRotation(t)
	st, oldK, newK, newPath, a := rot.st, rot.oldK, rot.newK, rot.newPath, rot.a
	ref := recordOn(t, a, "acme", "s-before", newClock().Now())

	b := newNode(t, newPath, st) // holds only the new KEK
	if _, err := OpenIn(b.v, b.st, ref); !errors.Is(err, ErrKEK) {
		t.Fatalf("the new KEK before the rotation: %v, want ErrKEK", err)
	}
	if err := st.CheckKEK(newK); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("the new KEK's check before the rotation: %v", err)
	}

	rows := sharedKeyRows(t, st)
	pre, err := st.CheckRewrap(oldK, newK)
	must(t, err)
	if pre.Rewrapped != rows || sharedKeyRows(t, st) != rows {
		t.Fatalf("check before the rotation: %+v of %d rows", pre, rows)
	}
	if _, err := OpenIn(b.v, b.st, ref); !errors.Is(err, ErrKEK) {
		t.Fatalf("CheckRewrap changed a copy: %v", err)
	}
	r, err := st.RewrapKeys(oldK, newK)
	must(t, err)
	if r != (KeysRewrapped{Rewrapped: rows}) {
		t.Fatalf("rotation: %+v, want %d rewrapped", r, rows)
	}
	readsOn(t, b, ref)
	must(t, st.CheckKEK(newK))
	if err := st.CheckKEK(oldK); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("the old KEK after the rotation: %v, want ErrOtherKEK", err)
	}
	// A's own vault is rotated by vault.Rewrap; then A reads with the new
	// KEK too.
	_, err = vault.Rewrap(a.dir, oldK, newK)
	must(t, err)
	readsOn(t, newNode2(t, a.dir, newPath, st), ref)

	r, err = st.RewrapKeys(oldK, newK)
	must(t, err)
	if r != (KeysRewrapped{Already: rows}) {
		t.Fatalf("second run: %+v", r)
	}
}

// newNode2 is a gateway on an existing data directory with the KEK at
// kekPath.
func newNode2(t *testing.T, dir, kekPath string, st *SQL) *node {
	t.Helper()
	kek, err := FileKEK(kekPath)
	must(t, err)
	v, err := OpenVault(dir, kek)
	must(t, err)
	return &node{dir: dir, v: v, st: st}
}

// TestKEKRotationResumes: a rotation interrupted after a batch leaves the
// cluster's KEK as it was (a node with only the new KEK is still refused);
// running it again moves the rest, counts what the first run moved, and
// then records the new KEK.
func TestKEKRotationResumes(t *testing.T) {
	rot := newRotation(t)
	st, oldK, newK, newPath, a := rot.st, rot.oldK, rot.newK, rot.newPath, rot.a
	at := newClock().Now()
	var refs []Ref
	for _, tenant := range []string{"acme", "globex", "initech"} {
		refs = append(refs, recordOn(t, a, tenant, "s-"+tenant, at))
	}
	rows := sharedKeyRows(t, st)

	st.keysBatch = 1
	cut := errors.New("killed")
	st.afterBatch = func() error { return cut }
	r, err := st.RewrapKeys(oldK, newK)
	if !errors.Is(err, cut) || r.Rewrapped != 1 {
		t.Fatalf("interrupted rotation: %+v %v", r, err)
	}
	if err := st.CheckKEK(newK); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("new KEK after an interrupted rotation: %v, want ErrOtherKEK", err)
	}
	must(t, st.CheckKEK(oldK))

	st.afterBatch = nil
	r, err = st.RewrapKeys(oldK, newK)
	must(t, err)
	if r != (KeysRewrapped{Rewrapped: rows - 1, Already: 1}) {
		t.Fatalf("resumed rotation: %+v", r)
	}
	must(t, st.CheckKEK(newK))
	b := newNode(t, newPath, st)
	for _, ref := range refs {
		readsOn(t, b, ref)
	}
}

// TestKEKRotationRefusesAThirdKEK: a copy wrapped with neither the old nor
// the new KEK (a gateway that ran with a KEK of its own) refuses the
// rotation before anything changes, with a count. Forced through the
// batches, the other copies move and the new KEK is the cluster's, that
// one stays as it was (never deleted) and the error counts it; the
// gateway that holds the third KEK then moves it to the new one. A
// rotation between two KEKs neither of which is the cluster's is refused.
func TestKEKRotationRefusesAThirdKEK(t *testing.T) {
	rot := newRotation(t)
	st, oldK, newK, newPath, a := rot.st, rot.oldK, rot.newK, rot.newPath, rot.a
	thirdPath, thirdK := kekFile(t, "kek-third")
	at := newClock().Now()
	ra := recordOn(t, a, "acme", "s-a", at)
	c := newNode(t, thirdPath, st) // never checked: as before the check
	rc := recordOn(t, c, "acme", "s-c", at)
	rows := sharedKeyRows(t, st)
	thirds := rows / 2 // c copied as many keys as a

	const want = "copies of data keys in the database that open with neither the old nor the new key-encryption key: "
	r, err := st.CheckRewrap(oldK, newK)
	if !errors.Is(err, vault.ErrKEK) || r.Neither != thirds || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "postgres:recording_keys/content/acme/") {
		t.Fatalf("check with a third KEK's copy: %+v %v", r, err)
	}
	must(t, st.CheckKEK(oldK)) // nothing changed

	r, err = st.RewrapKeys(oldK, newK)
	if !errors.Is(err, vault.ErrKEK) || r.Neither != thirds || r.Rewrapped != rows-thirds {
		t.Fatalf("rotation with a third KEK's copy: %+v %v", r, err)
	}
	if sharedKeyRows(t, st) != rows {
		t.Fatal("a copy was deleted")
	}
	readsOn(t, c, rc) // still wrapped with the third KEK
	must(t, st.CheckKEK(newK))
	b := newNode(t, newPath, st)
	readsOn(t, b, ra)

	_, fourthK := kekFile(t, "kek-fourth")
	if _, err := st.CheckRewrap(thirdK, fourthK); !errors.Is(err, ErrOtherKEK) {
		t.Fatalf("rotation between two KEKs that are not the cluster's: %v, want ErrOtherKEK", err)
	}
	// The gateway with the third KEK rotates to the cluster's.
	r, err = st.RewrapKeys(thirdK, newK)
	must(t, err)
	if r != (KeysRewrapped{Rewrapped: thirds, Already: rows - thirds}) {
		t.Fatalf("rotation from the third KEK: %+v", r)
	}
	readsOn(t, b, rc)
}
