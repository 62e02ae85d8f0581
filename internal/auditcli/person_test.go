package auditcli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// TestShowPersonInEveryRole: --person finds a person in whatever role an
// event names them: owner, joiner, requester, approver, locker, locked.
func TestShowPersonInEveryRole(t *testing.T) {
	data := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: filepath.Join(data, "audit"), Key: testKey(t), Keys: keysOf(t, data)})
	if err != nil {
		t.Fatal(err)
	}
	s1 := audit.Target{Person: "alice", Session: "s1", Host: "db1", Tenant: "acme", Login: "root"}
	req := audit.RequestRef{Conn: audit.Conn{Person: "carol"}, Request: "r1", Hosts: []string{"db2"}, Login: "deploy", Requester: "carol"}
	approval := req
	approval.Person = "bob"
	for _, e := range []audit.Event{
		audit.SessionStartEvent{Target: s1, Action: "shell", Mode: "user"}.Event(),
		audit.CommandEvent{Conn: audit.Conn{Person: "bob"}, Command: "join s1"}.Event(),
		audit.SessionJoinEvent{Target: s1, Participant: "bob", Mode: "peer"}.Event(),
		audit.SessionLeaveEvent{Target: s1, Participant: "bob", Reason: "done"}.Event(),
		audit.SessionEndEvent{Target: s1}.Event(),
		audit.RequestCreateEvent{RequestRef: req, Reason: "JIRA-1"}.Event(),
		audit.RequestApproveEvent{RequestRef: approval, Approvals: 1}.Event(),
		audit.LockEvent{Person: "dave", By: "bob", Reason: "left"}.Event(),
		// Written by hand before the constructors: the same keys.
		{Type: audit.SessionJoin, Person: "alice", Session: "s0", Attrs: map[string]string{"participant": "erin"}},
		// A key that names a person in one type names none in another.
		audit.ConfigChangeEvent{Kind: "modify", Entity: "person", ID: "bob"}.Event(),
	} {
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		person string
		want   []string // the types of the lines, in order
	}{
		{"alice", []string{"session.start", "session.join", "session.leave", "session.end", "session.join"}},
		{"bob", []string{"command", "session.join", "session.leave", "request.approve", "lock"}},
		{"carol", []string{"request.create", "request.approve"}},
		{"dave", []string{"lock"}},
		{"erin", []string{"session.join"}},
		{"mallory", nil},
	}
	for _, tt := range tests {
		out, err := run(t, nil, "show", "--data", data, "--kek-file", kekOf(data), "--person", tt.person)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) > 2 {
				got = append(got, f[2])
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("--person %s: %v, want %v\n%s", tt.person, got, tt.want, out)
		}
	}
}
