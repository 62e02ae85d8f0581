package disclose

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/report"
	"tandem.dev/tandem/internal/vault"
)

// ManifestFormat is the version of manifest.json.
const ManifestFormat = 1

// Manifest is manifest.json, the first file of an export: the case, the
// signed checkpoint, every record with its inclusion proof and the
// one-time subkeys of all its parts, and the SHA-256 of every other file.
type Manifest struct {
	Format     int             `json:"format"`
	Case       CaseInfo        `json:"case"`
	Made       string          `json:"made"`
	Checkpoint string          `json:"checkpoint"`
	Handovers  []string        `json:"handovers,omitempty"`
	Records    []report.Record `json:"records"`
	Files      []File          `json:"files"`
}

// CaseInfo is the case as the recipient sees it.
type CaseInfo struct {
	ID          string   `json:"id"`
	Tenant      string   `json:"tenant"`
	Scope       string   `json:"scope"`
	LegalBasis  string   `json:"legal_basis"`
	Reason      string   `json:"reason"`
	Requester   string   `json:"requester"`
	Approvers   []string `json:"approvers"`
	Recipient   string   `json:"recipient"`
	Contact     string   `json:"contact"`
	SealedInput bool     `json:"sealed_input"`
	Requested   string   `json:"requested"`
	Record      uint64   `json:"record"` // the disclosure.requested record
}

