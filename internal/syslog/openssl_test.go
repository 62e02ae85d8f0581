package syslog

import (
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestShipRefusesWeakCollectors points the shipper at `openssl s_server`
// offering only what the BSI profile excludes: TLS 1.0 or 1.1, or TLS 1.2
// with a suite outside ECDHE + AES-GCM. The handshake must fail and no
// record may be written.
func TestShipRefusesWeakCollectors(t *testing.T) {
	openssl := testenv.RequireProgram(t, "openssl")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tls1.0", []string{"-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"}},
		{"tls1.1", []string{"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"}},
		{"chacha20 in tls1.2", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
		{"cbc in tls1.2", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.stop()
			port := testenv.FreePort(t)
			var out testenv.SyncBuffer
			args := append([]string{"s_server", "-accept", "127.0.0.1:" + strconv.Itoa(port), "-naccept", "10",
				"-cert", f.pki.ServerCert, "-key", f.pki.ServerKey, "-CAfile", f.pki.CA, "-Verify", "1"}, tc.args...)
			cmd := exec.Command(openssl, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			stdin, keep := io.Pipe() // s_server ends at the end of its input
			cmd.Stdin = stdin
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); keep.Close(); _ = cmd.Wait() })
			f.opts.Config.Collectors[0].Addr = "127.0.0.1:" + strconv.Itoa(port)
			f.append(t, 3)
			var s *Shipper
			testenv.WaitFor(5*time.Second, func() bool { // s_server needs a moment to listen
				if s == nil {
					s = run(t, f.opts)
				}
				return strings.Contains(s.Status()[0].LastErr, "tls:") || strings.Contains(s.Status()[0].LastErr, "remote error")
			})
			st := s.Status()[0]
			if st.Delivered != 0 || !strings.Contains(st.LastErr, "tls") {
				t.Fatalf("status with a %s collector: %+v\ns_server:\n%s", tc.name, st, out.String())
			}
			if strings.Contains(out.String(), "session.start") {
				t.Fatalf("a record reached the %s collector:\n%s", tc.name, out.String())
			}
			t.Logf("refused: %s", st.LastErr)
		})
	}
}
