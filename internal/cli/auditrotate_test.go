package cli

import (
	"context"
	"os"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// TestAuditRotateKey: the signing key is handed over with the gateway
// stopped; an interrupted rotation is finished, not repeated; the log
// then verifies with the old key and with the new one, across a restart
// that signs with the new key.
func TestAuditRotateKey(t *testing.T) {
	cfg := gatewayConfig(t, true)
	stop := startGateway(t, cfg)
	if out := runTandem(t, 1, "audit", "rotate-key", "--by", "alice", "-c", cfg.Path); !strings.Contains(out, "stop the gateway first") {
		t.Fatalf("rotate beside a running gateway: %s", out)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out := runTandem(t, 2, "audit", "rotate-key", "-c", cfg.Path); !strings.Contains(out, "--by is required") {
		t.Fatalf("without --by: %s", out)
	}
	old, err := openSigningKey(cfg, false)
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted after the hand-over was written, before the key file
	// was replaced: the next run only puts the key in place.
	next, err := openNextSigningKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := handOverLog(context.Background(), cfg, old, next, "alice"); err != nil {
		t.Fatal(err)
	}
	out := runTandem(t, 0, "audit", "rotate-key", "--by", "alice", "-c", cfg.Path)
	for _, want := range []string{"interrupted rotation was found", "new verifier key: " + next.Verifier(), "old verifier key: " + old.Verifier()} {
		if !strings.Contains(out, want) {
			t.Fatalf("rotate output lacks %q:\n%s", want, out)
		}
	}
	cur, err := openSigningKey(cfg, false)
	if err != nil || cur.Verifier() != next.Verifier() {
		t.Fatalf("the key file does not hold the new key: %v", err)
	}
	if st, err := os.Stat(cfg.Audit.SigningKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", st.Mode(), err)
	}
	if _, err := os.Stat(nextKeyPath(cfg)); !os.IsNotExist(err) {
		t.Fatalf("the .next key is left behind: %v", err)
	}

	// The gateway starts with the new key and signs with it.
	stop = startGateway(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{old.Verifier(), next.Verifier()} {
		rep, err := audit.Verify(auditDir(cfg), key, cfg.Audit.WitnessFile)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || len(rep.SigningKeys) != 2 {
			t.Fatalf("verify with %s: keys %v problems %v", key, rep.SigningKeys, rep.Problems)
		}
	}
	v, err := openVault(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	var handovers int
	err = audit.ReadKeys(auditDir(cfg), v, audit.Filter{}, func(r audit.Record) error {
		if r.Event.Type == audit.LogKeyHandover {
			handovers++
			if r.Event.Attrs["by"] != "alice" || r.Event.Attrs["new_key"] != next.Verifier() {
				t.Errorf("log.key_handover: %v", r.Event.Attrs)
			}
		}
		return nil
	})
	if err != nil || handovers != 1 {
		t.Fatalf("log.key_handover events: %d (%v)", handovers, err)
	}
}
