package monitoring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Check is one condition /readyz requires. Run returns why the gateway is
// not ready, or nil; it must be cheap and write nothing to disk.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Warn makes a failure a warning: /readyz names it ("warn NAME: why")
	// but stays 200. For what people must see but that must not take the
	// gateway out of service, such as unreported emergency access.
	Warn bool
}

// Health answers /healthz and /readyz.
type Health struct {
	checks []Check
	now    func() time.Time

	mu      sync.Mutex
	at      time.Time // when last were computed
	last    []error
	timeout time.Duration
}

// readyCache is how long one round of checks answers /readyz: a scraper
// hammering it costs one certificate signature and one store query per
// second at most.
const readyCache = time.Second

// NewHealth returns readiness over checks, run in order.
func NewHealth(checks ...Check) *Health {
	return &Health{checks: checks, now: time.Now, timeout: 3 * time.Second}
}

// Ready runs the checks (or reuses the last round, if younger than a
// second) and returns each one's error, in order.
func (h *Health) Ready(ctx context.Context) []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != nil && h.now().Sub(h.at) < readyCache {
		return h.last
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	out := make([]error, len(h.checks))
	for i, c := range h.checks {
		out[i] = c.Run(ctx)
	}
	h.at, h.last = h.now(), out
	return out
}

// healthz says the process is alive and serving HTTP; it checks nothing
// else, so a supervisor restarts only a hung process, never one that
// waits for its disk or store.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when every check passes, 503 otherwise; the body
// lists each check and why it fails.
func (h *Health) readyz(w http.ResponseWriter, r *http.Request) {
	errs := h.Ready(r.Context())
	var b strings.Builder
	status := http.StatusOK
	for i, c := range h.checks {
		switch {
		case errs[i] != nil && c.Warn:
			fmt.Fprintf(&b, "warn %s: %s\n", c.Name, oneLine(errs[i].Error()))
		case errs[i] != nil:
			status = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "fail %s: %s\n", c.Name, oneLine(errs[i].Error()))
		default:
			fmt.Fprintf(&b, "ok %s\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// AuditCheck fails once the audit log has failed (failed is closed): the
// gateway then refuses every login and session.
func AuditCheck(failed <-chan struct{}) Check {
	return Check{Name: "audit", Run: func(context.Context) error {
		select {
		case <-failed:
			return errors.New("the audit log failed; logins and sessions are refused")
		default:
			return nil
		}
	}}
}

// BreakglassCheck warns while emergency certificates were issued and
// not yet reported into the audit log (M26: every use is loud). pending
// must be cheap (a directory listing).
func BreakglassCheck(pending func() error) Check {
	return Check{Name: "breakglass", Warn: true, Run: func(context.Context) error { return pending() }}
}

// StoreCheck fails when ping cannot reach the state store.
func StoreCheck(ping func(context.Context) error) Check {
	return Check{Name: "store", Run: ping}
}

// SigningCheck signs a throwaway certificate with the user CA, in memory:
// without it no session reaches a target. The certificate is for the
// CA's own key and expired before it was made, so it is good for nothing
// even if it leaked.
func SigningCheck(ca ssh.Signer) Check {
	return Check{Name: "signing", Run: func(context.Context) error {
		c := &ssh.Certificate{Key: ca.PublicKey(), CertType: ssh.UserCert, KeyId: "tandem readiness check",
			ValidPrincipals: []string{"tandem-readiness-check"}, ValidAfter: 0, ValidBefore: 1}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			return fmt.Errorf("the user CA cannot sign: %w", err)
		}
		checker := ssh.CertChecker{Clock: func() time.Time { return time.Unix(0, 0) }}
		if err := checker.CheckCert("tandem-readiness-check", c); err != nil {
			return fmt.Errorf("the user CA's signature does not verify: %w", err)
		}
		return nil
	}}
}
