package report

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// Figures are the claims of an evidence report: every number and row is
// derived from the report's records by Derive alone, and every one cites
// the indices of the records it rests on, so that `tandem report verify`
// derives them again and any change shows.
type Figures struct {
	Records  int `json:"records"`
	Sessions int `json:"sessions"`
	// FourEyesSessions counts the sessions that needed a second person.
	FourEyesSessions int `json:"four_eyes_sessions"`
	Refused          int `json:"refused"`
	RecordingAccess  int `json:"recording_access"`
	EndedFromOutside int `json:"ended_from_outside"`
	RetentionActions int `json:"retention_actions"`
	Breakglass       int `json:"breakglass"`

	SessionsPerDay  []Count         `json:"sessions_per_day"`
	SessionsPerHost []Count         `json:"sessions_per_host"`
	RefusedByReason []Count         `json:"refused_by_reason"`
	SessionList     []Session       `json:"session_list"`
	Requests        []RequestUse    `json:"requests"`
	Ended           []Ended         `json:"ended"`
	Access          []Access        `json:"access"`
	Forwards        []Forward       `json:"forwards"`
	Retention       []Retention     `json:"retention"`
	BreakglassUses  []BreakglassUse `json:"breakglass_uses"`
	// Undisclosed lists records whose fields beyond index, tenant, time
	// and type could not be shown: destroyed by retention before the
	// report was made (or withheld, which a reader cannot tell apart).
	Undisclosed []uint64 `json:"undisclosed,omitempty"`
	Samples     []Sample `json:"samples,omitempty"`
}

// Count is a number of records under a label (a day, a host, a reason).
type Count struct {
	Label string   `json:"label"`
	Count int      `json:"count"`
	Refs  []uint64 `json:"refs"`
}

// Session is one session on a target of the tenant: who, where, when,
// under which request, the second person for four-eyes sessions, and how
// it ended.
type Session struct {
	ID       string   `json:"id"`
	Owner    string   `json:"owner"`
	Host     string   `json:"host"`
	Login    string   `json:"login"`
	Action   string   `json:"action,omitempty"`
	Request  string   `json:"request,omitempty"`
	Start    string   `json:"start"`
	End      string   `json:"end,omitempty"`
	FourEyes bool     `json:"four_eyes,omitempty"`
	Live     string   `json:"live,omitempty"` // when the second person made it live
	Joins    []Join   `json:"joins,omitempty"`
	Exit     string   `json:"exit,omitempty"`
	Reason   string   `json:"reason,omitempty"` // why it was ended, if from outside or by its participants
	Hash     string   `json:"recording_sha256,omitempty"`
	Refs     []uint64 `json:"refs"`
}

// Join is a person joining a shared session.
type Join struct {
	Person string `json:"person"`
	Mode   string `json:"mode"`
	At     string `json:"at"`
	Left   string `json:"left,omitempty"`
	Ref    uint64 `json:"ref"`
}

// RequestUse is an access request of the tenant: who asked, for what and
// how long, who decided, and the sessions that ran under it.
type RequestUse struct {
	Request   string     `json:"request"`
	Requester string     `json:"requester,omitempty"`
	Hosts     string     `json:"hosts,omitempty"`
	Login     string     `json:"login,omitempty"`
	Purpose   string     `json:"purpose,omitempty"`
	Duration  string     `json:"duration,omitempty"`
	TTY       bool       `json:"tty,omitempty"`
	Asked     string     `json:"asked,omitempty"`
	Decisions []Decision `json:"decisions,omitempty"`
	Sessions  []string   `json:"sessions"`
	Refs      []uint64   `json:"refs"`
}

