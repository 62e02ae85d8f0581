package gateway

import (
	"errors"
	"reflect"
	"testing"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/relay"
)

// TestEndEventsKeepTheirShape: session.end and forward.end, now built by
// the typed constructors, say what the gateway wrote by hand before:
// exec byte counts always, the exit status or signal unless an error says
// how it ended, a forward's destination and its two directions.
func TestEndEventsKeepTheirShape(t *testing.T) {
	tgt := audit.Target{Person: "alice", Session: "s1", Tenant: "t1", Host: "db1", Login: "root", Request: "r1"}
	fwdTgt := tgt
	fwdTgt.Source = "127.0.0.1:1"
	exec := &liveSession{action: policy.ActionExec, tgt: tgt}
	fwd := &liveSession{action: policy.ActionForward, forwardTo: "localhost:5432", tgt: fwdTgt}
	status := uint32(3)
	res := &relay.Result{Counts: relay.Counts{In: 1, Out: 2, Err: 4}, ExitStatus: &status}
	tests := []struct {
		name string
		got  audit.Event
		typ  audit.Type
		src  string
		want map[string]string
	}{
		{"exit status", exec.endEvent(outcome{res: res}, nil), audit.SessionEnd, "",
			map[string]string{"bytes_in": "1", "bytes_out": "2", "bytes_err": "4", "exit_status": "3"}},
		{"error", exec.endEvent(outcome{res: res, err: errors.New("boom")}, nil), audit.SessionEnd, "",
			map[string]string{"bytes_in": "1", "bytes_out": "2", "bytes_err": "4", "error": "boom"}},
		{"signal", exec.endEvent(outcome{res: &relay.Result{ExitSignal: "KILL"}, reason: "locked"}, nil), audit.SessionEnd, "",
			map[string]string{"bytes_in": "0", "bytes_out": "0", "bytes_err": "0", "exit_signal": "KILL", "reason": "locked"}},
		{"not started", exec.endEvent(outcome{err: errors.New("no disk")}, nil), audit.SessionEnd, "",
			map[string]string{"error": "no disk"}},
		{"interactive", exec.endEvent(outcome{reason: "owner left"}, &audit.RecordingSummary{Path: "/r", SHA256: "aa", FileSHA256: "bb"}),
			audit.SessionEnd, "", map[string]string{"reason": "owner left", "recording": "/r", "recording_sha256": "aa", "recording_file_sha256": "bb"}},
		{"forward", fwd.endEvent(outcome{res: res}, nil), audit.ForwardEnd, fwdTgt.Source,
			map[string]string{"destination": "localhost:5432", "bytes_in": "1", "bytes_out": "2"}},
	}
	for _, tt := range tests {
		e := tt.got
		if e.Type != tt.typ || e.Person != "alice" || e.Session != "s1" || e.Host != "db1" || e.Tenant != "t1" ||
			e.Login != "root" || e.Request != "r1" || e.Source != tt.src {
			t.Errorf("%s: %+v", tt.name, e)
		}
		if !reflect.DeepEqual(e.Attrs, tt.want) {
			t.Errorf("%s: attrs %v, want %v", tt.name, e.Attrs, tt.want)
		}
	}
}
