package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// newRequest is a valid request for the tables below.
func newRequest(requester string, created time.Time) Request {
	return Request{
		Requester: requester,
		Hosts:     []string{"db1", "db2"},
		Selector:  "db*",
		Login:     "postgres",
		Duration:  2 * time.Hour,
		Reason:    "vacuum after import, TICKET-42",
		Created:   created,
	}
}

func mustCreate(t *testing.T, s *Store, r Request) Request {
	t.Helper()
	got, err := s.CreateRequest(context.Background(), r)
	if err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return got
}

func mustGet(t *testing.T, s *Store, id string) Request {
	t.Helper()
	r, err := s.GetRequest(context.Background(), id)
	if err != nil || r == nil {
		t.Fatalf("GetRequest(%s) = %v, %v", id, r, err)
	}
	return *r
}

func ids(rs []Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

var idForm = regexp.MustCompile(`^[0-9a-f]{8}$`)

func TestCreateGetList(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)
		g0 := mustGeneration(t, s)

		in := newRequest("alice", t0)
		in.ID, in.State = "chosen", RequestApproved // ignored
		a := mustCreate(t, s, in)
		if !idForm.MatchString(a.ID) || a.State != RequestOpen {
			t.Fatalf("created %+v: want an 8-hex id and state open", a)
		}
		if g := mustGeneration(t, s); g != g0+1 {
			t.Errorf("generation after create = %d, want %d", g, g0+1)
		}
		got := mustGet(t, s, a.ID)
		if got.Requester != "alice" || !slices.Equal(got.Hosts, []string{"db1", "db2"}) || got.Selector != "db*" ||
			got.Login != "postgres" || got.Duration != 2*time.Hour || got.Reason != in.Reason ||
			got.State != RequestOpen || !got.Created.Equal(t0) || got.Created.Location() != time.UTC ||
			len(got.Approvals) != 0 || !got.Decided.IsZero() || !got.ValidFrom.IsZero() || !got.ValidUntil.IsZero() {
			t.Errorf("GetRequest = %+v", got)
		}
		if r, err := s.GetRequest(ctx, "ffffffff"); r != nil || err != nil {
			t.Errorf("unknown id: %v, %v; want nil, nil", r, err)
		}

		b := mustCreate(t, s, newRequest("bob", t0.Add(time.Minute)))
		c := mustCreate(t, s, newRequest("alice", t0.Add(2*time.Minute)))
		if _, err := s.Deny(ctx, c.ID, "bob", "no ticket", t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name string
			f    RequestFilter
			want []string
		}{
			{"all, newest first", RequestFilter{}, []string{c.ID, b.ID, a.ID}},
			{"open", RequestFilter{States: []RequestState{RequestOpen}}, []string{b.ID, a.ID}},
			{"open or denied", RequestFilter{States: []RequestState{RequestOpen, RequestDenied}}, []string{c.ID, b.ID, a.ID}},
			{"requester", RequestFilter{Requester: "alice"}, []string{c.ID, a.ID}},
			{"requester and state", RequestFilter{Requester: "alice", States: []RequestState{RequestOpen}}, []string{a.ID}},
			{"since", RequestFilter{Since: t0.Add(time.Minute)}, []string{c.ID, b.ID}},
			{"none", RequestFilter{Requester: "carol"}, []string{}},
		} {
			got, err := s.ListRequests(ctx, tt.f)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, ids(got), tt.want)
			}
		}
	})
}

func TestCreateRequestRejects(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		s, _ := openTemp(t, bk)
		g0 := mustGeneration(t, s)
		for name, edit := range map[string]func(*Request){
			"no requester":  func(r *Request) { r.Requester = "" },
			"no hosts":      func(r *Request) { r.Hosts = nil },
			"no login":      func(r *Request) { r.Login = "" },
			"zero duration": func(r *Request) { r.Duration = 0 },
			"no created":    func(r *Request) { r.Created = time.Time{} },
			"created range": func(r *Request) { r.Created = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) },
		} {
			r := newRequest("alice", t0)
			edit(&r)
			if _, err := s.CreateRequest(context.Background(), r); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if g := mustGeneration(t, s); g != g0 {
			t.Errorf("generation moved on refused creates: %d -> %d", g0, g)
		}
	})
}