// Decision is an approval, denial or revocation of a request.
type Decision struct {
	What       string `json:"what"` // approve, deny, revoke
	By         string `json:"by"`
	At         string `json:"at"`
	ValidUntil string `json:"valid_until,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Ref        uint64 `json:"ref"`
}

// Ended is a session ended from outside: a lock, a revocation, a reload,
// an expired request.
type Ended struct {
	Session string `json:"session"`
	Owner   string `json:"owner"`
	Host    string `json:"host"`
	Reason  string `json:"reason"`
	Started string `json:"started"`
	At      string `json:"at"`
	Ref     uint64 `json:"ref"`
}

// Access is a read or an export of a recording of the tenant.
type Access struct {
	What    string `json:"what"` // read, list or export
	Reader  string `json:"reader"`
	Actor   string `json:"actor,omitempty"`
	Owner   string `json:"owner,omitempty"`
	Session string `json:"session,omitempty"`
	At      string `json:"at"`
	Ref     uint64 `json:"ref"`
}

// Forward is a port forward through a target of the tenant.
type Forward struct {
	Owner       string `json:"owner"`
	Host        string `json:"host"`
	Destination string `json:"destination"`
	At          string `json:"at"`
	Ref         uint64 `json:"ref"`
}

// Retention is a retention action on the tenant's data.
type Retention struct {
	What   string `json:"what"`
	Detail string `json:"detail"`
	At     string `json:"at"`
	Ref    uint64 `json:"ref"`
}

// BreakglassUse is an emergency certificate for a host of the tenant.
type BreakglassUse struct {
	Holders string `json:"holders"`
	Host    string `json:"host"`
	Login   string `json:"login"`
	Reason  string `json:"reason"`
	Issued  string `json:"issued"`
	Ref     uint64 `json:"ref"`
}

// Sample is one drawn item of a spot check and its verdicts.
type Sample struct {
	Kind     string    `json:"kind"`
	ID       string    `json:"id"`
	Drawn    string    `json:"drawn,omitempty"` // when; empty if drawn before the period
	Ref      uint64    `json:"ref,omitempty"`   // the review.sampled record
	Verdicts []Verdict `json:"verdicts,omitempty"`
}

// Verdict is a reviewer's verdict on a sampled item.
type Verdict struct {
	Reviewer string `json:"reviewer"`
	Verdict  string `json:"verdict"`
	Note     string `json:"note,omitempty"`
	At       string `json:"at"`
	Ref      uint64 `json:"ref"`
}

// Opened is one record of the report as its reader decodes it.
type Opened struct {
	Index uint64
	Event audit.Event
	// Closed is true when parts of the record could not be opened.
	Closed bool
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Derive computes the figures from the report's records, in log order.
func Derive(recs []Opened) Figures {
	f := Figures{Records: len(recs)}
	perDay, perHost, refused := counter{}, counter{}, counter{}
	sessions := map[string]*Session{}
	var order []string
	session := func(r Opened) *Session {
		e := r.Event
		s, ok := sessions[e.Session]
		if !ok {
			s = &Session{ID: e.Session, Owner: e.Person, Host: e.Host, Login: e.Login, Request: e.Request}
			sessions[e.Session] = s
			order = append(order, e.Session)
		}
		s.Refs = append(s.Refs, r.Index)
		return s
	}
	requests := requestSet{}
	var samples sampleList
	for _, r := range recs {
		e, at := r.Event, stamp(r.Event.Time)
		if r.Closed {
			f.Undisclosed = append(f.Undisclosed, r.Index)
		}
		a := e.Attrs
		switch e.Type {
		case audit.SessionStart:
			if e.Session == "" {
				continue
			}
			s := session(r)
			s.Start, s.Action = at, a[audit.KeyAction]
			s.FourEyes = a[audit.KeyFourEyes] == "true"
			perDay.add(e.Time.UTC().Format(time.DateOnly), r.Index)
			perHost.add(e.Host, r.Index)
			if e.Request != "" {
				u := requests.get(e.Request)
				u.Sessions = append(u.Sessions, e.Session)
				u.Refs = append(u.Refs, r.Index)
			}
		case audit.SessionLive, audit.SessionResumed:
			if s := sessions[e.Session]; s != nil && e.Session != "" {
				s.Refs = append(s.Refs, r.Index)
				if s.Live == "" {
					s.Live = at
				}
			}
		case audit.SessionJoin:
			if s := sessions[e.Session]; s != nil && e.Session != "" {
				s.Refs = append(s.Refs, r.Index)
				s.Joins = append(s.Joins, Join{Person: a[audit.KeyParticipant], Mode: a[audit.KeyMode], At: at, Ref: r.Index})
			}
		case audit.SessionLeave:
			if s := sessions[e.Session]; s != nil && e.Session != "" {
				s.Refs = append(s.Refs, r.Index)
				for i := len(s.Joins) - 1; i >= 0; i-- {
					if j := &s.Joins[i]; j.Person == a[audit.KeyParticipant] && j.Left == "" {
						j.Left = at
						break
					}
				}
			}
		case audit.SessionEnded:
			if s := sessions[e.Session]; s != nil && e.Session != "" {
				s.Refs = append(s.Refs, r.Index)
				if s.Reason == "" {
					s.Reason = a[audit.KeyReason]
				}
			}
		case audit.SessionEnd:
			s := sessions[e.Session]
			if s == nil || e.Session == "" {
				continue
			}
			s.Refs = append(s.Refs, r.Index)
			s.End, s.Hash = at, a[audit.KeyRecordingSHA256]
			s.Exit = a[audit.KeyExitStatus]
			if sig := a[audit.KeyExitSignal]; sig != "" {
				s.Exit = "signal " + sig
			}
			if why := a[audit.KeyReason]; why != "" {
				s.Reason = why
				if endedByItself(why) {
					continue
				}
				f.Ended = append(f.Ended, Ended{Session: s.ID, Owner: s.Owner, Host: s.Host, Reason: why, Started: s.Start, At: at, Ref: r.Index})
			}
		case audit.RequestCreate:
			u := requests.get(e.Request)
			u.Requester, u.Hosts, u.Login, u.Purpose = a[audit.KeyRequester], a[audit.KeyHosts], a[audit.KeyLogin], a[audit.KeyReason]
			u.Duration, u.TTY, u.Asked = a[audit.KeyDuration], a[audit.KeyTTY] == "true", at
			u.Refs = append(u.Refs, r.Index)
		case audit.RequestApprove, audit.RequestDeny, audit.RequestRevoke:
			u := requests.get(e.Request)
			what := strings.TrimPrefix(string(e.Type), "request.")
			u.Decisions = append(u.Decisions, Decision{What: what, By: e.Person, At: at, ValidUntil: a[audit.KeyValidUntil], Reason: a[audit.KeyReason], Ref: r.Index})
			u.Refs = append(u.Refs, r.Index)
		case audit.RequestExpired:
			if s := sessions[e.Session]; s != nil && e.Session != "" {
				f.Ended = append(f.Ended, Ended{Session: s.ID, Owner: s.Owner, Host: s.Host, Reason: "request " + e.Request + " expired", Started: s.Start, At: at, Ref: r.Index})
			}
		case audit.SessionDenied, audit.ForwardDenied:
			why := a[audit.KeyReason]
			if why == "" {
				why = a[audit.KeyKind]
			}
			if r.Closed && why == "" {
				why = "(not disclosed)"
			}
			refused.add(why, r.Index)
		case audit.RecordingRead, audit.RecordingExport:
			what := "read"
			switch {
			case e.Type == audit.RecordingExport:
				what = "export"
			case a[audit.KeyListing] != "":
				what = "list"
			}
			f.Access = append(f.Access, Access{What: what, Reader: e.Person, Actor: a[audit.KeyActor], Owner: a[audit.KeyOwner], Session: e.Session, At: at, Ref: r.Index})
		case audit.ForwardStart:
			f.Forwards = append(f.Forwards, Forward{Owner: e.Person, Host: e.Host, Destination: a[audit.KeyDestination], At: at, Ref: r.Index})
		case audit.KeyDestroyed, audit.RetentionExtended, audit.RetentionHold, audit.RetentionReleased, audit.RetentionNotice:
			f.Retention = append(f.Retention, Retention{What: string(e.Type), Detail: retentionDetail(e), At: at, Ref: r.Index})
		case audit.ReviewSampled:
			for _, k := range [][2]string{{"session", audit.KeySampledSessions}, {"request", audit.KeySampledRequests}} {
				kind := k[0]
				for _, id := range strings.Split(a[k[1]], ",") {
					if id != "" && samples.find(kind, id) == nil {
						samples.list = append(samples.list, Sample{Kind: kind, ID: id, Drawn: at, Ref: r.Index})
					}
				}
			}
		case audit.ReviewVerdict:
			kind, id := "session", e.Session
			if id == "" {
				kind, id = "request", e.Request
			}
			s := samples.find(kind, id)
			if s == nil { // drawn before the period
				samples.list = append(samples.list, Sample{Kind: kind, ID: id})
				s = &samples.list[len(samples.list)-1]
			}
			s.Verdicts = append(s.Verdicts, Verdict{Reviewer: e.Person, Verdict: a[audit.KeyVerdict], Note: a[audit.KeyNote], At: at, Ref: r.Index})
		case audit.BreakglassUsed:
			holders := e.Person
			if co := a[audit.KeyCoHolders]; co != "" {
				holders += "," + co
			}
			f.BreakglassUses = append(f.BreakglassUses, BreakglassUse{Holders: holders, Host: e.Host, Login: e.Login, Reason: a[audit.KeyReason], Issued: a[audit.KeyIssued], Ref: r.Index})
		}
	}
	for _, id := range order {
		s := sessions[id]
		f.SessionList = append(f.SessionList, *s)
		if s.FourEyes {
			f.FourEyesSessions++
		}
	}
	f.Sessions, f.SessionList = len(f.SessionList), nonNil(f.SessionList)
	for _, u := range requests {
		u.Sessions = nonNil(u.Sessions)
		f.Requests = append(f.Requests, *u)
	}
	slices.SortFunc(f.Requests, func(a, b RequestUse) int { return cmp.Compare(a.Refs[0], b.Refs[0]) })
	f.SessionsPerDay, f.SessionsPerHost, f.RefusedByReason = perDay.list(false), perHost.list(true), refused.list(true)
	for _, c := range f.RefusedByReason {
		f.Refused += c.Count
	}
	f.RecordingAccess, f.EndedFromOutside = len(f.Access), len(f.Ended)
	f.RetentionActions, f.Breakglass = len(f.Retention), len(f.BreakglassUses)
	f.Requests, f.Ended, f.Access = nonNil(f.Requests), nonNil(f.Ended), nonNil(f.Access)
	f.Forwards, f.Retention, f.BreakglassUses = nonNil(f.Forwards), nonNil(f.Retention), nonNil(f.BreakglassUses)
	f.Samples = samples.list
	return f
}

// requestSet is the requests by id.
type requestSet map[string]*RequestUse

func (s requestSet) get(id string) *RequestUse {
	u, ok := s[id]
	if !ok {
		u = &RequestUse{Request: id}
		s[id] = u
	}
	return u
}

// sampleList is the samples in the order they were drawn.
type sampleList struct{ list []Sample }

func (l *sampleList) find(kind, id string) *Sample {
	for i := range l.list {
		if l.list[i].Kind == kind && l.list[i].ID == id {
			return &l.list[i]
		}
	}
	return nil
}

// nonNil makes empty lists [] in the JSON, so that a decoded report
// derives to the same value as the one it was built from.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// endedByItself reports whether a session's end reason is one of a
// shared session's own (internal/session): the target closed it, the
// owner left, a participant ended it with the escape sequence, the target
// stopped reading. Every other reason is the gateway's: a lock, a
// revocation, a reload, an expired request, a freeze, a failure.
func endedByItself(reason string) bool {
	return reason == "target closed" || reason == "target write error" ||
		strings.HasPrefix(reason, "owner ") || strings.HasPrefix(reason, "ended by ")
}

// retentionFields are the attributes a retention action shows, with
// their labels, per event type.
var retentionFields = map[audit.Type][][2]string{
	audit.KeyDestroyed:      {{"class", audit.KeyClass}, {"day", audit.KeyDay}, {"key", audit.KeyKeyID}, {"because", audit.KeyReason}},
	audit.RetentionExtended: {{"class", audit.KeyClass}, {"until", audit.KeyUntil}, {"by", audit.KeyBy}, {"ref", audit.KeyRequestRef}},
	audit.RetentionHold:     {{"hold", audit.KeyID}, {"scope", audit.KeyScope}, {"by", audit.KeyBy}, {"ref", audit.KeyRef}, {"expires", audit.KeyExpires}},
	audit.RetentionReleased: {{"hold", audit.KeyID}, {"by", audit.KeyBy}},
	audit.RetentionNotice:   {{"extension", audit.KeyExtension}, {"outcome", audit.KeyOutcome}, {"via", audit.KeyVia}},
}

func retentionDetail(e audit.Event) string {
	var parts []string
	for _, f := range retentionFields[e.Type] {
		if v := e.Attrs[f[1]]; v != "" {
			parts = append(parts, f[0]+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// counter counts records by label.
type counter map[string]*Count

func (c counter) add(label string, ref uint64) {
	n, ok := c[label]
	if !ok {
		n = &Count{Label: label}
		c[label] = n
	}
	n.Count++
	n.Refs = append(n.Refs, ref)
}

// list returns the counts by label, or by count (largest first) when
// byCount, ties by label.
func (c counter) list(byCount bool) []Count {
	out := make([]Count, 0, len(c))
	for _, n := range c {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Count) int {
		if byCount && a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Label, b.Label)
	})
	return out
}
