package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// A key hand-over ends one checkpoint signing key's term and starts the
// next one's at a point of the log (M2: keys are renewed, the audit
// signing key too). It is a checkpoint like any other — origin, size,
// root hash — with one extension line
//
//	tandem-key-handover <old verifier key> <new verifier key>
//
// signed by both keys and written to checkpoints.log and the witness like
// every checkpoint. The old key vouches for the new one at a point both
// sign, so an auditor who holds any key of the chain can follow it:
// forward from an older key, back from a newer one. A checkpoint is
// accepted only from the key whose term covers its position; a retired
// key that signs later checkpoints, or hands over twice, is a problem
// Verify reports, so a stolen old key cannot continue the log.
const handoverTag = "tandem-key-handover"

// maxHandovers bounds the chain Verify follows; a key a year for a
// century is far below it.
const maxHandovers = 1000

// position is a point of the log: a checkpoint's segment and size.
type position struct {
	segment int
	size    uint64
}

func (p position) less(q position) bool {
	return p.segment < q.segment || p.segment == q.segment && p.size < q.size
}

func (p position) String() string {
	return fmt.Sprintf("segment %d, size %d", p.segment, p.size)
}

// handover is one hand-over note, checked to be signed by both its keys.
type handover struct {
	old, new string // verifier key texts
	at       position
	where    string // file and byte, for messages
}

// handoverLine is the extension line of a hand-over from old to next.
func handoverLine(old, next string) string {
	return handoverTag + " " + old + " " + next + "\n"
}

// parseHandoverLine reads a checkpoint's extension lines: none, or one
// hand-over line. ok is false when there is none.
func parseHandoverLine(rest []byte) (old, next string, ok bool, err error) {
	if len(rest) == 0 {
		return "", "", false, nil
	}
	f := strings.Fields(strings.TrimSuffix(string(rest), "\n"))
	if len(f) != 3 || f[0] != handoverTag || bytes.Count(rest, []byte("\n")) != 1 {
		return "", "", false, errors.New("unexpected extension lines")
	}
	for _, k := range f[1:] {
		if _, err := note.NewVerifier(k); err != nil {
			return "", "", false, fmt.Errorf("hand-over names a bad verifier key: %w", err)
		}
	}
	if f[1] == f[2] {
		return "", "", false, errors.New("hand-over from a key to itself")
	}
	return f[1], f[2], true, nil
}

// signHandover returns the hand-over note for cp, signed by old and next.
func signHandover(cp log.Checkpoint, old, next *SigningKey) ([]byte, error) {
	text := string(cp.Marshal()) + handoverLine(old.verifier, next.verifier)
	return note.Sign(&note.Note{Text: text}, old.signer, next.signer)
}

// readHandover returns the hand-over in a raw note, if the note is one
// and both keys it names signed it. A note that is not a hand-over
// returns nil, nil.
func readHandover(raw []byte) (*handover, error) {
	if !bytes.Contains(raw, []byte(handoverTag)) {
		return nil, nil
	}
	body, _, _ := bytes.Cut(raw, []byte("\n\n"))
	var cp log.Checkpoint
	rest, err := cp.Unmarshal(append(body, '\n'))
	if err != nil {
		return nil, nil // not a checkpoint: the signature check reports it
	}
	old, next, ok, err := parseHandoverLine(rest)
	if !ok || err != nil {
		return nil, err
	}
	vo, _ := note.NewVerifier(old)
	vn, _ := note.NewVerifier(next)
	n, err := note.Open(raw, note.VerifierList(vo, vn))
	if err != nil {
		return nil, fmt.Errorf("hand-over does not verify: %w", err)
	}
	if len(n.Sigs) != 2 {
		return nil, errors.New("hand-over is not signed by both keys it names")
	}
	_, seg := splitOrigin(cp.Origin)
	return &handover{old: old, new: next, at: position{segment: seg, size: cp.Size}}, nil
}

// keyTerm is one signing key's term: the checkpoints from `from` up to
// and including `to` (open-ended for the last key).
type keyTerm struct {
	key      string
	from, to position
	last     bool
}

func (t keyTerm) covers(p position) bool {
	return !p.less(t.from) && (t.last || !t.to.less(p))
}

// keyChain is the sequence of signing keys a log was signed with, built
// from its hand-overs starting at the key the verifier trusts.
type keyChain struct {
	terms     []keyTerm
	verifiers note.Verifiers
	handovers map[position]handover
	anchor    int // index in terms of the key the caller gave

	// opened remembers what open said about a note's text: the witness
	// file holds the same notes as checkpoints.log, and a signature need
	// not be checked twice. At most maxOpened entries (bounded memory on
	// long logs; beyond it notes are simply checked again).
	mu     sync.Mutex
	opened map[[sha256.Size]byte]openResult
}

