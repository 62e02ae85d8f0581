package record

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
	"tandem.dev/tandem/internal/vault"
)

// node is one gateway of a cluster as recordings see it: its own data
// directory and vault, the cluster's KEK, the shared storage.
type node struct {
	dir string
	v   *Vault
	st  *SQL
}

func newNode(t *testing.T, kekPath string, st *SQL) *node {
	t.Helper()
	kek, err := FileKEK(kekPath)
	must(t, err)
	dir := filepath.Join(t.TempDir(), "data")
	v, err := OpenVault(dir, kek)
	must(t, err)
	v.AddShredHook(st.ShredKeys)
	return &node{dir: dir, v: v, st: st}
}

// TestSharedStorageAcrossGateways: a recording made by gateway A is
// listed, read, summarised and its sealed keystrokes opened through
// gateway B, which has none of A's keys in its own vault (the copies in
// the database, wrapped by the cluster's KEK, serve); a gateway with
// another KEK reads nothing; a shred on either node destroys the shared
// copies, and no gateway records on that day again.
func TestSharedStorageAcrossGateways(t *testing.T) {
	backendNow = "postgres"
	defer func() { backendNow = "local" }()
	st := NewSQL(recordingDB(t))
	kekPath := filepath.Join(t.TempDir(), "kek")
	must(t, GenerateFileKEK(kekPath))
	a, b := newNode(t, kekPath, st), newNode(t, kekPath, st)
	clock := newClock()
	meta := func(id string) Meta {
		return Meta{SessionID: id, Tenant: "acme", Kind: KindPTY, Started: clock.Now(), Host: "db1", Login: "root", Owner: "alice"}
	}
	record := func(n *node, id string) (*Writer, Summary) {
		w, err := Create(n.v, n.st, meta(id), Options{Now: clock.Now, Tick: make(chan time.Time)})
		must(t, err)
		must(t, w.Output([]byte("[sudo] password for alice: ")))
		must(t, w.Input("alice", []byte("s3cret\r")))
		must(t, w.Output([]byte("\r\nroot@db1# ")))
		must(t, w.Input("bob", []byte("id\r")))
		sum, err := w.Close()
		must(t, err)
		return w, sum
	}
	wa, suma := record(a, "s-on-a")
	if !strings.HasPrefix(wa.Path(), "postgres:recordings/acme/") {
		t.Fatalf("name %q", wa.Path())
	}
	wb, _ := record(b, "s-on-b") // B's own key for the day differs from A's

	hs, err := ListIn(b.st, "acme")
	must(t, err)
	if len(hs) != 2 || hs[0].Session != "s-on-a" || hs[1].Session != "s-on-b" {
		t.Fatalf("B lists %+v", hs)
	}
	r, err := OpenIn(b.v, b.st, wa.Ref())
	must(t, err)
	vs, err := r.Verify()
	r.Close()
	must(t, err)
	if vs.SHA256 != suma.SHA256 || vs.FileSHA256 != suma.FileSHA256 {
		t.Fatalf("B reads %+v, A wrote %+v", vs, suma)
	}
	ls, err := ReadSealedSummaryIn(b.v, b.st, wa.Ref())
	must(t, err)
	if ls != suma.Sealed || ls.Prompts != 1 {
		t.Fatalf("B's listing summary %+v, A's %+v", ls, suma.Sealed)
	}
	sealed, err := OpenSealedIn(b.v, b.st, wa.Ref())
	must(t, err)
	if len(sealed) != 1 || string(sealed[0].Data) != "s3cret" {
		t.Fatalf("sealed keystrokes through B: %+v", sealed)
	}
	r, err = OpenIn(a.v, a.st, wb.Ref())
	must(t, err)
	if _, err := r.Verify(); err != nil {
		t.Fatalf("A reads B's recording: %v", err)
	}
	r.Close()

	// Another KEK opens no copy.
	otherKEK := filepath.Join(t.TempDir(), "other")
	must(t, GenerateFileKEK(otherKEK))
	c := newNode(t, otherKEK, st)
	if _, err := OpenIn(c.v, c.st, wa.Ref()); !errors.Is(err, ErrKEK) {
		t.Fatalf("a gateway with another KEK: %v, want ErrKEK", err)
	}

	// B's retention destroys the day: A's recording is unreadable from B
	// at once; A's own copy goes with A's run.
	_, err = b.v.Shred(vault.Content, "acme", clock.Now())
	must(t, err)
	if _, err := OpenIn(b.v, b.st, wa.Ref()); !errors.Is(err, ErrShredded) {
		t.Fatalf("B after its shred: %v, want ErrShredded", err)
	}
	fresh := newNode(t, kekPath, st)
	if _, err := OpenIn(fresh.v, fresh.st, wa.Ref()); !errors.Is(err, ErrShredded) {
		t.Fatalf("a third gateway after the shred: %v, want ErrShredded", err)
	}
	// A gateway that still holds its key does not bring the day back.
	st2 := NewSQL(st.db) // another process: nothing remembered as copied
	if _, err := Create(a.v, st2, meta("s-after"), Options{Tick: make(chan time.Time)}); !errors.Is(err, ErrShredded) {
		t.Fatalf("recording on a destroyed day: %v, want ErrShredded", err)
	}
	_, err = a.v.Shred(vault.Content, "acme", clock.Now())
	must(t, err)
	if _, err := OpenIn(a.v, a.st, wa.Ref()); !errors.Is(err, ErrShredded) {
		t.Fatalf("A after its shred: %v", err)
	}
	// The audit's own classes have no shared copies: their shred needs
	// no database.
	if err := st.ShredKeys(vault.Admin, "acme", Day(clock.Now())); err != nil {
		t.Fatal(err)
	}
}

