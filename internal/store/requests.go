package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// requestsSchema is migration 3: access requests (M8) and their approvals.
// Hosts are kept as a JSON array: they are only ever read with their
// request, never searched by host. Expiry is not stored; it follows from
// valid_until_ns and the clock.
const requestsSchema = `CREATE TABLE requests (
		id              TEXT PRIMARY KEY NOT NULL,
		requester       TEXT NOT NULL,
		hosts_json      TEXT NOT NULL,
		selector        TEXT NOT NULL,
		login           TEXT NOT NULL,
		duration_ns     INTEGER NOT NULL,
		reason          TEXT NOT NULL,
		state           TEXT NOT NULL,    -- open | approved | denied | revoked
		created_ns      INTEGER NOT NULL, -- unix nanoseconds, UTC
		decided_ns      INTEGER,          -- NULL while open
		decided_by      TEXT NOT NULL DEFAULT '',
		decision_reason TEXT NOT NULL DEFAULT '',
		valid_from_ns   INTEGER,          -- set when approved
		valid_until_ns  INTEGER
	);
	CREATE INDEX requests_by_state ON requests (state, created_ns);
	CREATE INDEX requests_by_requester ON requests (requester, state);
	CREATE TABLE request_approvals (
		request_id TEXT NOT NULL REFERENCES requests (id),
		approver   TEXT NOT NULL,
		at_ns      INTEGER NOT NULL,
		comment    TEXT NOT NULL,
		PRIMARY KEY (request_id, approver)
	);`

// requestsTTY is migration 5: a request may ask for commands with a
// terminal. Older rows never asked, hence the default.
const requestsTTY = `ALTER TABLE requests ADD COLUMN tty INTEGER NOT NULL DEFAULT 0`

// RequestState is the stored state of an access request. Whether an
// approved request has expired is not stored; it follows from ValidUntil
// (see Request.StateAt).
type RequestState string

// Request states. RequestExpired is never stored: StateAt reports it for an
// approved request whose window has passed.
const (
	RequestOpen     RequestState = "open"
	RequestApproved RequestState = "approved"
	RequestDenied   RequestState = "denied"
	RequestRevoked  RequestState = "revoked"
	RequestExpired  RequestState = "expired"
)

// Errors of the request transitions; they arrive wrapped, so test them
// with errors.Is.
var (
	ErrRequestNotFound   = errors.New("no such request")
	ErrNotOpen           = errors.New("request is not open")
	ErrNotRevocable      = errors.New("request is neither open nor approved")
	ErrDuplicateApprover = errors.New("already approved by this person")
	ErrSelfApproval      = errors.New("the requester cannot approve their own request")
)

// Request is an access request for non-interactive work on four-eyes hosts
// (M8): a time-boxed, purpose-bound permission that other persons approve.
type Request struct {
	ID        string // 8 lower-case hex digits, assigned by CreateRequest
	Requester string // person id
	Hosts     []string
	Selector  string // the selector as the requester wrote it, for display
	Login     string
	Duration  time.Duration
	Reason    string // purpose and ticket
	// TTY: the requester asked for commands with a terminal; approvers must
	// accept that explicitly.
	TTY       bool
	State     RequestState
	Created   time.Time
	Approvals []Approval // oldest first

	// Decided, DecidedBy and DecisionReason record the last transition:
	// the final approval, the denial or the revocation.
	Decided        time.Time
	DecidedBy      string
	DecisionReason string

	// ValidFrom and ValidUntil are the window of an approved request:
	// from the final approval, for Duration. Zero until approved.
	ValidFrom, ValidUntil time.Time
}

// Approval is one person's consent to a request.
type Approval struct {
	By      string // person id
	At      time.Time
	Comment string
}

// StateAt is the state at now: the stored state, except that an approved
// request whose window has ended is RequestExpired.
func (r Request) StateAt(now time.Time) RequestState {
	if r.State == RequestApproved && !now.Before(r.ValidUntil) {
		return RequestExpired
	}
	return r.State
}

// ActiveAt reports whether the request is approved and now lies in its
// window [ValidFrom, ValidUntil).
func (r Request) ActiveAt(now time.Time) bool {
	return r.State == RequestApproved && !now.Before(r.ValidFrom) && now.Before(r.ValidUntil)
}