type openResult struct {
	cp  log.Checkpoint
	err error
}

// noteChunk is how many notes readCheckpoints checks at once;
// maxOpened bounds keyChain.opened.
const (
	noteChunk = 256
	maxOpened = 1 << 16
)

// openAll is open for each note, on up to GOMAXPROCS goroutines that end
// before it returns.
func (kc *keyChain) openAll(notes []rawNote) []openResult {
	out := make([]openResult, len(notes))
	workers := min(runtime.GOMAXPROCS(0), len(notes))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(notes); i = int(next.Add(1) - 1) {
				out[i] = kc.openCached(notes[i].Text)
			}
		}()
	}
	wg.Wait()
	return out
}

func (kc *keyChain) openCached(raw []byte) openResult {
	sum := sha256.Sum256(raw)
	kc.mu.Lock()
	r, ok := kc.opened[sum]
	kc.mu.Unlock()
	if ok {
		return r
	}
	r.cp, r.err = kc.open(raw)
	kc.mu.Lock()
	if kc.opened == nil {
		kc.opened = map[[sha256.Size]byte]openResult{}
	}
	if len(kc.opened) < maxOpened {
		kc.opened[sum] = r
	}
	kc.mu.Unlock()
	return r
}

// singleKey is the chain of a log never handed over: every checkpoint
// must be signed by v.
func singleKey(key string) (*keyChain, error) {
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	return &keyChain{terms: []keyTerm{{key: key, last: true}}, verifiers: note.VerifierList(v)}, nil
}

// buildKeyChain finds the hand-overs in the given checkpoint files and
// follows them from anchor, back to the first key and forward to the
// last. Unreadable hand-overs and forks (a key handed over twice, or
// taken over twice) are reported to rep; a fork stops the chain there,
// so checkpoints past it fail to verify rather than trust either branch.
func buildKeyChain(anchor string, files []string, rep *Report) (*keyChain, error) {
	found, err := findHandovers(files, rep)
	if err != nil {
		return nil, err
	}
	return chainFrom(anchor, found, rep)
}

// chainFrom is buildKeyChain over hand-overs already found.
func chainFrom(anchor string, found []handover, rep *Report) (*keyChain, error) {
	kc, err := singleKey(anchor)
	if err != nil || len(found) == 0 {
		return kc, err
	}
	byOld, byNew := map[string]handover{}, map[string]handover{}
	forked := map[string]bool{}
	for _, h := range found {
		if o, ok := byOld[h.old]; ok && (o.new != h.new || o.at != h.at) {
			rep.bad(-1, "the signing key %s was handed over twice: at %s (%s) and at %s (%s); a retired key was used again", shortKey(h.old), o.at, o.where, h.at, h.where)
			forked[h.old] = true
		}
		if o, ok := byNew[h.new]; ok && (o.old != h.old || o.at != h.at) {
			rep.bad(-1, "the signing key %s took over twice: at %s (%s) and at %s (%s)", shortKey(h.new), o.at, o.where, h.at, h.where)
			forked[h.new] = true
		}
		byOld[h.old], byNew[h.new] = h, h
	}
	// Back from the anchor to the first key, then forward to the last.
	var chain []handover
	seen := map[string]bool{anchor: true}
	for cur := anchor; len(chain) < maxHandovers; {
		h, ok := byNew[cur]
		if !ok || forked[cur] || seen[h.old] {
			break
		}
		chain = append([]handover{h}, chain...)
		seen[h.old], cur = true, h.old
	}
	kc.anchor = len(chain)
	for cur := anchor; len(chain) < maxHandovers; {
		h, ok := byOld[cur]
		if !ok || forked[cur] || seen[h.new] {
			break
		}
		chain = append(chain, h)
		seen[h.new], cur = true, h.new
	}
	return newKeyChain(chain, kc.anchor, anchor, rep)
}

// newKeyChain turns a sequence of hand-overs into key terms.
func newKeyChain(chain []handover, anchorIdx int, anchor string, rep *Report) (*keyChain, error) {
	kc := &keyChain{handovers: map[position]handover{}, anchor: anchorIdx}
	var vs []note.Verifier
	first := anchor
	if len(chain) > 0 {
		first = chain[0].old
	}
	cur := keyTerm{key: first}
	for i, h := range chain {
		if i > 0 && !chain[i-1].at.less(h.at) {
			rep.bad(-1, "the signing key hand-over at %s (%s) does not come after the one at %s", h.at, h.where, chain[i-1].at)
			break
		}
		cur.to = h.at
		kc.terms = append(kc.terms, cur)
		kc.handovers[h.at] = h
		cur = keyTerm{key: h.new, from: h.at}
	}
	cur.last = true
	kc.terms = append(kc.terms, cur)
	for _, t := range kc.terms {
		v, err := note.NewVerifier(t.key)
		if err != nil {
			return nil, fmt.Errorf("audit: verifier key: %w", err)
		}
		vs = append(vs, v)
	}
	kc.verifiers = note.VerifierList(vs...)
	return kc, nil
}

