package report

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
)

// Spot checks (M29): management draws sessions and access requests of a
// tenant at random, "spontan und unregelmäßig", and reviewers record a
// verdict on each (`ssh gw review record`). The draw is reproducible: the
// same seed over the same records draws the same items, so an auditor can
// check that the sample was not picked by hand.

// SampleOptions say what to draw from.
type SampleOptions struct {
	AuditDir string
	Keys     audit.KeyReader
	Tenant   string
	From, To time.Time // days (UTC); To inclusive
	Count    int
	Seed     uint64
}

// Drawn is one item of a draw.
type Drawn struct {
	Kind  string `json:"kind"` // session or request
	ID    string `json:"id"`
	Host  string `json:"host"`
	Owner string `json:"owner"`
	Time  string `json:"time"`
	Index uint64 `json:"index"` // the session.start record it was found by
}

// Draw is the result of a sampling.
type Draw struct {
	Tenant     string  `json:"tenant"`
	Period     string  `json:"period"`
	Seed       uint64  `json:"seed"`
	Candidates int     `json:"candidates"`
	Items      []Drawn `json:"items"`
}

// MaxSample bounds one draw.
const MaxSample = 1000

// DrawSample draws o.Count items among the tenant's sessions of the period
// and the access requests they ran under.
func DrawSample(o SampleOptions) (*Draw, error) {
	if o.Count < 1 || o.Count > MaxSample {
		return nil, fmt.Errorf("--count must be 1 to %d", MaxSample)
	}
	from, until := day(o.From), day(o.To).AddDate(0, 0, 1)
	d := &Draw{Tenant: o.Tenant, Period: from.Format(time.DateOnly) + ".." + until.AddDate(0, 0, -1).Format(time.DateOnly), Seed: o.Seed}
	var cands []Drawn
	seenReq := map[string]bool{}
	f := audit.Filter{Tenant: o.Tenant, Since: from, Until: until, Types: []audit.Type{audit.SessionStart}}
	err := audit.ReadKeys(o.AuditDir, o.Keys, f, func(r audit.Record) error {
		e := r.Event
		if e.Session == "" {
			return nil // its admin part is destroyed: nothing left to review
		}
		at := stamp(e.Time)
		cands = append(cands, Drawn{Kind: "session", ID: e.Session, Host: e.Host, Owner: e.Person, Time: at, Index: r.Index})
		if e.Request != "" && !seenReq[e.Request] {
			seenReq[e.Request] = true
			cands = append(cands, Drawn{Kind: "request", ID: e.Request, Host: e.Host, Owner: e.Person, Time: at, Index: r.Index})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.Candidates = len(cands)
	// PCG seeded by the seed alone: reproducible everywhere, and fine for
	// picking (nothing secret rides on it; the seed is published anyway).
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	for _, i := range rng.Perm(len(cands))[:min(o.Count, len(cands))] {
		d.Items = append(d.Items, cands[i])
	}
	d.Items = nonNil(d.Items)
	return d, nil
}

// Event is the review.sampled record of the draw.
func (d *Draw) Event() audit.Event {
	var sessions, requests []string
	for _, it := range d.Items {
		if it.Kind == "session" {
			sessions = append(sessions, it.ID)
		} else {
			requests = append(requests, it.ID)
		}
	}
	return audit.ReviewSampledEvent{Tenant: d.Tenant, Period: d.Period, Seed: strconv.FormatUint(d.Seed, 10), Count: len(d.Items),
		Sessions: strings.Join(sessions, ","), Requests: strings.Join(requests, ",")}.Event()
}
