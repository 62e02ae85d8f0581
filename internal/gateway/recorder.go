package gateway

import (
	"fmt"
	"strconv"

	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
)

// Recorder is where the gateway records sessions (M9): every session is
// recorded, encrypted under its tenant's data key of the day (M16).
type Recorder struct {
	Vault     *record.Vault
	Dir       string // the data directory; recordings go to Dir/recordings/<tenant>/<day>/
	StreamCap int64  // bytes of each exec stream kept as content
}

func (s *Server) startRecording(meta record.Meta) (*record.Writer, error) {
	w, err := record.Create(s.rec.Vault, s.rec.Dir, meta, record.Options{Now: s.now, StreamCap: s.rec.StreamCap})
	if err != nil {
		return nil, fmt.Errorf("cannot record the session: %w", err)
	}
	return w, nil
}

// summaryAttrs puts a recording's fingerprints into session.end, so that a
// recording can be checked against the tamper-evident log; the hash of the
// encrypted file stays checkable after its data key is shredded.
func summaryAttrs(attrs map[string]string, kind record.Kind, w *record.Writer, sum record.Summary, err error) {
	attrs["recording"] = w.Path()
	if err != nil {
		attrs["recording_error"] = err.Error()
		return
	}
	attrs["recording_sha256"] = sum.SHA256
	attrs["recording_file_sha256"] = sum.FileSHA256
	if kind == record.KindExec || kind == record.KindSFTP || kind == record.KindForward {
		// An empty stream is recorded too: zero bytes, the empty hash.
		for _, name := range []string{"stdin", "stdout", "stderr"} {
			attrs[name+"_bytes"] = "0"
			attrs[name+"_sha256"] = emptySHA256
		}
	}
	if s := sum.Sealed; s.Prompts > 0 {
		// Keystrokes typed at secret prompts were sealed, not recorded:
		// how many, where (the sidecar and its hash), and whether more
		// than a few secrets' worth (a fake prompt hiding commands?).
		attrs["sealed"] = w.SealedPath()
		attrs["sealed_prompts"] = strconv.FormatInt(s.Prompts, 10)
		attrs["sealed_keystrokes"] = strconv.FormatInt(s.Keystrokes, 10)
		attrs["sealed_bytes"] = strconv.FormatInt(s.Bytes, 10)
		attrs["sealed_file_sha256"] = s.FileSHA256
		if s.Flagged {
			attrs["sealed_flag"] = "many"
		}
	}
	for name, st := range sum.Streams {
		attrs[name+"_bytes"] = strconv.FormatInt(st.Bytes, 10)
		attrs[name+"_sha256"] = st.SHA256
		if st.Truncated {
			attrs[name+"_stored_bytes"] = strconv.FormatInt(st.StoredBytes, 10)
		}
	}
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
	return readable.Library{Vault: c.srv.rec.Vault, Dir: c.srv.rec.Dir, Config: c.st.cfg, Engine: c.st.engine}
}