// findHandovers reads every hand-over in files (missing files are
// skipped: the caller reports them), with duplicates — the same
// hand-over in checkpoints.log and in the witness — collapsed.
func findHandovers(files []string, rep *Report) ([]handover, error) {
	var out []handover
	seen := map[string]bool{}
	for _, path := range files {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", path, err)
		}
		err = readNotes(bufio.NewReader(f), func(raw rawNote) error {
			h, err := readHandover(raw.Text)
			where := fmt.Sprintf("%s byte %d", filepath.Base(path), raw.Offset)
			switch {
			case err != nil:
				rep.bad(-1, "%s: a signing key hand-over that cannot be trusted: %v", where, err)
			case h != nil:
				id := h.old + " " + h.new + " " + h.at.String()
				if !seen[id] {
					seen[id] = true
					h.where = where
					out = append(out, *h)
				}
			}
			return nil
		})
		f.Close()
		var ne *noteError
		if err != nil && !errors.As(err, &ne) {
			return nil, fmt.Errorf("audit: read %s: %w", path, err)
		}
	}
	return out, nil
}

// open checks a checkpoint note against the chain: a signature by the
// key whose term covers its position (both keys for a hand-over, and only
// a hand-over of the chain).
func (kc *keyChain) open(raw []byte) (log.Checkpoint, error) {
	n, cp, rest, err := openNote(raw, kc.verifiers)
	if err != nil {
		return log.Checkpoint{}, err
	}
	_, seg := splitOrigin(cp.Origin)
	at := position{segment: seg, size: cp.Size}
	old, next, isHandover, err := parseHandoverLine(rest)
	if err != nil {
		return log.Checkpoint{}, err
	}
	signed := map[string]bool{}
	for _, s := range n.Sigs {
		signed[s.Name+"+"+fmt.Sprintf("%08x", s.Hash)] = true
	}
	if isHandover {
		if h, ok := kc.handovers[at]; !ok || h.old != old || h.new != next {
			return log.Checkpoint{}, fmt.Errorf("a signing key hand-over at %s that is not part of the key chain", at)
		}
		if !signed[keyID(old)] || !signed[keyID(next)] {
			return log.Checkpoint{}, errors.New("hand-over is not signed by both keys it names")
		}
		return cp, nil
	}
	for _, t := range kc.terms {
		if t.covers(at) && signed[keyID(t.key)] {
			return cp, nil
		}
	}
	return log.Checkpoint{}, fmt.Errorf("signed by a key whose term does not cover %s: %s", at, kc.termsText())
}

// keyID is the "name+hash" prefix of a verifier key text.
func keyID(verifier string) string {
	parts := strings.SplitN(verifier, "+", 3)
	if len(parts) < 2 {
		return verifier
	}
	return parts[0] + "+" + parts[1]
}

// shortKey names a key in messages by its name and hash.
func shortKey(verifier string) string { return keyID(verifier) }

func (kc *keyChain) termsText() string {
	var b strings.Builder
	for i, t := range kc.terms {
		if i > 0 {
			b.WriteString("; ")
		}
		switch {
		case t.last && i == 0:
			fmt.Fprintf(&b, "key %s signs every checkpoint", shortKey(t.key))
		case t.last:
			fmt.Fprintf(&b, "key %s from %s on", shortKey(t.key), t.from)
		default:
			fmt.Fprintf(&b, "key %s up to %s", shortKey(t.key), t.to)
		}
	}
	return b.String()
}

// Keys lists the chain for a report: the verifier keys in order and
// where each took over.
func (kc *keyChain) describe() []string {
	if len(kc.terms) < 2 {
		return nil
	}
	out := make([]string, 0, len(kc.terms))
	for i, t := range kc.terms {
		s := fmt.Sprintf("%s from the start", shortKey(t.key))
		if i > 0 {
			s = fmt.Sprintf("%s from %s (hand-over)", shortKey(t.key), t.from)
		}
		if i == kc.anchor {
			s += ", the key given"
		}
		out = append(out, s)
	}
	return out
}