func TestApprove(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)

		// One approver needed: the first approval opens the window.
		r := mustCreate(t, s, newRequest("alice", t0))
		at := t0.Add(10 * time.Minute)
		g := mustGeneration(t, s)
		got, err := s.Approve(ctx, r.ID, Approval{By: "bob", At: at, Comment: "ok"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != RequestApproved || !got.ValidFrom.Equal(at) || !got.ValidUntil.Equal(at.Add(2*time.Hour)) ||
			!got.Decided.Equal(at) || got.DecidedBy != "bob" ||
			len(got.Approvals) != 1 || got.Approvals[0] != (Approval{By: "bob", At: at, Comment: "ok"}) {
			t.Errorf("after one approval (need 1): %+v", got)
		}
		if mustGeneration(t, s) != g+1 {
			t.Error("approve did not bump the generation")
		}
		if again := mustGet(t, s, r.ID); again.State != RequestApproved || len(again.Approvals) != 1 {
			t.Errorf("stored: %+v", again)
		}
		if _, err := s.Approve(ctx, r.ID, Approval{By: "carol", At: at}, 1); !errors.Is(err, ErrNotOpen) {
			t.Errorf("approve an approved request: %v, want ErrNotOpen", err)
		}

		// Two needed: open after the first, approved after a second distinct one.
		r2 := mustCreate(t, s, newRequest("alice", t0))
		got, err = s.Approve(ctx, r2.ID, Approval{By: "bob", At: at}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != RequestOpen || !got.ValidFrom.IsZero() || len(got.Approvals) != 1 {
			t.Errorf("after one of two approvals: %+v", got)
		}
		g = mustGeneration(t, s)
		if _, err := s.Approve(ctx, r2.ID, Approval{By: "bob", At: at.Add(time.Minute)}, 2); !errors.Is(err, ErrDuplicateApprover) {
			t.Errorf("same approver twice: %v, want ErrDuplicateApprover", err)
		}
		if _, err := s.Approve(ctx, r2.ID, Approval{By: "alice", At: at.Add(time.Minute)}, 2); !errors.Is(err, ErrSelfApproval) {
			t.Errorf("requester approves: %v, want ErrSelfApproval", err)
		}
		if mustGeneration(t, s) != g {
			t.Error("refused approvals bumped the generation")
		}
		final := at.Add(5 * time.Minute)
		got, err = s.Approve(ctx, r2.ID, Approval{By: "carol", At: final, Comment: "second"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != RequestApproved || !got.ValidFrom.Equal(final) || !got.ValidUntil.Equal(final.Add(2*time.Hour)) ||
			got.DecidedBy != "carol" || len(got.Approvals) != 2 || got.Approvals[0].By != "bob" || got.Approvals[1].By != "carol" {
			t.Errorf("after two of two approvals: %+v", got)
		}

		// A request that waited RequestOpenFor lapses: no approval opens
		// a window for it any more, and the refusal changes nothing.
		old := mustCreate(t, s, newRequest("alice", t0))
		g = mustGeneration(t, s)
		if _, err := s.Approve(ctx, old.ID, Approval{By: "bob", At: t0.Add(RequestOpenFor)}, 1); !errors.Is(err, ErrNotOpen) ||
			!strings.Contains(err.Error(), "lapsed undecided") {
			t.Errorf("approve a request that waited %v: %v, want ErrNotOpen (lapsed)", RequestOpenFor, err)
		}
		if again := mustGet(t, s, old.ID); again.State != RequestOpen || len(again.Approvals) != 0 || mustGeneration(t, s) != g {
			t.Errorf("after the refused approval: %+v", again)
		}
		if got, err := s.Approve(ctx, old.ID, Approval{By: "bob", At: t0.Add(RequestOpenFor - time.Minute)}, 1); err != nil || got.State != RequestApproved {
			t.Errorf("approve a minute before it lapses: %+v, %v", got, err)
		}

		// Need below 1 counts as 1; unknown ids are reported as such.
		r3 := mustCreate(t, s, newRequest("alice", t0))
		if got, err := s.Approve(ctx, r3.ID, Approval{By: "bob", At: at}, 0); err != nil || got.State != RequestApproved {
			t.Errorf("need 0: %+v, %v", got, err)
		}
		if _, err := s.Approve(ctx, "00000000", Approval{By: "bob", At: at}, 1); !errors.Is(err, ErrRequestNotFound) {
			t.Errorf("unknown id: %v, want ErrRequestNotFound", err)
		}
		if _, err := s.Approve(ctx, r3.ID, Approval{By: "", At: at}, 1); err == nil {
			t.Error("approval without approver accepted")
		}
	})
}

func TestDenyRevoke(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)
		at := t0.Add(time.Hour)

		open := mustCreate(t, s, newRequest("alice", t0))
		g := mustGeneration(t, s)
		got, err := s.Deny(ctx, open.ID, "bob", "no ticket given", at)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != RequestDenied || got.DecidedBy != "bob" || got.DecisionReason != "no ticket given" || !got.Decided.Equal(at) {
			t.Errorf("denied: %+v", got)
		}
		if mustGeneration(t, s) != g+1 {
			t.Error("deny did not bump the generation")
		}
		g = mustGeneration(t, s)
		if _, err := s.Deny(ctx, open.ID, "bob", "again", at); !errors.Is(err, ErrNotOpen) {
			t.Errorf("deny denied: %v, want ErrNotOpen", err)
		}
		if _, err := s.Revoke(ctx, open.ID, "bob", "again", at); !errors.Is(err, ErrNotRevocable) {
			t.Errorf("revoke denied: %v, want ErrNotRevocable", err)
		}
		if _, err := s.Approve(ctx, open.ID, Approval{By: "carol", At: at}, 1); !errors.Is(err, ErrNotOpen) {
			t.Errorf("approve denied: %v, want ErrNotOpen", err)
		}
		if mustGeneration(t, s) != g {
			t.Error("refused transitions bumped the generation")
		}

		// Revoke an open request, and an approved one.
		open2 := mustCreate(t, s, newRequest("alice", t0))
		if got, err := s.Revoke(ctx, open2.ID, "alice", "not needed any more", at); err != nil || got.State != RequestRevoked {
			t.Errorf("revoke open: %+v, %v", got, err)
		}
		appr := mustCreate(t, s, newRequest("alice", t0))
		if _, err := s.Approve(ctx, appr.ID, Approval{By: "bob", At: at}, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deny(ctx, appr.ID, "bob", "too late", at); !errors.Is(err, ErrNotOpen) {
			t.Errorf("deny approved: %v, want ErrNotOpen", err)
		}
		got, err = s.Revoke(ctx, appr.ID, "carol", "incident 7 closed", at.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if got.State != RequestRevoked || got.DecidedBy != "carol" || got.DecisionReason != "incident 7 closed" ||
			len(got.Approvals) != 1 || !got.ValidUntil.Equal(at.Add(2*time.Hour)) {
			t.Errorf("revoked: %+v", got)
		}
		if got.ActiveAt(at.Add(2 * time.Minute)) {
			t.Error("a revoked request is active")
		}
		if _, err := s.Revoke(ctx, appr.ID, "carol", "twice", at); !errors.Is(err, ErrNotRevocable) {
			t.Errorf("revoke revoked: %v, want ErrNotRevocable", err)
		}
		if _, err := s.Deny(ctx, "00000000", "bob", "x", at); !errors.Is(err, ErrRequestNotFound) {
			t.Errorf("deny unknown: %v, want ErrRequestNotFound", err)
		}
		if _, err := s.Revoke(ctx, open.ID, "", "x", at); err == nil {
			t.Error("revoke without actor accepted")
		}
	})
}

func TestActiveRequests(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		s, _ := openTemp(t, bk)
		from := t0.Add(time.Hour)
		a := mustCreate(t, s, newRequest("alice", t0)) // approved: window [from, from+2h)
		if _, err := s.Approve(ctx, a.ID, Approval{By: "bob", At: from}, 1); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, s, newRequest("alice", t0)) // open: never active
		other := mustCreate(t, s, newRequest("dave", t0))
		if _, err := s.Approve(ctx, other.ID, Approval{By: "bob", At: from}, 1); err != nil {
			t.Fatal(err)
		}

		for _, tt := range []struct {
			name string
			now  time.Time
			want []string
		}{
			{"before the window", from.Add(-time.Nanosecond), nil},
			{"at the start", from, []string{a.ID}},
			{"inside", from.Add(time.Hour), []string{a.ID}},
			{"last instant", from.Add(2*time.Hour - time.Nanosecond), []string{a.ID}},
			{"at the end", from.Add(2 * time.Hour), nil},
		} {
			got, err := s.ActiveRequests(ctx, "alice", tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("%s: %v, want %v", tt.name, ids(got), tt.want)
			}
			r := mustGet(t, s, a.ID)
			if r.ActiveAt(tt.now) != (len(tt.want) > 0) {
				t.Errorf("%s: ActiveAt disagrees with ActiveRequests", tt.name)
			}
		}
		r := mustGet(t, s, a.ID)
		if st := r.StateAt(from.Add(2 * time.Hour)); st != RequestExpired {
			t.Errorf("StateAt after the window = %s, want expired", st)
		}
		if st := r.StateAt(from); st != RequestApproved {
			t.Errorf("StateAt inside the window = %s, want approved", st)
		}

		if _, err := s.Revoke(ctx, a.ID, "bob", "done early", from.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ActiveRequests(ctx, "alice", from.Add(time.Hour)); err != nil || len(got) != 0 {
			t.Errorf("after revoke: %v, %v", ids(got), err)
		}
	})
}

