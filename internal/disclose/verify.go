package disclose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	}
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
	}
	return &Checked{Case: m.Case, Records: len(m.Records), Files: len(m.Files), Size: size}, nil
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