// checkpointFiles lists every file that holds checkpoints of the log in
// dir: each segment's checkpoints.log and the witness file.
func checkpointFiles(dir, witnessFile string) ([]string, error) {
	closed, err := closedSegments(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, d := range append(closed, dir) {
		files = append(files, filepath.Join(d, checkpointsFile))
	}
	if witnessFile != "" {
		files = append(files, witnessFile)
	}
	return files, nil
}

// HandOver ends the current signing key's term: it signs a hand-over
// checkpoint over everything appended so far with the current key and
// next, writes it to checkpoints.log and the witness, and signs every
// later checkpoint with next. The caller appends the log.key_handover
// event first, so the hand-over covers it, and replaces the key file
// afterwards; audit.pub names next when HandOver returns.
func (l *Log) HandOver(next *SigningKey) ([]byte, error) {
	if next == nil || next.verifier == l.opts.Key.verifier {
		return nil, errors.New("audit: hand-over needs a new signing key")
	}
	reply := make(chan cpResult, 1)
	select {
	case l.cpReq <- cpCall{reply: reply, next: next}:
	case <-l.done:
		return nil, ErrClosed
	}
	r := <-reply
	return r.note, r.err
}

// handOver runs on the writer goroutine.
func (l *Log) handOver(next *SigningKey) ([]byte, error) {
	if l.err != nil {
		return nil, l.err
	}
	size := l.size.Load()
	root := hasher.EmptyRoot()
	if size > 0 {
		var err error
		if root, err = l.rng.GetRootHash(nil); err != nil {
			return nil, l.fail(err)
		}
	}
	signed, err := signHandover(log.Checkpoint{Origin: l.origin, Size: size, Hash: root}, l.opts.Key, next)
	if err != nil {
		return nil, l.fail(fmt.Errorf("sign hand-over: %w", err))
	}
	if err := l.writeCheckpoint(signed); err != nil {
		return nil, err
	}
	if err := replacePublicKey(l.opts.Dir, next); err != nil {
		return nil, l.fail(err)
	}
	l.opts.Key, l.signer = next, next.signer
	l.lastCP, l.lastCPSize, l.quietSize = signed, size, size
	return signed, nil
}

// LastHandover reports the verifier keys of the hand-over that is the
// last checkpoint of the log in dir, if it is one and both keys signed
// it: a rotation interrupted after the hand-over was written finds it
// here and only has to put the new key file in place.
func LastHandover(dir string) (old, next string, ok bool, err error) {
	last, err := lastNote(filepath.Join(dir, checkpointsFile))
	if err != nil || last == nil {
		return "", "", false, err
	}
	h, err := readHandover(last)
	if err != nil || h == nil {
		return "", "", false, err
	}
	return h.old, h.new, true, nil
}

// replacePublicKey points audit.pub at the key that signs from now on.
func replacePublicKey(dir string, k *SigningKey) error {
	tmp := filepath.Join(dir, pubFile+".new")
	os.Remove(tmp)
	if err := writeFileSync(tmp, []byte(k.verifier+"\n"), os.O_EXCL); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, pubFile)); err != nil {
		return fmt.Errorf("audit: replace %s: %w", pubFile, err)
	}
	return syncDir(dir)
}

// FirstKey follows the hand-overs in the log in dir and the witness file
// back from key to the key that signed the log's first checkpoints. A
// copy of the log taken before a rotation (a backup) holds no hand-over
// to the key in use now; verified from the first key, it needs none,
// and a later copy is followed forward through its own hand-overs.
func FirstKey(dir, witnessFile, key string) (string, error) {
	files, err := checkpointFiles(dir, witnessFile)
	if err != nil {
		return "", err
	}
	rep := &Report{FirstBad: -1}
	kc, err := buildKeyChain(key, files, rep)
	if err != nil {
		return "", err
	}
	if !rep.OK() {
		return "", fmt.Errorf("audit: the signing key hand-overs cannot be followed: %s", strings.Join(rep.Problems, "; "))
	}
	return kc.terms[0].key, nil
}

// OpenPeerCheckpoint checks a checkpoint note of another node's log
// against key, the verifier key the node signs with now, and returns its
// body and segment. For a hand-over from key, signed by both keys, next
// is the key that signs the node's later checkpoints.
func OpenPeerCheckpoint(raw []byte, base, key string) (cp log.Checkpoint, segment int, next string, err error) {
	kc, err := singleKey(key)
	if err != nil {
		return log.Checkpoint{}, 0, "", err
	}
	_, cp, rest, err := openNote(raw, kc.verifiers)
	if err != nil {
		return log.Checkpoint{}, 0, "", err
	}
	seg, ok := segmentOf(base, cp.Origin)
	if !ok {
		return log.Checkpoint{}, 0, "", fmt.Errorf("origin %q is not of the log %q", cp.Origin, base)
	}
	old, _, isHandover, err := parseHandoverLine(rest)
	switch {
	case err != nil:
		return log.Checkpoint{}, 0, "", err
	case !isHandover:
		return cp, seg, "", nil
	case old != key:
		return log.Checkpoint{}, 0, "", errors.New("a hand-over from another key than the one in force")
	}
	h, err := readHandover(raw)
	if err != nil {
		return log.Checkpoint{}, 0, "", err
	}
	return cp, seg, h.new, nil
}
