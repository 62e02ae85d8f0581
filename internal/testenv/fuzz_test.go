package testenv

import (
	"strings"
	"testing"
)

// FuzzAcceptedCertLogins feeds arbitrary sshd logs to the log parser: it
// must not panic, and it finds at most one login per log line.
func FuzzAcceptedCertLogins(f *testing.F) {
	f.Add("Accepted publickey for root from 127.0.0.1 port 1 ssh2: ECDSA-CERT SHA256:x ID tandem person=alice (serial 1) CA ECDSA SHA256:y\n")
	f.Add("Accepted certificate ID \"a\" (serial 2) signed by ECDSA CA SHA256:z via /x\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, log string) {
		logins := parseCertLogins(log)
		if n := strings.Count(log, "\n") + 1; len(logins) > n {
			t.Fatalf("%d logins from %d lines", len(logins), n)
		}
		for _, l := range logins {
			if strings.Contains(l.ID, "\n") || strings.Contains(l.User, "\n") {
				t.Fatalf("login %q spans lines", l)
			}
		}
	})
}
