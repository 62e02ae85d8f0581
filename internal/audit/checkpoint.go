package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint files (checkpoints.log in the log directory and the optional
// witness file) are plain concatenations of signed notes: each is the
// checkpoint body, a blank line, and one or more signature lines that start
// with "— ". A note ends where a line that is not a signature line follows
// its signatures. Text keeps the files readable with cat and diff, which is
// what an auditor holding a copy of the witness file will use.

const sigPrefix = "\u2014 " // "— ", the signed-note signature line prefix

// maxNoteSize bounds one signed note; a checkpoint is well under 1 KiB.
const maxNoteSize = 16 << 10

// rawNote is one signed note as found in a checkpoint file.
type rawNote struct {
	Offset int64  // byte offset of the note in the file
	Text   []byte // the whole signed note
}

// noteError says why the checkpoint file bytes at Offset are not a note.
type noteError struct {
	Offset int64
	Reason string
	Torn   bool // an unfinished note at the end of the file
}

func (e *noteError) Error() string {
	return fmt.Sprintf("bad checkpoint note at byte %d: %s", e.Offset, e.Reason)
}

// readNotes calls fn for every complete note in r, in order. It returns a
// *noteError for bytes that do not form a note; Torn is set when they are
// an unfinished note at the very end.
func readNotes(r io.Reader, fn func(rawNote) error) error {
	br := bufio.NewReader(r)
	var (
		cur     []byte
		start   int64
		off     int64
		state   int // 0 body, 1 after blank line, 2 in signatures
		pending []byte
	)
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		n := rawNote{Offset: start, Text: cur}
		cur = nil
		return fn(n)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			pending = append(pending[:0], line...)
			for err == bufio.ErrBufferFull && len(pending) <= maxNoteSize {
				line, err = br.ReadSlice('\n')
				pending = append(pending, line...)
			}
			line = pending
			if len(line) > maxNoteSize {
				return &noteError{Offset: off, Reason: "line too long"}
			}
		}
		if err == io.EOF {
			if len(line) > 0 { // an unterminated last line
				if state == 2 && !bytes.HasPrefix(line, []byte(sigPrefix)) {
					if err := flush(); err != nil {
						return err
					}
				}
				if len(cur) == 0 {
					start = off
				}
				return &noteError{Offset: start, Reason: "unfinished note at the end", Torn: true}
			}
			if state == 2 || len(cur) == 0 {
				return flush()
			}
			return &noteError{Offset: start, Reason: "unfinished note at the end", Torn: true}
		}
		if err != nil {
			return fmt.Errorf("read checkpoints: %w", err)
		}
		isSig := bytes.HasPrefix(line, []byte(sigPrefix))
		blank := len(line) == 1
		switch state {
		case 0:
			switch {
			case blank && len(cur) == 0:
				return &noteError{Offset: off, Reason: "blank line outside a note"}
			case blank:
				state = 1
			case isSig:
				return &noteError{Offset: off, Reason: "signature line before the note text ended"}
			}
		case 1:
			if !isSig {
				return &noteError{Offset: off, Reason: "no signature after the blank line"}
			}
			state = 2
		case 2:
			if !isSig {
				if err := flush(); err != nil {
					return err
				}
				state = 0
				if blank {
					return &noteError{Offset: off, Reason: "blank line outside a note"}
				}
			}
		}
		if len(cur) == 0 {
			start = off
		}
		cur = append(cur, line...)
		off += int64(len(line))
		if len(cur) > maxNoteSize {
			return &noteError{Offset: start, Reason: "note too long"}
		}
	}
}

// openCheckpoint checks the note's signature with v and parses its body.
func openCheckpoint(raw []byte, v note.Verifier) (log.Checkpoint, error) {
	_, cp, rest, err := openNote(raw, note.VerifierList(v))
	if err != nil {
		return log.Checkpoint{}, err
	}
	// A key hand-over is the one extension a checkpoint may carry;
	// keyChain.open checks that it is part of the chain.
	if _, _, _, err := parseHandoverLine(rest); err != nil {
		return log.Checkpoint{}, err
	}
	return cp, nil
}

// openNote checks a checkpoint note's signatures with vs and parses its
// body, returning the extension lines after the root hash.
func openNote(raw []byte, vs note.Verifiers) (*note.Note, log.Checkpoint, []byte, error) {
	n, err := note.Open(raw, vs)
	if err != nil {
		return nil, log.Checkpoint{}, nil, fmt.Errorf("signature: %w", err)
	}
	var cp log.Checkpoint
	rest, err := cp.Unmarshal([]byte(n.Text))
	if err != nil {
		return nil, log.Checkpoint{}, nil, err
	}
	return n, cp, rest, nil
}

// lastNote returns the last complete note of a checkpoint file (nil for
// none or a missing file); an unfinished note at the end is ignored.
func lastNote(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: open checkpoints: %w", err)
	}
	defer f.Close()
	var last []byte
	err = readNotes(bufio.NewReader(f), func(n rawNote) error {
		last = append(last[:0], n.Text...)
		return nil
	})
	var ne *noteError
	if err != nil && !(errors.As(err, &ne) && ne.Torn) {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	return last, nil
}

// signCheckpoint returns the signed note for cp.
func signCheckpoint(cp log.Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(cp.Marshal())}, s)
}

// rootString renders a root hash the way checkpoints do.
func rootString(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

// recoverNoteFile cuts an unfinished note off the end of a checkpoint file
// and returns the last complete note, if any. Anything else that is not a
// note is an error: a checkpoint file is evidence and is never rewritten.
func recoverNoteFile(f *os.File) (last []byte, cut int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	err = readNotes(f, func(n rawNote) error {
		last = append(last[:0], n.Text...)
		return nil
	})
	var ne *noteError
	if errors.As(err, &ne) && ne.Torn && st.Size()-ne.Offset <= maxNoteSize {
		cut = st.Size() - ne.Offset
		if err := f.Truncate(ne.Offset); err != nil {
			return nil, 0, fmt.Errorf("cut unfinished checkpoint: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, 0, err
		}
		err = nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return nil, 0, err
	}
	return last, cut, nil
}

// EachNote calls fn with every complete note of a checkpoint file (the
// log's checkpoints.log, a witness file, a peer's co-signed copy), in
// order, with its byte offset. An unfinished note at the end is skipped;
// bytes that are not a note are an error.
func EachNote(path string, fn func(offset int64, raw []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", path, err)
	}
	defer f.Close()
	err = readNotes(bufio.NewReader(f), func(n rawNote) error { return fn(n.Offset, n.Text) })
	var ne *noteError
	if errors.As(err, &ne) && ne.Torn {
		return nil
	}
	return err
}

// LastNote returns the last complete note of a checkpoint file, or nil.
func LastNote(path string) ([]byte, error) { return lastNote(path) }
