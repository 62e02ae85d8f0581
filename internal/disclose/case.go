// Package disclose is lawful disclosure (M15, docs/REPORT.md): a case
// opened with a legal basis and a recipient's key, approved by two
// persons who are not its requester, one of them the data protection
// officer, and then the scoped records and recordings exported encrypted
// to the recipient with a manifest of hashes and inclusion proofs.
//
// A case lives in the audit log alone — disclosure.requested,
// disclosure.approved, disclosure.exported, records of the gateway with
// the tenant as an attribute — and is read back from it:
// the log is the tamper-evident record of who asked and who agreed, and
// the state store (a file whoever holds the gateway host could edit)
// plays no part in the decision.
package disclose

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// Scope is what a case discloses: one session, or a tenant's period.
type Scope struct {
	Session  string
	From, To time.Time // UTC days, To included; zero for a session
}

// ParseScope reads session:ID or period:FROM..TO (YYYY-MM-DD, UTC).
func ParseScope(s string) (Scope, error) {
	kind, v, ok := strings.Cut(s, ":")
	switch {
	case ok && kind == "session" && v != "" && !strings.ContainsAny(v, " ,\t\n"):
		return Scope{Session: v}, nil
	case ok && kind == "period":
		from, to, ok := strings.Cut(v, "..")
		if !ok {
			to = from
		}
		f, err1 := time.Parse(time.DateOnly, from)
		t, err2 := time.Parse(time.DateOnly, to)
		if err1 != nil || err2 != nil || t.Before(f) {
			return Scope{}, fmt.Errorf("scope %q: want period:YYYY-MM-DD..YYYY-MM-DD, from not after to", s)
		}
		if t.Sub(f) > 366*24*time.Hour {
			return Scope{}, fmt.Errorf("scope %q: longer than a year; disclose what the legal basis covers, in parts", s)
		}
		return Scope{From: f, To: t}, nil
	}
	return Scope{}, fmt.Errorf("scope %q: want session:ID or period:FROM..TO", s)
}

func (s Scope) String() string {
	if s.Session != "" {
		return "session:" + s.Session
	}
	return "period:" + s.From.Format(time.DateOnly) + ".." + s.To.Format(time.DateOnly)
}

// Filter selects the scope's records of tenant.
func (s Scope) Filter(tenant string) audit.Filter {
	if s.Session != "" {
		return audit.Filter{Tenant: tenant, Session: s.Session}
	}
	return audit.Filter{Tenant: tenant, Since: s.From, Until: s.To.AddDate(0, 0, 1)}
}

// Approval is one approval of a case.
type Approval struct {
	Person string
	DPO    bool
	At     time.Time
	Index  uint64
}

// Case is a disclosure case as the audit log holds it.
type Case struct {
	ID, Tenant, Requester   string
	Scope                   Scope
	LegalBasis, Reason      string
	Recipient, RecipientKey string
	Contact                 string
	SealedInput             bool
	Requested               time.Time
	Index                   uint64 // the disclosure.requested record
	Approvals               []Approval
	Exports                 int
}

// NewID returns a fresh case id: 8 hex digits.
func NewID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Read is how the package reads the audit log (with the vault's keys):
// admin.Gateway.AuditEvents, or audit.ReadKeys on a directory.
type Read func(f audit.Filter, fn func(audit.Record) error) error

// Load returns the case id from the log, or an error if there is none.
func Load(read Read, id string) (*Case, error) {
	var c *Case
	types := []audit.Type{audit.DisclosureRequested, audit.DisclosureApproved, audit.DisclosureExported}
	err := read(audit.Filter{Types: types}, func(r audit.Record) error {
		e := r.Event
		if e.Attrs[audit.KeyID] != id {
			return nil
		}
		switch e.Type {
		case audit.DisclosureRequested:
			if c != nil {
				return fmt.Errorf("case %s is opened twice in the audit log (records %d and %d)", id, c.Index, r.Index)
			}
			sc, err := ParseScope(e.Attrs[audit.KeyScope])
			if err != nil {
				return fmt.Errorf("case %s: %w", id, err)
			}
			a := e.Attrs
			c = &Case{ID: id, Tenant: e.Attrs[audit.KeyCaseTenant], Requester: e.Person, Scope: sc, LegalBasis: a[audit.KeyLegalBasis],
				Reason: a[audit.KeyReason], Recipient: a[audit.KeyRecipient], RecipientKey: a[audit.KeyRecipientKey],
				Contact: a[audit.KeyContact], SealedInput: a[audit.KeySealedInput] == "true", Requested: e.Time, Index: r.Index}
		case audit.DisclosureApproved:
			if c == nil || e.Attrs[audit.KeyCaseTenant] != c.Tenant {
				return fmt.Errorf("case %s: an approval (record %d) without its request", id, r.Index)
			}
			c.Approvals = append(c.Approvals, Approval{Person: e.Person, DPO: e.Attrs[audit.KeyDPO] == "true", At: e.Time, Index: r.Index})
		case audit.DisclosureExported:
			if c != nil {
				c.Exports++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("no disclosure case %s", id)
	}
	return c, nil
}

// Approved says whether the case may be exported: two approvers who
// are different persons, neither of them the requester, one of them with
// the dpo permission. The error says what is missing.
func (c *Case) Approved() error {
	seen := map[string]bool{}
	dpo := false
	for _, a := range c.Approvals {
		if a.Person == c.Requester || seen[a.Person] {
			continue // never counts; refused when asked, but the log decides
		}
		seen[a.Person] = true
		dpo = dpo || a.DPO
	}
	switch {
	case len(seen) < 2 && !dpo:
		return fmt.Errorf("case %s has %d of 2 approvals and none by the data protection officer", c.ID, len(seen))
	case len(seen) < 2:
		return fmt.Errorf("case %s has 1 of 2 approvals (the data protection officer's); it needs one more person", c.ID)
	case !dpo:
		return fmt.Errorf("case %s has no approval by the data protection officer (permission dpo)", c.ID)
	}
	return nil
}

// ErrSelf is the refusal of a requester's approval of their own case.
var ErrSelf = errors.New("the requester of a disclosure case may not approve it")