// File is one file of the export besides the manifest.
type File struct {
	Name    string `json:"name"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Session string `json:"session,omitempty"`
}

// ExportOptions say what to export and where.
type ExportOptions struct {
	AuditDir string
	DataDir  string // recordings and sealed keystrokes live under it, unless Recordings is set
	// Recordings is where the recordings and sealed keystrokes are kept
	// when that is not the data directory (recording.storage: store, the
	// cluster's shared database); nil: under DataDir.
	Recordings record.Storage
	Vault      *record.Vault
	Case       *Case
	Out        string // the encrypted file; must not exist
	Now        time.Time
	// Record is called with the result once the encrypted file is
	// complete and before it is put at Out: the caller records the export
	// (fail closed); an error leaves no file.
	Record func(Result) error
}

// Result is what an export wrote.
type Result struct {
	Path       string
	SHA256     string
	Records    int
	Recordings int
}

// MaxRecords bounds one export.
const MaxRecords = 1_000_000

// Export writes the approved case's records and recordings, encrypted to
// its recipient.
func Export(o ExportOptions) (*Result, error) {
	c := o.Case
	if err := c.Approved(); err != nil {
		return nil, err
	}
	rcpt, err := ParseRecipient(c.RecipientKey)
	if err != nil {
		return nil, err
	}
	info := CaseInfo{ID: c.ID, Tenant: c.Tenant, Scope: c.Scope.String(), LegalBasis: c.LegalBasis, Reason: c.Reason,
		Requester: c.Requester, Recipient: c.Recipient, Contact: c.Contact, SealedInput: c.SealedInput,
		Requested: c.Requested.UTC().Format(time.RFC3339), Record: c.Index}
	for _, a := range c.Approvals {
		info.Approvers = append(info.Approvers, a.Person)
	}
	return WriteBundle(o, Bundle{Info: info, Filter: c.Scope.Filter(c.Tenant), Recipient: rcpt})
}

// Bundle is what an export holds: the records f selects (of Info.Tenant),
// the recordings of their sessions — or of every session of the tenant
// with AllRecordings — and, with Info.SealedInput, their sealed
// keystrokes.
type Bundle struct {
	Info          CaseInfo
	Filter        audit.Filter
	Recipient     Recipient
	AllRecordings bool
}

// WriteBundle writes b to o.Out, encrypted to b.Recipient, with the
// manifest first; o.Case is not looked at.
func WriteBundle(o ExportOptions, b Bundle) (*Result, error) {
	c, rcpt := b.Info, b.Recipient
	cp, err := audit.LatestCheckpoint(o.AuditDir)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Format: ManifestFormat, Case: c, Made: o.Now.UTC().Format(time.RFC3339), Checkpoint: string(cp.Note), Records: []report.Record{}, Files: []File{}}
	var events bytes.Buffer
	var sessions []string
	seen := map[string]bool{}
	logged := map[string]loggedRecording{} // session.end's hash per session
	later := 0
	if b.Filter.Tenant == "" || b.Filter.Tenant != c.Tenant {
		return nil, errors.New("disclose: an export is of one tenant")
	}
	err = audit.ReadKeys(o.AuditDir, o.Vault, b.Filter, func(r audit.Record) error {
		if r.Index >= cp.Size {
			later++
			return nil
		}
		if len(m.Records) == MaxRecords {
			return fmt.Errorf("more than %d records in scope; narrow the scope", MaxRecords)
		}
		keys, err := audit.Disclose(r.Raw, o.Vault, vault.Admin, vault.Operational, vault.Content)
		if err != nil {
			return err
		}
		m.Records = append(m.Records, report.Record{Index: r.Index, Raw: string(r.Raw), Keys: keys})
		line, err := json.Marshal(struct {
			Index uint64 `json:"index"`
			audit.Event
			Unreadable []audit.Unreadable `json:"unreadable,omitempty"`
		}{r.Index, r.Event, r.Unreadable})
		if err != nil {
			return err
		}
		events.Write(append(line, '\n'))
		if r.Event.Type == audit.SessionEnd && r.Event.Session != "" {
			logged[r.Event.Session] = loggedRecording{index: r.Index, sha256: r.Event.Attrs[audit.KeyRecordingSHA256]}
		}
		if r.Event.Type == audit.SessionStart && r.Event.Session != "" && !seen[r.Event.Session] {
			seen[r.Event.Session] = true
			sessions = append(sessions, r.Event.Session)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if later > 0 {
		return nil, fmt.Errorf("%d record(s) in scope are not covered by a signed checkpoint yet; try again once the gateway signed one", later)
	}
	if m.Handovers, err = report.ProveRecords(o.AuditDir, cp, m.Records); err != nil {
		return nil, err
	}

	files := map[string][]byte{"events.jsonl": events.Bytes()}
	order := []string{"events.jsonl"}
	add := func(name, session string, b []byte) {
		sum := sha256.Sum256(b)
		m.Files = append(m.Files, File{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), Session: session})
		files[name] = b
		if name != "events.jsonl" {
			order = append(order, name)
		}
	}
	add("events.jsonl", "", events.Bytes())
	res := &Result{Records: len(m.Records)}
	rs := o.Recordings
	if rs == nil {
		rs = record.Local(o.DataDir)
	}
	headers, _ := record.ListIn(rs, c.Tenant) // unreadable ones: the session shows without its recording
	if b.AllRecordings {
		sessions = sessions[:0]
		for _, h := range headers {
			if !slices.Contains(sessions, h.Session) {
				sessions = append(sessions, h.Session)
			}
		}
	}
	for _, id := range sessions {
		for _, h := range headers {
			if h.Session != id {
				continue
			}
			cast, err := castOf(o.Vault, rs, h.Ref(), logged[id])
			if err != nil {
				return nil, fmt.Errorf("recording of session %s: %w", id, err)
			}
			add("recordings/"+id+".cast", id, cast)
			res.Recordings++
			if c.SealedInput {
				in, err := record.OpenSealedIn(o.Vault, rs, h.Ref())
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("sealed keystrokes of session %s: %w", id, err)
				}
				if len(in) > 0 {
					b, err := json.MarshalIndent(in, "", "  ")
					if err != nil {
						return nil, err
					}
					add("sealed/"+id+".json", id, b)
				}
			}
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return res, writeEncrypted(o, rcpt, manifest, order, files, res)
}

// loggedRecording is what session.end logged of a session's recording.
type loggedRecording struct {
	index  uint64
	sha256 string
}

// castOf exports the recording at path as asciicast, if it is the one the
// log vouches for. A recording is sealed under a data key that whoever
// holds the gateway host and its KEK can unwrap, so its chunks' tags alone
// do not show that it is what was recorded; the content hash in the
// session's session.end, proven against the signed checkpoint, does. A
// session whose end is not in scope (still running, ended after the
// period, or no end after a crash) or whose recording failed has no hash
// to check against; its recording is exported as read.
func castOf(v *record.Vault, s record.Storage, ref record.Ref, logged loggedRecording) ([]byte, error) {
	r, err := record.OpenIn(v, s, ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var b bytes.Buffer
	if err := record.ExportAsciicast(r, &b); err != nil {
		return nil, err
	}
	sum, err := r.Verify()
	if err != nil {
		return nil, err
	}
	if logged.sha256 != "" && sum.SHA256 != logged.sha256 {
		return nil, fmt.Errorf("its content (SHA-256 %s) is not what session.end (record %d) logged (%s): the recording was changed or replaced", sum.SHA256, logged.index, logged.sha256)
	}
	return b.Bytes(), nil
}

// writeEncrypted writes the tar (manifest first) encrypted to rcpt into a
// temporary file beside o.Out, lets the caller record it, and only then
// renames it onto o.Out.
func writeEncrypted(o ExportOptions, rcpt Recipient, manifest []byte, order []string, files map[string][]byte, res *Result) error {
	tmp := o.Out + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := os.Stat(o.Out); err == nil {
		return fmt.Errorf("%s exists; an export never replaces a file", o.Out)
	}
	sum := sha256.New()
	enc, err := rcpt.Encrypt(io.MultiWriter(f, sum))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(enc)
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: o.Now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put("manifest.json", manifest); err != nil {
		return err
	}
	for _, name := range order {
		if err := put(name, files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	res.Path, res.SHA256 = o.Out, hex.EncodeToString(sum.Sum(nil))
	if o.Record != nil {
		if err := o.Record(*res); err != nil {
			return err
		}
	}
	if err := os.Link(tmp, o.Out); err != nil { // never over an existing file
		return err
	}
	done = true
	os.Remove(tmp)
	return vault.SyncDir(filepath.Dir(o.Out))
}
