package gateway

import (
	"fmt"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
)

// Recorder is where the gateway records sessions (M9): every session is
// recorded, encrypted under its tenant's data key of the day (M16).
type Recorder struct {
	Vault     *record.Vault
	Dir       string // the data directory; recordings go to Dir/recordings/<tenant>/<day>/
	StreamCap int64  // bytes of each exec stream kept as content
	// Storage, if set, is where recordings go instead of Dir: the storage
	// the gateways of a cluster share (recording.storage: store).
	Storage record.Storage
}

func (r *Recorder) storage() record.Storage {
	if r.Storage != nil {
		return r.Storage
	}
	return record.Local(r.Dir)
}

func (s *Server) startRecording(meta record.Meta) (*record.Writer, error) {
	w, err := record.Create(s.rec.Vault, s.rec.storage(), meta, record.Options{Now: s.now, StreamCap: s.rec.StreamCap})
	if err != nil {
		return nil, fmt.Errorf("cannot record the session: %w", err)
	}
	return w, nil
}

// recordingSummary is a recording's fingerprints for its session's end
// event, so that a recording can be checked against the tamper-evident
// log; the hash of the encrypted file stays checkable after its data key
// is shredded.
func recordingSummary(kind record.Kind, w *record.Writer, sum record.Summary, err error) *audit.RecordingSummary {
	s := &audit.RecordingSummary{Path: w.Path()}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.SHA256, s.FileSHA256 = sum.SHA256, sum.FileSHA256
	streams := map[string]**audit.StreamDigest{"stdin": &s.Stdin, "stdout": &s.Stdout, "stderr": &s.Stderr}
	if kind == record.KindExec || kind == record.KindSFTP || kind == record.KindForward {
		// An empty stream is recorded too: zero bytes, the empty hash.
		for _, d := range streams {
			*d = &audit.StreamDigest{SHA256: emptySHA256}
		}
	}
	for name, st := range sum.Streams {
		d := &audit.StreamDigest{Bytes: st.Bytes, SHA256: st.SHA256}
		if st.Truncated {
			d.StoredBytes = st.StoredBytes
		}
		if p := streams[name]; p != nil {
			*p = d
		}
	}
	s.SealedKeystrokes = sealedKeystrokes(w, sum.Sealed)
	return s
}

// sealedKeystrokes says how many keystrokes typed at secret prompts were
// sealed, not recorded, where (the sidecar and its hash), and whether more
// than a few secrets' worth (a fake prompt hiding commands?); nil when
// there were none.
func sealedKeystrokes(w *record.Writer, s record.SealedSummary) *audit.SealedKeystrokes {
	if s.Prompts == 0 {
		return nil
	}
	k := &audit.SealedKeystrokes{Path: w.SealedPath(), Prompts: s.Prompts, Keystrokes: s.Keystrokes, Bytes: s.Bytes, FileSHA256: s.FileSHA256}
	if s.Flagged {
		k.Flag = "many"
	}
	return k
}

// emptySHA256 is the SHA-256 of no bytes.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// streamTap feeds one exec stream into the recording. A failed write stops
// the copy it sits in, so nothing passes unrecorded.
type streamTap struct {
	w    *record.Writer
	name string
}

func (t streamTap) Write(p []byte) (int, error) {
	if err := t.w.Stream(t.name, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// library is the recordings this gateway keeps, as readers see them.
func (c *clientConn) library() readable.Library {
	return readable.Library{Vault: c.srv.rec.Vault, Dir: c.srv.rec.Dir, Storage: c.srv.rec.Storage, Config: c.st.cfg, Engine: c.st.engine}
}