// RequestFilter selects requests for ListRequests. Empty fields select all.
type RequestFilter struct {
	States    []RequestState
	Requester string
	Since     time.Time // created at or after
}

// maxListed bounds ListRequests, so that a long history cannot flood a
// terminal or the gateway's memory.
const maxListed = 500

// idAttempts bounds the retries on an id collision. With 2^32 ids one
// retry is already rare; ten failing in a row means something else is
// wrong (such as a broken random source).
const idAttempts = 10

// CreateRequest stores r as a new open request and returns it with its
// assigned ID. r.ID, r.State, the approvals and the decision fields are
// ignored. Requester, Hosts, Login and Created must be set and Duration
// must be positive; whether the request is allowed is the policy's
// question, asked before.
func (s *Store) CreateRequest(ctx context.Context, r Request) (Request, error) {
	if r.Requester == "" || len(r.Hosts) == 0 || r.Login == "" {
		return Request{}, errors.New("store: create request: requester, hosts and login are required")
	}
	if r.Duration <= 0 {
		return Request{}, fmt.Errorf("store: create request: duration %s is not positive", r.Duration)
	}
	if r.Created.IsZero() {
		return Request{}, errors.New("store: create request: created time not set")
	}
	if s.seal == nil {
		return Request{}, fmt.Errorf("store: create request: %w", ErrNoKey)
	}
	created, err := toNanos(r.Created)
	if err != nil {
		return Request{}, fmt.Errorf("store: create request: created: %w", err)
	}
	hosts, err := json.Marshal(r.Hosts)
	if err != nil {
		return Request{}, fmt.Errorf("store: create request: hosts: %w", err)
	}
	out := Request{
		Requester: r.Requester,
		Hosts:     append([]string(nil), r.Hosts...),
		Selector:  r.Selector,
		Login:     r.Login,
		Duration:  r.Duration,
		Reason:    r.Reason,
		TTY:       r.TTY,
		State:     RequestOpen,
		Created:   time.Unix(0, created).UTC(),
	}
	err = s.change(ctx, "create request", func(tx txn) (bool, error) {
		id, err := freeRequestID(ctx, tx)
		if err != nil {
			return false, err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO requests (id, requester, hosts_json, selector, login, duration_ns, reason, tty, state, created_ns)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, out.Requester, string(hosts), out.Selector, out.Login, int64(out.Duration), out.Reason, boolArg(out.TTY),
			string(RequestOpen), created)
		if err != nil {
			return false, err
		}
		out.ID = id
		return true, s.sealRequest(ctx, tx, id)
	})
	if err != nil {
		return Request{}, err
	}
	return out, nil
}

// freeRequestID draws random ids until one is unused. It runs inside the
// write transaction, so no other writer can take the id before the insert.
func freeRequestID(ctx context.Context, tx txn) (string, error) {
	for range idAttempts {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("request id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM requests WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return id, nil
		}
		if err != nil {
			return "", fmt.Errorf("request id: %w", err)
		}
	}
	return "", fmt.Errorf("request id: no free id after %d attempts", idAttempts)
}

// GetRequest returns the request with this id, or nil, nil when there is
// none.
//
// A request that fails its integrity check is not returned: the error is
// then a *Forgery (errors.Is ErrForged) whose message may be shown to the
// person.
func (s *Store) GetRequest(ctx context.Context, id string) (*Request, error) {
	if s.seal == nil {
		return nil, fmt.Errorf("store: get request %s: %w", id, ErrNoKey)
	}
	r, err := s.getRequest(ctx, s.db, id)
	if errors.Is(err, ErrRequestNotFound) {
		return nil, nil
	}
	var f *Forgery
	if errors.As(err, &f) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: get request %s: %w", id, s.unavailable(err))
	}
	return &r, nil
}

