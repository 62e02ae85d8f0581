package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// sharedRecordingNode writes the configuration of one node of a cluster
// that keeps its state and recordings in the PostgreSQL database dsn,
// with the KEK file kek, in dir (kept across calls: a node whose
// configuration changes).
func sharedRecordingNode(t *testing.T, dir, dsn, kek string) *config.Config {
	t.Helper()
	text := fmt.Sprintf("gateway: {listen: \"127.0.0.1:2222\", data_dir: ./data}\ntenants:\n  - {id: t1, name: T1}\n"+
		"store: {driver: postgres, dsn: %q}\nrecording: {storage: store, kek_file: %q}\n", dsn, kek)
	return configText(t, dir, text)
}

// startRecorder does what tandem serve does with the recordings at its
// start (the KEK check included), and returns its vault.
func startRecorder(cfg *config.Config) (*record.Vault, error) {
	v, err := openVault(cfg, true)
	if err != nil {
		return nil, err
	}
	st, err := openKeyedStore(cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if _, _, err := newRecorder(cfg, v, st); err != nil {
		return nil, err
	}
	return v, nil
}

// TestKEKRotateCluster: a node whose KEK is not the cluster's refuses to
// start, naming its key file; `tandem kek rotate` on node a rewraps the
// copies of the keys in the database and queues kek.rotated with their
// count; node b, given only the new KEK, starts and reads a recording
// node a made before the rotation, and node a with the old KEK refuses
// to start.
func TestKEKRotateCluster(t *testing.T) {
	dsn := testenv.RequirePostgres(t).NewDatabase(t)
	keys := t.TempDir()
	oldKEK, otherKEK, newKEK := filepath.Join(keys, "kek-old"), filepath.Join(keys, "kek-other"), filepath.Join(keys, "kek-new")
	dirA, dirB := t.TempDir(), t.TempDir()
	a := sharedRecordingNode(t, dirA, dsn, oldKEK)
	va, err := startRecorder(a)
	if err != nil {
		t.Fatal(err)
	}
	// A recording on node a, with a copy of its key in the database.
	st, err := openKeyedStore(a)
	if err != nil {
		t.Fatal(err)
	}
	s, err := recordingStorage(a, st, va)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	w, err := record.Create(va, s, record.Meta{SessionID: "s-before", Tenant: "t1", Kind: record.KindPTY, Started: now, Host: "db1", Login: "root", Owner: "alice"},
		record.Options{Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output([]byte("root@db1# id\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Node b with a KEK of its own: refused, before anything is recorded.
	// It shares node a's state key, as a node of a cluster does.
	if err := os.MkdirAll(filepath.Join(dirB, "data", "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(keyDir(a), store.KeyFile), filepath.Join(dirB, "data", "keys", store.KeyFile))
	b := sharedRecordingNode(t, dirB, dsn, otherKEK)
	_, err = startRecorder(b)
	if err == nil || !strings.Contains(err.Error(), "recording.kek_file "+otherKEK+": not the key-encryption key the cluster's recordings are wrapped with") ||
		!strings.Contains(err.Error(), "tandem kek rotate") {
		t.Fatalf("node b with another KEK: %v", err)
	}
	t.Logf("node b with another KEK: %v", err)

	out := runTandem(t, 0, "kek", "rotate", "--new", newKEK, "-c", a.Path)
	if !strings.Contains(out, "Copies of data keys in the cluster's database: 1 wrapped with "+newKEK+" (1 moved now, 0 already)") {
		t.Fatalf("rotate on node a:\n%s", out)
	}
	t.Logf("tandem kek rotate on node a:\n%s", out)
	_, sa, err := openStore(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := sa.PendingAudit(context.Background())
	sa.Close()
	if err != nil || len(pending) == 0 {
		t.Fatalf("outbox: %d entries, %v", len(pending), err)
	}
	var e audit.Event
	if err := json.Unmarshal(pending[len(pending)-1].Event, &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != audit.KEKRotated || e.Attrs[audit.KeySharedRewrapped] != "1" {
		t.Fatalf("queued event: %+v", e)
	}

	// Node a again with the old KEK: refused.
	if _, err := startRecorder(a); err == nil || !strings.Contains(err.Error(), "recording.kek_file "+oldKEK) {
		t.Fatalf("node a with the old KEK after the rotation: %v", err)
	}
	// Node b with only the new KEK starts and reads node a's recording.
	b = sharedRecordingNode(t, dirB, dsn, newKEK)
	vb, err := startRecorder(b)
	if err != nil {
		t.Fatalf("node b with the new KEK: %v", err)
	}
	sb, err := openKeyedStore(b)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	rs, err := recordingStorage(b, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := record.OpenIn(vb, rs, w.Ref())
	if err != nil {
		t.Fatalf("node b opens node a's recording: %v", err)
	}
	defer r.Close()
	if _, err := r.Verify(); err != nil {
		t.Fatalf("node b reads node a's recording: %v", err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
