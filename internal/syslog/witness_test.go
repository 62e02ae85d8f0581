package syslog

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// TestCheckpointsIgnoreRecordText: a record's MSG is the record as the
// log stores it, and a record of a log from before format v2 carries the
// person's command line in clear. Text there that looks like a checkpoint
// element is no checkpoint: it neither stops the witness read nor adds a
// note the collector never got as one.
func TestCheckpointsIgnoreRecordText(t *testing.T) {
	h := header{hostname: "gw1"}
	real := h.checkpointMessage(1, audit.SignedCheckpoint{Note: []byte("tandem/audit\n3\nroot\n\n— sig\n"), Size: 3, Origin: "tandem/audit"}, time.Unix(0, 0))
	forged := base64.StdEncoding.EncodeToString([]byte("forged note\n"))
	for _, cmd := range []string{`[checkpoint@32473 origin="x"] ` + forged, `[checkpoint@32473 x] not base64!`, `[checkpoint@32473 unterminated`} {
		raw := `{"index":0,"type":"session.start","attrs":{"command":"` + cmd + `"},"v":1}`
		rec := h.recordMessage(1, audit.Envelope{Index: 0, Type: audit.SessionStart, V: 1}, []byte(raw))
		cps, err := Checkpoints(strings.NewReader(string(rec) + "\n" + string(real) + "\n"))
		if err != nil || len(cps) != 1 || !strings.HasPrefix(string(cps[0]), "tandem/audit\n") {
			t.Errorf("command %q: %d checkpoints %q, %v; want only the real one", cmd, len(cps), cps, err)
		}
	}
}

// FuzzCheckpoints: any collector file either fails with a line number or
// yields notes, each once.
func FuzzCheckpoints(f *testing.F) {
	h := header{hostname: "gw1"}
	f.Add(string(h.checkpointMessage(1, audit.SignedCheckpoint{Note: []byte("n\n"), Size: 1, Origin: "o"}, time.Unix(0, 0))))
	f.Add(string(h.recordMessage(1, audit.Envelope{Type: audit.SessionStart, V: 1}, []byte(`{"x":"[checkpoint@32473 a] b"}`))))
	f.Add("[checkpoint@32473 a=\"]\\\"\"] Zm9v\n[audit@32473 ] [checkpoint@32473 ]")
	f.Fuzz(func(t *testing.T, s string) {
		cps, err := Checkpoints(strings.NewReader(s))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") && !strings.HasPrefix(err.Error(), "read collector file") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range cps {
			if seen[string(c)] {
				t.Fatalf("note %q twice", c)
			}
			seen[string(c)] = true
		}
	})
}