// ListRequests returns the requests f selects, newest first, at most 500.
// Requests that fail their integrity check are left out (and reported).
func (s *Store) ListRequests(ctx context.Context, f RequestFilter) ([]Request, error) {
	if s.seal == nil {
		return nil, fmt.Errorf("store: list requests: %w", ErrNoKey)
	}
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, st := range f.States {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(marks, ", ")+")")
	}
	if f.Requester != "" {
		where = append(where, "requester = ?")
		args = append(args, f.Requester)
	}
	if !f.Since.IsZero() {
		n, err := toNanos(f.Since)
		if err != nil {
			return nil, fmt.Errorf("store: list requests: since: %w", err)
		}
		where = append(where, "created_ns >= ?")
		args = append(args, n)
	}
	q := `SELECT ` + requestColumns + `, mac FROM requests`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(` ORDER BY created_ns DESC, id LIMIT %d`, maxListed)
	out, _, err := s.queryRequests(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list requests: %w", s.unavailable(err))
	}
	return out, nil
}

// ActiveRequests returns the approved requests of requester whose window
// holds now (ValidFrom <= now < ValidUntil), newest first.
//
// Rows that look so but fail their integrity check are not returned; they
// are reported, and the error is then their *Forgery values joined
// (errors.Is ErrForged), returned with the genuine requests: a caller may
// use those and tell the person about the others.
func (s *Store) ActiveRequests(ctx context.Context, requester string, now time.Time) ([]Request, error) {
	n, err := toNanos(now)
	if err != nil {
		return nil, fmt.Errorf("store: active requests: now: %w", err)
	}
	if s.seal == nil {
		return nil, fmt.Errorf("store: active requests: %w", ErrNoKey)
	}
	out, bad, err := s.queryRequests(ctx, s.db,
		`SELECT `+requestColumns+`, mac FROM requests
		 WHERE requester = ? AND state = ? AND valid_from_ns <= ? AND valid_until_ns > ?
		 ORDER BY created_ns DESC, id LIMIT `+fmt.Sprint(maxListed),
		requester, string(RequestApproved), n, n)
	if err != nil {
		return nil, fmt.Errorf("store: active requests of %s: %w", requester, s.unavailable(err))
	}
	if len(bad) > 0 {
		errs := make([]error, len(bad))
		for i := range bad {
			errs[i] = &bad[i]
		}
		return out, errors.Join(errs...)
	}
	return out, nil
}

// RequestOpenFor is how long a request may wait for its decision. A
// request is purpose-bound and time-boxed: the reason it gives and the
// window it asks for are about its own days, and an approval weeks later
// would open a window for work nobody asked for now. A request older than
// this can no longer be approved; the requester asks anew. It is also the
// week that `ssh gw requests` lists.
const RequestOpenFor = 7 * 24 * time.Hour

