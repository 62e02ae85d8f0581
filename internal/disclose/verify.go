package disclose

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/report"
)

// Checked is what VerifyDir proved.
type Checked struct {
	Case    CaseInfo
	Records int
	Files   int
	Size    uint64 // the checkpoint's tree size
}

// MaxManifest bounds manifest.json.
const MaxManifest = 1 << 30

// VerifyDir checks an export unpacked in dir against the audit log's
// verifier key (any key of its hand-over chain): the checkpoint's
// signature, every record's inclusion proof, that each record opens with
// its subkeys and is of the case's tenant, and the SHA-256 of every file.
func VerifyDir(dir, key string) (*Checked, error) {
	f, err := os.Open(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, MaxManifest))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("manifest format %d; this tandem reads %d", m.Format, ManifestFormat)
	}
	_, size, err := report.CheckProofs(m.Checkpoint, key, m.Handovers, m.Records)
	if err != nil {
		return nil, err
	}
	var events []eventLine // the proven records, as events.jsonl must hold them
	for _, r := range m.Records {
		_, e, bad, err := audit.OpenDisclosed([]byte(r.Raw), r.Keys)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Index, err)
		}
		if e.Tenant != m.Case.Tenant {
			return nil, fmt.Errorf("record %d is not of tenant %s", r.Index, m.Case.Tenant)
		}
		for _, u := range bad {
			if u.Reason != audit.ReasonNotDisclosed {
				return nil, fmt.Errorf("record %d: its %s part does not open with the key given", r.Index, u.Class)
			}
		}
		events = append(events, eventLine{Index: r.Index, Event: e})
	}
	listed := false
	for _, fl := range m.Files {
		if fl.Name == "" || strings.Contains(fl.Name, "..") || filepath.IsAbs(fl.Name) {
			return nil, fmt.Errorf("manifest names a file outside the export: %q", fl.Name)
		}
		sum, n, err := hashFile(filepath.Join(dir, filepath.FromSlash(fl.Name)))
		if err != nil {
			return nil, err
		}
		if sum != fl.SHA256 || n != fl.Size {
			return nil, fmt.Errorf("%s does not match its SHA-256 in the manifest", fl.Name)
		}
		if fl.Name == "events.jsonl" {
			if err := checkEvents(filepath.Join(dir, "events.jsonl"), events); err != nil {
				return nil, err
			}
			listed = true
		}
	}
	if !listed {
		return nil, errors.New("the manifest lists no events.jsonl")
	}
	return &Checked{Case: m.Case, Records: len(m.Records), Files: len(m.Files), Size: size}, nil
}

// eventLine is one line of events.jsonl as Export writes it.
type eventLine struct {
	Index uint64 `json:"index"`
	audit.Event
	Unreadable []audit.Unreadable `json:"unreadable,omitempty"`
}

// checkEvents compares events.jsonl with the proven records. The manifest
// is not signed (anyone can encrypt to the recipient), so the file's hash
// in it shows only that the file is the one the manifest names; what ties
// the decoded events to the log is that each line holds exactly the
// fields its proven record opens to, in the records' order, no line more
// or less. Which parts the exporter could not read (unreadable) is the
// exporter's statement and is not compared: the proven record opens to
// the same fields either way.
func checkEvents(path string, want []eventLine) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(b) == 0 {
		lines = nil
	}
	if len(lines) != len(want) {
		return fmt.Errorf("events.jsonl holds %d lines for %d proven records", len(lines), len(want))
	}
	for i, line := range lines {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var got eventLine
		if err := dec.Decode(&got); err != nil || dec.More() {
			return fmt.Errorf("events.jsonl line %d: not an event line (%v)", i+1, err)
		}
		got.Unreadable = nil
		g, err1 := json.Marshal(got)
		w, err2 := json.Marshal(want[i])
		if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
			return fmt.Errorf("events.jsonl line %d is not record %d as proven", i+1, want[i].Index)
		}
	}
	return nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
