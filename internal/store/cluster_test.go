package store

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestClusterSessions: each node's list replaces its earlier one, a
// second handle (another node) reads every node's, and a node that stops
// publishing drops out of the listing once its heartbeat is older than
// the reader's bound; its rows are deleted by the next publisher.
func TestClusterSessions(t *testing.T) {
	eachBackend(t, testClusterSessions)
}

func testClusterSessions(t *testing.T, bk backend) {
	ctx := context.Background()
	a, b := openTwo(t, bk)
	g0 := mustGeneration(t, a)
	s1 := ClusterSession{ID: "s1", Owner: "alice", Host: "db1", Login: "root", Tenant: "nord", State: "waiting",
		Participants: []ClusterParticipant{{Person: "alice", Mode: "owner"}}, Started: t0}
	s2 := ClusterSession{ID: "s2", Owner: "bob", Host: "web1", Login: "deploy", Tenant: "nord", State: "live",
		Participants: []ClusterParticipant{{Person: "bob", Mode: "owner"}, {Person: "xena", Mode: "observer", External: true}},
		Started:      t0.Add(time.Second)}
	if err := a.PublishSessions(ctx, "", nil, t0, t0); err == nil {
		t.Error("an empty node name was accepted")
	}
	if err := a.PublishSessions(ctx, "a", []ClusterSession{s1}, t0, t0.Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishSessions(ctx, "b", []ClusterSession{s2}, t0, t0.Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if g := mustGeneration(t, a); g != g0 {
		t.Errorf("publishing moved the generation to %d, want %d", g, g0)
	}
	got, err := a.ClusterSessions(ctx, t0.Add(-5*time.Second))
	s1.Node, s2.Node = "a", "b"
	if err != nil || !reflect.DeepEqual(got, []ClusterSession{s1, s2}) {
		t.Fatalf("ClusterSessions: %+v, %v; want %+v", got, err, []ClusterSession{s1, s2})
	}

	// a's session went live; its earlier row is replaced, not added to.
	s1.State = "live"
	if err := a.PublishSessions(ctx, "a", []ClusterSession{s1}, t0.Add(3*time.Second), t0.Add(-2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.ClusterSessions(ctx, t0.Add(-2*time.Second)); len(got) != 2 || got[0].State != "live" {
		t.Fatalf("after a's update: %+v", got)
	}
	// b stops (killed): its heartbeat stays at t0; readers with a bound
	// past it no longer see b's session, and a's next publish deletes it.
	if got, _ := a.ClusterSessions(ctx, t0.Add(time.Second)); len(got) != 1 || got[0].ID != "s1" {
		t.Fatalf("a stale node's session is listed: %+v", got)
	}
	if err := a.Heartbeat(ctx, "a", t0.Add(8*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishSessions(ctx, "a", nil, t0.Add(9*time.Second), t0.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.ClusterSessions(ctx, t0.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("after a ended its session and b's rows went stale: %+v", got)
	}
}

// openTwo opens a temporary store through two handles, which stand for
// two gateway processes (nodes) sharing the file.
func openTwo(t *testing.T, bk backend) (a, b *Store) {
	t.Helper()
	a, path := openTemp(t, bk)
	b, err := openAt(path, keyed(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}
