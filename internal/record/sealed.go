package record

import (
	"bufio"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"tandem.dev/tandem/internal/vault"
)

// Sealed keystrokes: input typed at a secret prompt (IsSecretPrompt) is
// neither stored in the recording nor dropped. It is sealed: encrypted
// under the tenant's sealed key of the day, which is a key of its own
// (Vault, sealed-keys/), and written to a sidecar file kept apart from the
// recordings:
//
//	<dir>/sealed/<tenant>/<YYYY-MM-DD>/<session>.sealed
//
// with the framing of a recording (plaintext header line, then chunks of
// uint32 length | nonce | XChaCha20-Poly1305), header format
// "tandem-sealed", and the additional data
// "tandem-sealed-chunk-v1" | SHA-256(header line) | uint64 BE sequence.
// Each chunk holds one EvInput event (person, time offset, the sealed
// bytes); the last chunk, written by Close, holds no event and carries the
// final flag. The n-th chunk belongs to the EvSealed event with Seq n in
// the recording, which tells readers where and how much was sealed, never
// what.
//
// Who can open it: nobody through Tandem yet. Reading a recording (export,
// replay, the listing) uses only the data key and never opens the sidecar
// or loads the sealed key, whatever the reader's grants. OpenSealed exists
// for the disclosure process of M15 (a later issue: legal basis, two
// approvals, encryption to the recipient, audit), which is the only
// intended caller. Crypto-shredding a day (Vault.Shred) destroys the
// sealed key with the data key.

// Thresholds above which a session's sealed input is flagged: more than a
// few secrets' worth. Three prompts cover sudo, a failed try and su; a
// password or passphrase rarely has more than 64 characters, so 256 bytes
// leave room for four long ones. Beyond either, a fake prompt may be
// hiding commands, and the auditor is told (SealedSummary.Flagged).
const (
	SealedFlagPrompts = 3
	SealedFlagBytes   = 256
)

// MarkerSealedManyNote ends the export of a flagged recording.
const MarkerSealedManyNote = "more input sealed than a few secrets' worth: a fake prompt may have hidden commands"

const (
	sealedFormatName = "tandem-sealed"
	sealedDir        = "sealed"
	sealedExt        = ".sealed"
	sealedADName     = "tandem-sealed-chunk-v1"
)

// SealedSummary describes the sealed input of a recording.
type SealedSummary struct {
	Prompts    int64 // secret prompts whose answer was sealed
	Keystrokes int64 // characters sealed (UTF-8 characters; other bytes count one each)
	Bytes      int64
	// Flagged: more than SealedFlagPrompts prompts or SealedFlagBytes bytes.
	Flagged bool
	// FileSHA256 is the SHA-256 of the sidecar file as written (hex);
	// empty while nothing was sealed.
	FileSHA256 string
}

func (s *SealedSummary) flag() {
	s.Flagged = s.Prompts > SealedFlagPrompts || s.Bytes > SealedFlagBytes
}

// SealedPath returns where the sealed keystrokes of session for tenant,
// started on day, live under the data directory dir.
func SealedPath(dir, tenant string, day time.Time, session string) string {
	return filepath.Join(dir, sealedDir, tenant, Day(day), session+sealedExt)
}

// keystrokes counts the characters in p: every byte that does not continue
// a UTF-8 sequence.
func keystrokes(p []byte) int64 {
	var n int64
	for _, c := range p {
		if c&0xc0 != 0x80 {
			n++
		}
	}
	return n
}

// sealedWriter writes one sidecar.
type sealedWriter struct {
	out     Appender
	name    string
	aead    cipher.AEAD
	hdrHash [sha256.Size]byte
	seq     uint64
	file    hash.Hash
	ad      []byte
	dirty   bool
	noSync  bool
}