// Two handles stand for two gateway processes: a request made or approved
// through one is visible through the other, and the generation tells.
func TestRequestsAcrossHandles(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		a, b, _ := openPair(t, bk)

		g0 := mustGeneration(t, b)
		r := mustCreate(t, a, newRequest("alice", t0))
		if mustGeneration(t, b) != g0+1 {
			t.Error("b did not see a's create in the generation")
		}
		if got := mustGet(t, b, r.ID); got.State != RequestOpen {
			t.Errorf("b reads %+v", got)
		}
		if _, err := b.Approve(ctx, r.ID, Approval{By: "bob", At: t0.Add(time.Minute)}, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Approve(ctx, r.ID, Approval{By: "bob", At: t0.Add(time.Minute)}, 2); !errors.Is(err, ErrDuplicateApprover) {
			t.Errorf("a approves again for bob: %v, want ErrDuplicateApprover", err)
		}
		if got, err := a.Approve(ctx, r.ID, Approval{By: "carol", At: t0.Add(2 * time.Minute)}, 2); err != nil || got.State != RequestApproved {
			t.Fatalf("a's second approval: %+v, %v", got, err)
		}
		if got, err := b.ActiveRequests(ctx, "alice", t0.Add(time.Hour)); err != nil || len(got) != 1 || got[0].ID != r.ID {
			t.Errorf("b's active requests: %v, %v", ids(got), err)
		}
		if g := mustGeneration(t, b); g != g0+3 {
			t.Errorf("generation = %d, want %d", g, g0+3)
		}
	})
}

