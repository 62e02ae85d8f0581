// Package report builds the evidence report of one tenant (docs/REPORT.md):
// a self-contained HTML file whose every figure cites audit records, with
// the signed checkpoint it was built from, each cited record, the
// one-time subkeys that open its admin fields, and its inclusion proof
// embedded, so that `tandem report verify` checks every claim offline
// without trusting the hoster.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// Format is the version of the embedded evidence.
const Format = 1

// DefaultMaxRecords bounds the records one report embeds; a longer period
// is split into several reports.
const DefaultMaxRecords = 200_000

// Evidence is what a report embeds, as JSON: everything its reader needs
// to check it, and nothing of another tenant.
type Evidence struct {
	Format    int    `json:"format"`
	Tenant    string `json:"tenant"`
	From      string `json:"from"` // first day, UTC
	To        string `json:"to"`   // last day, UTC, inclusive
	Generated string `json:"generated"`
	// Checkpoint is the signed checkpoint every proof leads to.
	Checkpoint string `json:"checkpoint"`
	// Handovers are the signing key hand-overs of the log, so a reader who
	// holds an older or newer key of the chain can follow it.
	Handovers []string `json:"handovers,omitempty"`
	Records   []Record `json:"records"`
	Figures   Figures  `json:"figures"`
	// Stated is what the operator states from the configuration in
	// force; the log does not prove it, and the page says so.
	Stated *Stated `json:"stated,omitempty"`
}

// Stated is the part of a report that comes from the configuration, not
// from the log: the persons who may log in to the tenant's hosts now and
// the age of their keys.
type Stated struct {
	At      string      `json:"at"`
	KeyAges []PersonKey `json:"key_ages"`
	// Persons is how many persons the key ages are of.
	Persons int `json:"persons"`
}

// Record is one record of the tenant: its canonical bytes, the subkeys
// that open its admin part, and its inclusion path to the checkpoint.
type Record struct {
	Index uint64                 `json:"index"`
	Raw   string                 `json:"record"`
	Keys  map[vault.Class][]byte `json:"keys,omitempty"`
	Path  [][]byte               `json:"path"`
}

// Disclosed is the class a report opens: who, where, when, under which
// request, and the attributes of that class. Source addresses
// (operational) and what people typed (content) stay closed.
var Disclosed = []vault.Class{vault.Admin}

// Options say what to report on.
type Options struct {
	AuditDir string
	Keys     audit.KeyReader
	Tenant   string
	From, To time.Time // days (UTC); To inclusive
	Now      time.Time
	// MaxRecords bounds the records; 0 is DefaultMaxRecords.
	MaxRecords int
	// Stated, if set, is embedded as it is.
	Stated *Stated
}

// Build collects the tenant's records of the period from the log, proves
// them against its latest checkpoint, discloses their admin parts and
// derives the figures.
func Build(o Options) (*Evidence, error) {
	if o.Tenant == "" || o.Tenant == audit.GatewayTenant {
		return nil, errors.New("report: a tenant is needed")
	}
	from, until := day(o.From), day(o.To).AddDate(0, 0, 1)
	if !from.Before(until) {
		return nil, errors.New("report: --from is after --to")
	}
	limit := o.MaxRecords
	if limit <= 0 {
		limit = DefaultMaxRecords
	}
	cp, err := audit.LatestCheckpoint(o.AuditDir)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Format: Format, Tenant: o.Tenant, From: from.Format(time.DateOnly),
		To: until.AddDate(0, 0, -1).Format(time.DateOnly), Generated: stamp(o.Now), Checkpoint: string(cp.Note), Stated: o.Stated}
	var later int
	// Read without keys: the filter needs only tenant and time, which are
	// in clear, so no record of another tenant is ever decrypted here.
	err = audit.Read(o.AuditDir, audit.Filter{Tenant: o.Tenant, Since: from, Until: until}, func(r audit.Record) error {
		if r.Index >= cp.Size {
			later++
			return nil
		}
		if len(ev.Records) == limit {
			return fmt.Errorf("report: more than %d records of %s in the period; make a report per shorter period", limit, o.Tenant)
		}
		keys, err := audit.Disclose(r.Raw, o.Keys, Disclosed...)
		if err != nil {
			return err
		}
		ev.Records = append(ev.Records, Record{Index: r.Index, Raw: string(r.Raw), Keys: keys})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if later > 0 {
		return nil, fmt.Errorf("report: %d record(s) of the period are not covered by a signed checkpoint yet; the gateway signs one within audit.checkpoint_every, try again then", later)
	}
	if ev.Handovers, err = ProveRecords(o.AuditDir, cp, ev.Records); err != nil {
		return nil, err
	}
	ev.Records = nonNil(ev.Records)
	opened, err := ev.open()
	if err != nil {
		return nil, err
	}
	ev.Figures = Derive(opened)
	return ev, nil
}

// day is t's UTC day at midnight.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// open decodes every record with its subkeys and checks that it belongs
// in the report: the tenant's, in the period, in log order, each once.
func (ev *Evidence) open() ([]Opened, error) {
	from, err := time.Parse(time.DateOnly, ev.From)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	to, err := time.Parse(time.DateOnly, ev.To)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	until := to.AddDate(0, 0, 1)
	out := make([]Opened, 0, len(ev.Records))
	for i, r := range ev.Records {
		if i > 0 && r.Index <= ev.Records[i-1].Index {
			return nil, fmt.Errorf("record %d: out of log order or twice", r.Index)
		}
		idx, e, bad, err := audit.OpenDisclosed([]byte(r.Raw), r.Keys)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Index, err)
		}
		if idx != r.Index {
			return nil, fmt.Errorf("record %d claims index %d", r.Index, idx)
		}
		if e.Tenant != ev.Tenant {
			return nil, fmt.Errorf("record %d is not of tenant %s", r.Index, ev.Tenant)
		}
		if e.Time.Before(from) || !e.Time.Before(until) {
			return nil, fmt.Errorf("record %d is outside the period", r.Index)
		}
		closed := false
		for _, u := range bad {
			if u.Reason != audit.ReasonNotDisclosed {
				return nil, fmt.Errorf("record %d: its %s part does not open with the key given (%s)", r.Index, u.Class, u.Reason)
			}
			closed = closed || u.Class == vault.Admin
		}
		out = append(out, Opened{Index: r.Index, Event: e, Closed: closed})
	}
	return out, nil
}