// Approve records a's approval of the open request id. Once need distinct
// persons have approved (need below 1 counts as 1), the request becomes
// approved with the window [a.At, a.At+Duration). It refuses a request that
// is not open or has waited RequestOpenFor (ErrNotOpen), a second approval by the same person
// (ErrDuplicateApprover) and the requester's own (ErrSelfApproval). Who may
// approve at all is the policy's question, asked before.
func (s *Store) Approve(ctx context.Context, id string, a Approval, need int) (Request, error) {
	if a.By == "" || a.At.IsZero() {
		return Request{}, fmt.Errorf("store: approve request %s: approver and time are required", id)
	}
	at, err := toNanos(a.At)
	if err != nil {
		return Request{}, fmt.Errorf("store: approve request %s: at: %w", id, err)
	}
	need = max(need, 1)
	if s.seal == nil {
		return Request{}, fmt.Errorf("store: approve request %s: %w", id, ErrNoKey)
	}
	var out Request
	err = s.change(ctx, "approve request "+id, func(tx txn) (bool, error) {
		r, err := s.getRequest(ctx, tx, id)
		if err != nil {
			return false, err
		}
		switch {
		case r.State != RequestOpen:
			return false, fmt.Errorf("%w (it is %s)", ErrNotOpen, r.State)
		case a.At.Sub(r.Created) >= RequestOpenFor:
			return false, fmt.Errorf("%w (it lapsed undecided: asked %s, and a request waits %d days at most; ask anew)",
				ErrNotOpen, r.Created.UTC().Format("2006-01-02 15:04 UTC"), RequestOpenFor/(24*time.Hour))
		case a.By == r.Requester:
			return false, ErrSelfApproval
		}
		for _, prev := range r.Approvals {
			if prev.By == a.By {
				return false, fmt.Errorf("%w (%s)", ErrDuplicateApprover, a.By)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO request_approvals (request_id, approver, at_ns, comment, mac) VALUES (?, ?, ?, ?, ?)`,
			id, a.By, at, a.Comment, s.seal.mac(kindApproval, approvalFields(id, a.By, at, a.Comment)...)); err != nil {
			return false, err
		}
		if len(r.Approvals)+1 >= need {
			until, err := toNanos(a.At.Add(r.Duration))
			if err != nil {
				return false, fmt.Errorf("valid until: %w", err)
			}
			if _, err := tx.ExecContext(ctx,
				`UPDATE requests SET state = ?, decided_ns = ?, decided_by = ?, valid_from_ns = ?, valid_until_ns = ?
				 WHERE id = ?`,
				string(RequestApproved), at, a.By, at, until, id); err != nil {
				return false, err
			}
			if err := s.sealRequest(ctx, tx, id); err != nil {
				return false, err
			}
		}
		out, err = s.getRequest(ctx, tx, id)
		return true, err
	})
	if err != nil {
		return Request{}, err
	}
	return out, nil
}

// Deny refuses the open request id (ErrNotOpen otherwise).
func (s *Store) Deny(ctx context.Context, id, by, reason string, at time.Time) (Request, error) {
	return s.decide(ctx, "deny", id, by, reason, at, RequestDenied, ErrNotOpen, RequestOpen)
}

// Revoke ends the request id, open or approved (ErrNotRevocable
// otherwise). An approved request whose window has passed may still be
// revoked; that only records the decision. Ending the sessions running
// under it is the gateway's part.
func (s *Store) Revoke(ctx context.Context, id, by, reason string, at time.Time) (Request, error) {
	return s.decide(ctx, "revoke", id, by, reason, at, RequestRevoked, ErrNotRevocable, RequestOpen, RequestApproved)
}

// decide moves request id from one of the states from to state to,
// recording who, why and when.
func (s *Store) decide(ctx context.Context, verb, id, by, reason string, at time.Time,
	to RequestState, refused error, from ...RequestState) (Request, error) {
	what := verb + " request " + id
	if by == "" || at.IsZero() {
		return Request{}, fmt.Errorf("store: %s: actor and time are required", what)
	}
	n, err := toNanos(at)
	if err != nil {
		return Request{}, fmt.Errorf("store: %s: at: %w", what, err)
	}
	if s.seal == nil {
		return Request{}, fmt.Errorf("store: %s: %w", what, ErrNoKey)
	}
	var out Request
	err = s.change(ctx, what, func(tx txn) (bool, error) {
		r, err := s.getRequest(ctx, tx, id)
		if err != nil {
			return false, err
		}
		ok := false
		for _, st := range from {
			ok = ok || r.State == st
		}
		if !ok {
			return false, fmt.Errorf("%w (it is %s)", refused, r.State)
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE requests SET state = ?, decided_ns = ?, decided_by = ?, decision_reason = ? WHERE id = ?`,
			string(to), n, by, reason, id); err != nil {
			return false, err
		}
		if err := s.sealRequest(ctx, tx, id); err != nil {
			return false, err
		}
		out, err = s.getRequest(ctx, tx, id)
		return true, err
	})
	if err != nil {
		return Request{}, err
	}
	return out, nil
}

// querier is what reading a request needs: a *sql.DB or a txn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const requestColumns = `id, requester, hosts_json, selector, login, duration_ns, reason, tty, state, created_ns,
	decided_ns, decided_by, decision_reason, valid_from_ns, valid_until_ns`

// getRequest reads one request with its approvals; ErrRequestNotFound when
// there is none, a *Forgery when it fails its integrity check.
func (s *Store) getRequest(ctx context.Context, q querier, id string) (Request, error) {
	rs, bad, err := s.queryRequests(ctx, q, `SELECT `+requestColumns+`, mac FROM requests WHERE id = ?`, id)
	if err != nil {
		return Request{}, err
	}
	if len(bad) > 0 {
		return Request{}, &bad[0]
	}
	if len(rs) == 0 {
		return Request{}, fmt.Errorf("%w: %q", ErrRequestNotFound, id)
	}
	return rs[0], nil
}

// queryRequests runs a query over requestColumns and mac, checks each row
// and attaches each genuine request's genuine approvals. Rows that fail
// their check are reported and returned apart.
func (s *Store) queryRequests(ctx context.Context, q querier, query string, args ...any) ([]Request, []Forgery, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	var (
		out []Request
		bad []Forgery
	)
	for rows.Next() {
		row, err := scanRequestRow(rows)
		if err != nil {
			rows.Close()
			return nil, nil, err
		}
		if !s.seal.verify(row.mac, kindRequest, row.fields()...) {
			f := Forgery{Table: "requests", Row: row.id, What: "row MAC"}
			if row.mac == nil {
				f.What = "no MAC"
			}
			bad = append(bad, f)
			s.seal.reportOnce(f, row.mac)
			continue
		}
		r, err := row.request()
		if err != nil {
			rows.Close()
			return nil, nil, err
		}
		out = append(out, r)
	}
	if err := rows.Close(); err != nil {
		return nil, nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(out) == 0 {
		return nil, bad, nil
	}
	if err := s.attachApprovals(ctx, q, out); err != nil {
		return nil, nil, err
	}
	return out, bad, nil
}

// attachApprovals loads the approvals of rs in one query (rs holds at most
// maxListed requests, well below SQLite's limit on parameters). An
// approval that fails its integrity check is left out (and reported): it
// counts for nothing.
func (s *Store) attachApprovals(ctx context.Context, q querier, rs []Request) error {
	index := make(map[string]int, len(rs))
	marks := make([]string, len(rs))
	args := make([]any, len(rs))
	for i, r := range rs {
		index[r.ID] = i
		marks[i] = "?"
		args[i] = r.ID
	}
	rows, err := q.QueryContext(ctx,
		`SELECT request_id, approver, at_ns, comment, mac FROM request_approvals
		 WHERE request_id IN (`+strings.Join(marks, ", ")+`) ORDER BY at_ns, approver`, args...)
	if err != nil {
		return fmt.Errorf("approvals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  string
			a   Approval
			at  int64
			mac []byte
		)
		if err := rows.Scan(&id, &a.By, &at, &a.Comment, &mac); err != nil {
			return fmt.Errorf("approvals: %w", err)
		}
		if !s.seal.verify(mac, kindApproval, approvalFields(id, a.By, at, a.Comment)...) {
			s.seal.reportOnce(Forgery{Table: "request_approvals", Row: id + "/" + a.By, What: "row MAC"}, mac)
			continue
		}
		a.At = time.Unix(0, at).UTC()
		if i, ok := index[id]; ok {
			rs[i].Approvals = append(rs[i].Approvals, a)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("approvals: %w", err)
	}
	return nil
}

// scanRequestRow reads requestColumns and mac as stored.
func scanRequestRow(sc interface{ Scan(...any) error }) (requestRow, error) {
	var r requestRow
	err := sc.Scan(&r.id, &r.requester, &r.hosts, &r.selector, &r.login, &r.duration, &r.reason, &r.tty, &r.state,
		&r.created, &r.decided, &r.decidedBy, &r.decisionReason, &r.from, &r.until, &r.mac)
	return r, err
}

// request turns a stored row into a Request (without approvals).
func (row *requestRow) request() (Request, error) {
	r := Request{ID: row.id, Requester: row.requester, Selector: row.selector, Login: row.login,
		Duration: time.Duration(row.duration), Reason: row.reason, TTY: row.tty, State: RequestState(row.state),
		Created: time.Unix(0, row.created).UTC(), Decided: fromNullNanos(row.decided), DecidedBy: row.decidedBy,
		DecisionReason: row.decisionReason, ValidFrom: fromNullNanos(row.from), ValidUntil: fromNullNanos(row.until)}
	if err := json.Unmarshal([]byte(row.hosts), &r.Hosts); err != nil {
		return Request{}, fmt.Errorf("request %s: hosts: %w", r.ID, err)
	}
	return r, nil
}

// fromNullNanos turns a nullable unix-nanosecond column into a time; NULL
// becomes the zero time.
func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}
