package ca

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRotationPhases(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	k, err := LoadOrCreate(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	old := fingerprint(k.UserCA)

	r, started, err := StartRotation(dir, User, KeyP384, 7*24*time.Hour, now)
	if err != nil || !started || r.Old != old || r.New == old {
		t.Fatalf("start: %+v %v %v", r, started, err)
	}
	if again, started, err := StartRotation(dir, User, KeyP384, time.Hour, now); err != nil || started || again != r {
		t.Fatalf("second start is not idempotent: %+v %v %v", again, started, err)
	}
	st, _ := os.Stat(filepath.Join(dir, UserCAFile+".next"))
	if st == nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("next key: %v", st)
	}
	if _, err := k.Refresh(); err != nil {
		t.Fatal(err)
	}
	lines, _ := k.PublicLines(User)
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "tandem-user-ca-next") {
		t.Fatalf("overlap publishes %q", lines)
	}
	if fingerprint(k.UserCA) != old {
		t.Fatal("the new key signs during the overlap")
	}
	if host, _ := k.PublicLines(Host); len(host) != 1 {
		t.Fatalf("host CA publishes %q", host)
	}

	if _, _, err := FinishRotation(dir, User, now.Add(time.Hour), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("finish before the overlap: %v", err)
	}
	if due, err := FinishDue(dir, now.Add(time.Hour)); err != nil || len(due) != 0 {
		t.Fatalf("due early: %v %v", due, err)
	}
	due, err := FinishDue(dir, now.Add(8*24*time.Hour))
	if err != nil || len(due) != 1 || due[0].Phase != Finished {
		t.Fatalf("due: %+v %v", due, err)
	}
	changed, err := k.Refresh()
	if err != nil || len(changed) != 1 || changed[0] != User || fingerprint(k.UserCA) != r.New {
		t.Fatalf("refresh after finish: %v %v", changed, err)
	}
	lines, _ = k.PublicLines(User)
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "tandem-user-ca-retired") {
		t.Fatalf("finished publishes %q", lines)
	}
	retired, err := load(filepath.Join(dir, due[0].Retired))
	if err != nil || fingerprint(retired) != old {
		t.Fatalf("retired key: %v", err)
	}
	if _, _, err := StartRotation(dir, User, KeyP384, time.Hour, now); err == nil {
		t.Fatal("a new rotation started before the old key was retired")
	}

	if _, ok, err := RetireRotation(dir, User); err != nil || !ok {
		t.Fatalf("retire: %v %v", ok, err)
	}
	if _, ok, err := RetireRotation(dir, User); err != nil || ok {
		t.Fatalf("second retire: %v %v", ok, err)
	}
	k.Refresh()
	if lines, _ = k.PublicLines(User); len(lines) != 1 {
		t.Fatalf("retired still published: %q", lines)
	}
	if _, err := os.Stat(filepath.Join(dir, due[0].Retired)); err != nil {
		t.Fatal("retired key file removed")
	}
}

// A finish interrupted after the old key got its retired name but before
// the new one took its place is completed by running it again.
func TestFinishResumes(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	r, _, err := StartRotation(dir, Host, KeyP256, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	// What the first steps of a finish leave behind.
	st, _ := readState(dir)
	st[Host].Phase, st[Host].Retired = Finishing, HostCAFile+".retired-x"
	if err := writeState(dir, st); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, HostCAFile), filepath.Join(dir, HostCAFile+".retired-x")); err != nil {
		t.Fatal(err)
	}
	k, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if lines, _ := k.PublicLines(Host); len(lines) < 2 {
		t.Fatalf("half-finished rotation publishes %q", lines)
	}
	done, err := FinishDue(dir, now) // resumed although the overlap has not passed
	if err != nil || len(done) != 1 || done[0].Retired != HostCAFile+".retired-x" {
		t.Fatalf("resume: %+v %v", done, err)
	}
	k, _ = Load(dir)
	if fingerprint(k.HostCA) != r.New {
		t.Fatal("new host CA does not sign after the resumed finish")
	}
	if _, err := os.Stat(filepath.Join(dir, HostCAFile+".next")); !os.IsNotExist(err) {
		t.Fatalf("next key still there: %v", err)
	}
}

// A next key written before a crash kept the state from being saved is
// the one the rotation publishes, not replaced by another.
func TestStartTakesLeftoverNextKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	next, err := createKey(filepath.Join(dir, UserCAFile+".next"), KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := StartRotation(dir, User, KeyP384, time.Hour, time.Now())
	if err != nil || r.New != fingerprint(next) {
		t.Fatalf("start after a crash: %+v %v", r, err)
	}
}