// createSealed starts the sidecar of meta's session. It is created on the
// first sealed keystroke, so most sessions have none.
func createSealed(v *Vault, st Storage, meta *Meta, noSync bool) (*sealedWriter, error) {
	keyID, key, err := sealedKey(v, meta.Tenant, meta.Started)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	ref := Ref{Sealed: true, Tenant: meta.Tenant, Day: Day(meta.Started), Session: meta.SessionID}
	if err := shareKey(v, st, vault.Sealed, ref, keyID); err != nil {
		return nil, err
	}
	f, err := st.Create(ref)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("sealed keystrokes of session %s already exist", meta.SessionID)
	}
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(Header{Format: sealedFormatName, Version: formatVersion, Session: meta.SessionID,
		Tenant: meta.Tenant, Day: Day(meta.Started), Key: keyID, Kind: meta.Kind, AEAD: aeadName})
	if err != nil {
		f.Close()
		return nil, err
	}
	hdr = append(hdr, '\n')
	s := &sealedWriter{out: f, name: st.Name(ref), aead: aead, hdrHash: sha256.Sum256(hdr), file: sha256.New(), noSync: noSync}
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		return nil, err
	}
	s.file.Write(hdr)
	s.dirty = true
	if err := s.sync(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// seal writes one chunk holding person's sealed input p, typed at time
// offset d, and returns its sequence number. final: the closing chunk
// (then p is empty).
func (s *sealedWriter) seal(person string, d time.Duration, p []byte, final bool) (uint64, error) {
	pt := []byte{0}
	if final {
		pt[0] = flagFinal
	} else {
		pt = appendBytes(appendString(appendEventHead(pt, EvInput, d), person), p)
	}
	fr := make([]byte, frameLenLen+nonceSize, frameLenLen+nonceSize+len(pt)+tagSize)
	nonce := fr[frameLenLen:]
	if _, err := rand.Read(nonce); err != nil {
		return 0, fmt.Errorf("random nonce: %w", err)
	}
	s.ad = sealedAD(s.ad, &s.hdrHash, s.seq)
	fr = s.aead.Seal(fr, nonce, pt, s.ad)
	clear(pt)
	binary.BigEndian.PutUint32(fr[:frameLenLen], uint32(len(fr)-frameLenLen))
	if _, err := s.out.Write(fr); err != nil {
		return 0, fmt.Errorf("write sealed chunk %d: %w", s.seq, err)
	}
	s.file.Write(fr)
	s.dirty = true
	seq := s.seq
	s.seq++
	return seq, nil
}

func (s *sealedWriter) sync() error {
	if !s.dirty || s.noSync {
		return nil
	}
	if err := s.out.Sync(); err != nil {
		return fmt.Errorf("sync sealed keystrokes: %w", err)
	}
	s.dirty = false
	return nil
}

// close writes the final chunk, syncs and closes the file, and returns
// the file's SHA-256.
func (s *sealedWriter) close() (string, error) {
	_, err := s.seal("", 0, nil, true)
	if err == nil {
		err = s.sync()
	}
	if cerr := s.out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return hex.EncodeToString(s.file.Sum(nil)), err
}

func sealedAD(dst []byte, hdr *[sha256.Size]byte, seq uint64) []byte {
	dst = append(dst[:0], sealedADName...)
	dst = append(dst, hdr[:]...)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// SealedInput is one chunk of sealed keystrokes.
type SealedInput struct {
	Seq    uint64        // matches Event.SealedSeq of the EvSealed event in the recording
	T      time.Duration // since Meta.Started
	Person string
	Data   []byte
}

// OpenSealed decrypts the sealed keystrokes at path with the sealed key
// from v. It is meant for the disclosure process of M15 only: nothing that
// serves read grants (export, replay, listing) calls it. The error wraps
// ErrIncomplete if the final chunk is missing (what came before is
// returned), ErrTampered or ErrCorrupt. path is a place SealedPath
// names: a file whose header names another session, tenant or day than
// its place is refused (ErrCorrupt).
func OpenSealed(v *Vault, path string) ([]SealedInput, error) {
	obj, err := openFileObject(path)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	defer obj.Close()
	day := filepath.Dir(path)
	ref := Ref{Sealed: true, Tenant: filepath.Base(filepath.Dir(day)), Day: filepath.Base(day), Session: strings.TrimSuffix(filepath.Base(path), sealedExt)}
	return readSealed(ring(v, nil), obj, path, ref)
}

// OpenSealedIn is OpenSealed for the sealed keystrokes of ref's session
// in s; it is meant for the disclosure process of M15 only.
func OpenSealedIn(v *Vault, s Storage, ref Ref) ([]SealedInput, error) {
	ref.Sealed = true
	obj, err := s.Open(ref)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	defer obj.Close()
	return readSealed(ring(v, s), obj, s.Name(ref), ref)
}

// readSealed reads the sealed keystrokes of ref. The chunks are bound to
// the header, but the header is not bound to the place: another session's
// whole file (of another tenant too, whose sealed key its header names)
// put at ref's place would read as ref's secrets, so the header must name
// ref, as ListIn asks of recordings.
func readSealed(k keyring, obj Object, path string, ref Ref) ([]SealedInput, error) {
	br := bufio.NewReader(io.NewSectionReader(obj, 0, obj.Size()))
	line, err := readHeaderLine(br)
	if err != nil {
		return nil, fmt.Errorf("record: %s: %w", path, err)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil || h.Format != sealedFormatName {
		return nil, fmt.Errorf("record: %s: not sealed keystrokes: %w", path, ErrCorrupt)
	}
	h.Format = formatName // the rest is validated as a recording header
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("record: %s: %v: %w", path, err, ErrCorrupt)
	}
	if h.Tenant != ref.Tenant || h.Day != ref.Day || h.Session != ref.Session {
		return nil, fmt.Errorf("record: %s: header names %s/%s/%s, not its place: %w", path, h.Tenant, h.Day, h.Session, ErrCorrupt)
	}
	key, err := k.sealed(h.Tenant, h.Day, h.Key)
	if err != nil {
		return nil, fmt.Errorf("record: %s: %w", path, err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	hdrHash := sha256.Sum256(line)
	var out []SealedInput
	var ad []byte
	for seq := uint64(0); ; seq++ {
		var lenBuf [frameLenLen]byte
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			return out, fmt.Errorf("record: %s: %w: after sealed chunk %d", path, ErrIncomplete, int64(seq)-1)
		}
		size := binary.BigEndian.Uint32(lenBuf[:])
		if size < minChunkBody || size > maxChunkBody {
			return out, fmt.Errorf("record: %s: sealed chunk %d: length %d: %w", path, seq, size, ErrCorrupt)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			return out, fmt.Errorf("record: %s: %w: inside sealed chunk %d", path, ErrIncomplete, seq)
		}
		ad = sealedAD(ad, &hdrHash, seq)
		pt, err := aead.Open(body[nonceSize:nonceSize], body[:nonceSize], body[nonceSize:], ad)
		if err != nil {
			return out, fmt.Errorf("record: %s: sealed chunk %d: %w", path, seq, ErrTampered)
		}
		if pt[0] == flagFinal && len(pt) == 1 {
			if _, err := br.ReadByte(); err != io.EOF {
				return out, fmt.Errorf("record: %s: data after the final sealed chunk: %w", path, ErrCorrupt)
			}
			return out, nil
		}
		d := decoder{b: pt[1:]}
		ev, err := decodeEvent(&d)
		if pt[0] != 0 || err != nil || ev.Type != EvInput || len(d.b) != 0 {
			return out, fmt.Errorf("record: %s: sealed chunk %d: %w", path, seq, ErrCorrupt)
		}
		out = append(out, SealedInput{Seq: seq, T: ev.T, Person: ev.Person, Data: ev.Data})
	}
}

// ReadSealedSummary returns the sealed-input summary of the recording at
// path, for listings: it decrypts only the final chunk (where Close puts
// the summary), found by walking the chunk lengths. A recording without
// its final chunk (a live session, or one cut by a crash) is read in full
// and its EvSealed events are added up. Only the data key is used.
func ReadSealedSummary(v *Vault, path string) (SealedSummary, error) {
	obj, err := openFileObject(path)
	if err != nil {
		return SealedSummary{}, fmt.Errorf("record: %w", err)
	}
	return readSealedSummary(ring(v, nil), obj, path)
}

// ReadSealedSummaryIn is ReadSealedSummary for the recording ref in s.
func ReadSealedSummaryIn(v *Vault, s Storage, ref Ref) (SealedSummary, error) {
	ref.Sealed = false
	obj, err := s.Open(ref)
	if err != nil {
		return SealedSummary{}, fmt.Errorf("record: %w", err)
	}
	return readSealedSummary(ring(v, s), obj, s.Name(ref))
}

// readSealedSummary reads obj's summary and closes it.
func readSealedSummary(k keyring, obj Object, path string) (SealedSummary, error) {
	sum, ok, err := sealedSummaryFromTail(k, obj, path)
	if err != nil || ok {
		obj.Close()
		return sum, err
	}
	r, err := openObject(k, obj, path)
	if err != nil {
		return SealedSummary{}, err
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err != nil {
			if err == io.EOF || errors.Is(err, ErrIncomplete) {
				return r.sealedSummary(), nil
			}
			return r.sealedSummary(), err
		}
	}
}

// sealedSummaryFromTail reads the summary from the final chunk; ok is
// false if the file has none.
func sealedSummaryFromTail(k keyring, f Object, path string) (SealedSummary, bool, error) {
	total := f.Size()
	line, err := readHeaderLine(bufio.NewReaderSize(io.NewSectionReader(f, 0, total), maxHeaderLine+1))
	if err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: %w", path, err)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: header: %v: %w", path, err, ErrCorrupt)
	}
	if err := h.validate(); err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: %v: %w", path, err, ErrCorrupt)
	}
	off, last, lastSize, seq := int64(len(line)), int64(-1), uint32(0), uint64(0)
	var lenBuf [frameLenLen]byte
	for off+frameLenLen <= total {
		if _, err := f.ReadAt(lenBuf[:], off); err != nil {
			return SealedSummary{}, false, fmt.Errorf("record: %s: %w", path, err)
		}
		size := binary.BigEndian.Uint32(lenBuf[:])
		if size < minChunkBody || size > maxChunkBody {
			return SealedSummary{}, false, fmt.Errorf("record: %s: chunk %d: length %d out of range: %w", path, seq, size, ErrCorrupt)
		}
		if off+frameLenLen+int64(size) > total {
			break // cut inside this chunk
		}
		last, lastSize = off, size
		off += frameLenLen + int64(size)
		seq++
	}
	if last < 0 {
		return SealedSummary{}, false, nil
	}
	key, err := k.data(h.Tenant, h.Day, h.Key)
	if err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: %w", path, err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %w", err)
	}
	body := make([]byte, lastSize)
	if _, err := f.ReadAt(body, last+frameLenLen); err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: %w", path, err)
	}
	hh := sha256.Sum256(line)
	pt, err := aead.Open(body[nonceSize:nonceSize], body[:nonceSize], body[nonceSize:], chunkAD(nil, &hh, seq-1))
	if err != nil {
		return SealedSummary{}, false, fmt.Errorf("record: %s: chunk %d: %w", path, seq-1, ErrTampered)
	}
	if len(pt) < 1 || pt[0] != flagFinal {
		return SealedSummary{}, false, nil
	}
	d := decoder{b: pt[1:]}
	for len(d.b) > 0 {
		ev, err := decodeEvent(&d)
		if err != nil {
			return SealedSummary{}, false, fmt.Errorf("record: %s: final chunk: %v: %w", path, err, ErrCorrupt)
		}
		if ev.Type == EvSealedEnd {
			return ev.Sealed, true, nil
		}
	}
	return SealedSummary{}, true, nil
}