// Requests survive a restart, approvals included.
func TestRequestsReopen(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		path := bk.fresh(t)
		s, err := openAt(path, keyed(path))
		if err != nil {
			t.Fatal(err)
		}
		r := mustCreate(t, s, newRequest("alice", t0))
		if _, err := s.Approve(ctx, r.ID, Approval{By: "bob", At: t0, Comment: "fine"}, 1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = openAt(path, keyed(path))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got := mustGet(t, s, r.ID)
		if got.State != RequestApproved || len(got.Approvals) != 1 || got.Approvals[0].Comment != "fine" {
			t.Errorf("after reopen: %+v", got)
		}
	})
}

// TTY survives every read: by id, in lists and among the active requests.
func TestRequestTTYRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, bk backend) {
		ctx := context.Background()
		for _, tty := range []bool{false, true} {
			t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
				s, _ := openTemp(t, bk)
				in := newRequest("alice", t0)
				in.TTY = tty
				r := mustCreate(t, s, in)
				if r.TTY != tty {
					t.Errorf("CreateRequest returned TTY %v", r.TTY)
				}
				if got := mustGet(t, s, r.ID); got.TTY != tty {
					t.Errorf("GetRequest: TTY %v", got.TTY)
				}
				list, err := s.ListRequests(ctx, RequestFilter{})
				if err != nil || len(list) != 1 || list[0].TTY != tty {
					t.Errorf("ListRequests = %+v, %v", list, err)
				}
				if _, err := s.Approve(ctx, r.ID, Approval{By: "bob", At: t0}, 1); err != nil {
					t.Fatal(err)
				}
				active, err := s.ActiveRequests(ctx, "alice", t0.Add(time.Minute))
				if err != nil || len(active) != 1 || active[0].TTY != tty {
					t.Errorf("ActiveRequests = %+v, %v", active, err)
				}
			})
		}
	})
}

// A database written before the tty column (schema 4) gains it on Open,
// and its requests read as not asking for a terminal.
func TestRequestTTYMigratesOldDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tandem.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	old := &Store{db: conn{db, sqliteDialect}}
	if _, err := db.Exec(`CREATE TABLE schema_version (version INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := old.applyMigration(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(
		`INSERT INTO requests (id, requester, hosts_json, selector, login, duration_ns, reason, state, created_ns)
		 VALUES ('0badc0de', 'alice', '["db1"]', 'db1', 'postgres', ?, 'old', 'open', ?)`,
		int64(time.Hour), t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(path, keyed(fileTarget(path)))
	if err != nil {
		t.Fatalf("Open old database: %v", err)
	}
	defer s.Close()
	got := mustGet(t, s, "0badc0de")
	if got.TTY || got.Requester != "alice" || got.Reason != "old" {
		t.Errorf("old request after migration: %+v", got)
	}
}