// TestStorageOutage: with PostgreSQL stopped, a recording cannot start
// (ErrUnavailable, so the gateway refuses the session), a running one
// fails at its next sync (the gateway ends the session with the reason),
// and once the server is back new recordings start without a restart.
func TestStorageOutage(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	db := openRecordingDB(t, pg.NewDatabase(t))
	st := NewSQL(db)
	e := newEnv(t)
	e.st, e.db = st, db
	w := e.create(t, e.meta("s-before", KindPTY), Options{})
	must(t, w.Output([]byte("before the outage\r\n")))
	must(t, w.Flush())

	must(t, pg.Stop())
	if _, err := Create(e.v, st, e.meta("s-during", KindPTY), Options{Tick: make(chan time.Time)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Create during the outage: %v, want ErrUnavailable", err)
	} else if !strings.Contains(err.Error(), "recording storage (PostgreSQL) is unavailable") {
		t.Fatalf("message: %v", err)
	}
	must(t, w.Output([]byte("during the outage\r\n")))
	err := w.Flush()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Flush during the outage: %v, want ErrUnavailable", err)
	}
	select {
	case <-w.Failed():
	default:
		t.Fatal("the writer did not report its failure")
	}
	if _, err := w.Close(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Close: %v", err)
	}

	must(t, pg.Start())
	w2, err := Create(e.v, st, e.meta("s-after", KindPTY), Options{Tick: make(chan time.Time)})
	must(t, err)
	_, err = w2.Close()
	must(t, err)
	// What was synced before the outage is there; the failed recording
	// reads as incomplete, not as something else.
	evs, err := readAll(t, e, w.Path())
	if !isErr(err, ErrIncomplete) || outputText(evs) != "before the outage\r\n" {
		t.Fatalf("recording cut by the outage: %q %v", outputText(evs), err)
	}
}

// The crash test's child: it records, syncs, writes more without a sync
// and waits to be killed.
const crashChildEnv = "TANDEM_RECORD_CRASH_CHILD"

func crashChild() {
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	kek, err := FileKEK(os.Getenv("TANDEM_RECORD_CRASH_KEK"))
	if err != nil {
		fail(err)
	}
	dir := os.Getenv(crashChildEnv)
	v, err := OpenVault(dir, kek)
	if err != nil {
		fail(err)
	}
	var s Storage = Local(dir)
	if dsn := os.Getenv("TANDEM_RECORD_CRASH_DSN"); dsn != "" {
		st, err := store.OpenPostgres(dsn)
		if err != nil {
			fail(err)
		}
		db, err := st.RecordingDB()
		if err != nil {
			fail(err)
		}
		sq := NewSQL(db)
		if spool := os.Getenv("TANDEM_RECORD_CRASH_SPOOL"); spool != "" {
			if sq, err = sq.WithSpool(spool); err != nil {
				fail(err)
			}
		}
		s = sq
	}
	w, err := Create(v, s, Meta{SessionID: "s-killed", Tenant: "acme", Kind: KindPTY, Started: time.Now()}, Options{Tick: make(chan time.Time)})
	if err != nil {
		fail(err)
	}
	if err := w.Output([]byte("synced before the kill\r\n")); err != nil {
		fail(err)
	}
	if err := w.Flush(); err != nil { // what the one-second tick does
		fail(err)
	}
	if err := w.Output([]byte("never synced\r\n")); err != nil {
		fail(err)
	}
	fmt.Println("synced", w.Path())
	time.Sleep(time.Minute) // killed long before
	os.Exit(3)
}

// TestCrashAfterSyncedFlush kills a recording process with SIGKILL right
// after a synced flush: everything synced is readable, and the recording
// says it is incomplete.
func TestCrashAfterSyncedFlush(t *testing.T) {
	eachStorage(t, func(t *testing.T) { testCrashAfterSyncedFlush(t, "") })
	// Through the spool: what was synced is in the spool file, and the
	// uploader of the next start puts it into the database.
	t.Run("postgres with spool", func(t *testing.T) {
		prev := backendNow
		backendNow = "postgres"
		defer func() { backendNow = prev }()
		testCrashAfterSyncedFlush(t, filepath.Join(t.TempDir(), "spool"))
	})
}

func testCrashAfterSyncedFlush(t *testing.T, spool string) {
	e := newEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+e.dir, "TANDEM_RECORD_CRASH_KEK="+e.kek, "TANDEM_RECORD_CRASH_DSN="+e.dsn,
		"TANDEM_RECORD_CRASH_SPOOL="+spool)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var name string
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "synced ") {
			t.Fatalf("child: %q", l)
		}
		name = strings.TrimSpace(strings.TrimPrefix(l, "synced "))
	case <-time.After(60 * time.Second):
		t.Fatal("the child did not record in 60 s")
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child ended with %v, want killed", err)
	}
	if spool != "" {
		sq, err := NewSQL(e.db).WithSpool(spool)
		must(t, err)
		must(t, sq.Upload(context.Background()))
		if n, _ := sq.Spooled(); n != 0 {
			t.Fatalf("the crashed recording's spool file is still there after the upload (%d)", n)
		}
	}
	evs, err := readAll(t, e, name)
	if !isErr(err, ErrIncomplete) {
		t.Fatalf("after the kill: %v, want ErrIncomplete", err)
	}
	if got := outputText(evs); got != "synced before the kill\r\n" {
		t.Fatalf("after the kill the recording holds %q", got)
	}
}