// Check is what Verify proved.
type Check struct {
	Records   int
	Size      uint64 // the checkpoint's tree size
	Origin    string
	Witnessed bool // a witness file was given and holds the checkpoint
}

// Verify checks a report file against the verifier key of the audit log
// (any key of its hand-over chain): the checkpoint's signature, each
// record's inclusion proof and subkeys, that every record is the tenant's
// and of the period, that the figures are what the records give, and that
// the HTML is exactly what those figures render to. witness, if not
// empty, is a witness's checkpoint file that must hold the checkpoint.
func Verify(file []byte, key string, witness string) (*Check, error) {
	ev, err := Extract(file)
	if err != nil {
		return nil, err
	}
	if ev.Format != Format {
		return nil, fmt.Errorf("evidence format %d; this tandem reads %d", ev.Format, Format)
	}
	origin, size, err := CheckProofs(ev.Checkpoint, key, ev.Handovers, ev.Records)
	if err != nil {
		return nil, err
	}
	c := &Check{Records: len(ev.Records), Size: size, Origin: origin}
	if witness != "" {
		ok, err := audit.Witnessed(witness, []byte(ev.Checkpoint))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("the witness file does not hold the report's checkpoint")
		}
		c.Witnessed = true
	}
	opened, err := ev.open()
	if err != nil {
		return nil, err
	}
	want, err := json.Marshal(Derive(opened))
	if err != nil {
		return nil, err
	}
	got, err := json.Marshal(ev.Figures)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(want, got) {
		return nil, errors.New("the embedded figures are not what the records give")
	}
	again, err := Render(ev)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, file) {
		return nil, fmt.Errorf("the HTML is not what the evidence renders to (first difference at line %d)", firstDiffLine(again, file))
	}
	return c, nil
}

// ProveRecords fills in each record's inclusion path against cp, from the
// log in dir, and returns the log's signing key hand-overs, which a
// reader holding another key of the chain needs.
func ProveRecords(dir string, cp *audit.CommittedCheckpoint, recs []Record) ([]string, error) {
	idx := make([]uint64, len(recs))
	for i, r := range recs {
		idx[i] = r.Index
	}
	paths, err := cp.Prove(dir, idx)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].Path = paths[recs[i].Index]
	}
	hos, err := audit.Handovers(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hos {
		out = append(out, string(h))
	}
	return out, nil
}

// CheckProofs checks the signed checkpoint against key, through the
// hand-overs, and each record's inclusion proof against it, in log order
// and each once. It returns the checkpoint's origin and size.
func CheckProofs(checkpoint, key string, handovers []string, recs []Record) (string, uint64, error) {
	hos := make([][]byte, len(handovers))
	for i, h := range handovers {
		hos[i] = []byte(h)
	}
	origin, size, root, err := audit.OpenCheckpointChain([]byte(checkpoint), key, hos)
	if err != nil {
		return "", 0, fmt.Errorf("checkpoint: %w", err)
	}
	for i, r := range recs {
		if i > 0 && r.Index <= recs[i-1].Index {
			return "", 0, fmt.Errorf("record %d: out of log order or twice", r.Index)
		}
		if err := audit.VerifyInclusion([]byte(r.Raw), r.Index, size, r.Path, root); err != nil {
			return "", 0, fmt.Errorf("record %d: %w", r.Index, err)
		}
	}
	return origin, size, nil
}

func firstDiffLine(a, b []byte) int {
	line := 1
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return line
		}
		if a[i] == '\n' {
			line++
		}
	}
	return line
}
