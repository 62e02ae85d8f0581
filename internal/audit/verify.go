package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"tandem.dev/tandem/internal/vault"
)

// maxProblems bounds the messages in a Report; a badly damaged log would
// otherwise produce one per record.
const maxProblems = 100

// Report is the result of Verify.
type Report struct {
	Records            uint64   // records checked (readable records that have a leaf hash)
	Checkpoints        int      // checkpoints in checkpoints.log with a valid signature
	WitnessCheckpoints int      // the same for the witness file (every segment's)
	Segments           int      // segments checked: 1, plus one per recovery
	Witnessed          int      // witnessed checkpoints of the current segment the records agree with
	WitnessedUpTo      uint64   // the largest of them
	Diverges           int64    // size of the first witnessed checkpoint the log diverges from; -1 if none
	Gaps               []string // what each recovery lost
	Caveats            []string // what this check could not prove
	LastCheckpoint     uint64   // size of the largest valid checkpoint
	Root               string   // its root hash, base64
	FirstBad           int64    // index of the first record that cannot be trusted; -1 if none
	Problems           []string // what failed; empty when the log verifies
	Warnings           []string // what is unusual but not evidence of tampering
	// SigningKeys lists the checkpoint signing keys in order when the
	// key was handed over (empty when one key signed everything).
	SigningKeys []string
	// Shredded counts, by tenant, class and day, the v2 parts deep
	// verification found destroyed on purpose (their key was shredded).
	Shredded []PartCount
	// WitnessAhead is, for VerifyPrefix, the largest witnessed size of the
	// copy's last segment beyond its records, and WitnessSegmentsAhead the
	// number of witnessed segments the copy does not have: the copy is
	// older than what the witness saw. Zero when it is not behind.
	WitnessAhead         uint64
	WitnessSegmentsAhead int
	prefix               bool
	dropped              int
}

// PartCount is how many parts of one tenant, class and day a check met.
type PartCount struct {
	Tenant string
	Class  vault.Class
	Day    string
	Parts  int
}

func (p PartCount) String() string {
	return fmt.Sprintf("%s %s %s (%d parts)", p.Tenant, p.Class, p.Day, p.Parts)
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// bad records a problem; index < 0 means it names no record.
func (r *Report) bad(index int64, format string, args ...any) {
	if index >= 0 && (r.FirstBad < 0 || index < r.FirstBad) {
		r.FirstBad = index
	}
	if len(r.Problems) >= maxProblems {
		r.dropped++
		r.Problems[maxProblems-1] = fmt.Sprintf("... and %d more problems", r.dropped)
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// diverges notes the first witnessed checkpoint the log disagrees with.
func (r *Report) diverges(size uint64) {
	if r.Diverges < 0 {
		r.Diverges = int64(size)
	}
}

// badRange records a problem somewhere among records [from, to). If a
// record in that range (or before it) is already known bad, that is the
// more precise answer and FirstBad stays.
func (r *Report) badRange(from, to uint64, format string, args ...any) {
	idx := int64(from)
	if r.FirstBad >= 0 && r.FirstBad < int64(to) {
		idx = -1
	}
	r.bad(idx, format, args...)
}

type cpEntry struct {
	Size    uint64
	Root    []byte
	Origin  string
	Offset  int64
	Segment int // from the origin (splitOrigin)
}

// noWitness is what a check without a witness cannot exclude.
const noWitness = "no witness given: a rewrite by someone holding the signing key cannot be excluded"

// Verify checks the log in dir against the verifier key text (see
// PublicKey; pass a copy kept outside dir) and, if witnessFile is not
// empty, against the checkpoints in that file too. It recomputes the
// Merkle tree, checks every record against its leaf hash, its own index
// and its canonical form, every checkpoint's signature, root and size, and
// the consistency of consecutive checkpoints. Report.FirstBad names the
// first record that cannot be trusted. When a record was changed together
// with its leaf hash (so only a checkpoint root disagrees), the damage can
// only be placed between two checkpoints, and FirstBad is the start of
// that range. Verify returns an error only when it cannot read its inputs.
func Verify(dir, verifierKey, witnessFile string) (*Report, error) {
	return verify(dir, verifierKey, witnessFile, false, nil)
}

// VerifyDeep is Verify that also decodes every record and checks that it
// is in canonical form, naming any record the gateway could not have
// written. With keys (the vault) it decrypts every v2 part: a part whose
// key exists but that does not decrypt, or decrypts to fields of another
// class, is a problem (tampering); parts whose key was shredded are
// counted in Report.Shredded, parts without a key are warned about. It is
// several times slower.
func VerifyDeep(dir, verifierKey, witnessFile string, keys KeyReader) (*Report, error) {
	return verify(dir, verifierKey, witnessFile, true, keys)
}

// VerifyPrefix is Verify for a copy of the log taken earlier, such as a
// restored backup: witnessed checkpoints beyond the copy's end are not
// problems (the live log went on after the copy) but are reported in
// Report.WitnessAhead and WitnessSegmentsAhead, so that the caller can
// say the copy is behind rather than accept it as current. Everything the
// copy does hold must agree with the witness as with Verify.
func VerifyPrefix(dir, verifierKey, witnessFile string) (*Report, error) {
	return verifyWith(dir, verifierKey, witnessFile, false, nil, true)
}

func verify(dir, verifierKey, witnessFile string, deep bool, keys KeyReader) (*Report, error) {
	return verifyWith(dir, verifierKey, witnessFile, deep, keys, false)
}

func verifyWith(dir, verifierKey, witnessFile string, deep bool, keys KeyReader, prefix bool) (*Report, error) {
	rep := &Report{FirstBad: -1, Diverges: -1, prefix: prefix}
	closed, err := closedSegments(dir)
	if err != nil {
		return nil, err
	}
	files, err := checkpointFiles(dir, witnessFile)
	if err != nil {
		return nil, err
	}
	kc, err := buildKeyChain(verifierKey, files, rep)
	if err != nil {
		return nil, err
	}
	rep.SigningKeys = kc.describe()
	var wit map[int][]cpEntry
	if witnessFile != "" {
		if wit, err = loadWitness(witnessFile, kc, rep); err != nil {
			return nil, err
		}
	}
	segs := append(closed, dir)
	rep.Segments = len(segs)
	for i, sdir := range segs {
		n := i + 1
		if n == len(segs) {
			err = verifySegment(sdir, n, kc, wit[n], witnessFile != "", deep, keys, rep)
		} else {
			err = verifyClosed(sdir, n, segs[n], kc, wit[n], witnessFile != "", deep, keys, rep)
		}
		if err != nil {
			return nil, err
		}
	}
	for n := range wit {
		if n > len(segs) && prefix {
			rep.WitnessSegmentsAhead = max(rep.WitnessSegmentsAhead, n-len(segs))
		} else if n > len(segs) {
			rep.bad(-1, "witness file: it holds checkpoints of segment %d, but the log has only %d segment(s): segments were removed", n, len(segs))
		}
	}
	switch {
	case witnessFile == "":
		rep.Caveats = append(rep.Caveats, noWitness)
	case rep.Witnessed == 0:
		rep.Caveats = append(rep.Caveats, fmt.Sprintf("the witness holds no checkpoint of the current segment (%d) that the records reach: a rewrite of it by someone holding the signing key cannot be excluded", len(segs)))
	}
	return rep, nil
}

// Proven says, in words, what a verified log has been shown to be.
func (r *Report) Proven() []string {
	if !r.OK() {
		return nil
	}
	out := []string{
		fmt.Sprintf("every one of %d records matches its leaf hash and its position", r.Records),
		fmt.Sprintf("%d checkpoints are signed by the key, consistent with each other and with the records", r.Checkpoints),
	}
	if r.Witnessed > 0 {
		out = append(out, fmt.Sprintf("the log agrees with %d witnessed checkpoints up to size %d", r.Witnessed, r.WitnessedUpTo))
	}
	if r.Segments > 1 {
		out = append(out, fmt.Sprintf("each of %d segments starts at a checkpoint of the one before that the records reproduce", r.Segments))
	}
	return out
}

// verifySegment checks the current segment, number n, in dir in full:
// records, leaves, its checkpoints and the witness's checkpoints of it.
func verifySegment(dir string, n int, kc *keyChain, wcps []cpEntry, haveWitness, deep bool, keys KeyReader, rep *Report) error {
	// Checkpoints first, then leaves, then records: the writer appends in
	// the opposite order, so a live log never shows a checkpoint for
	// records that are not there yet.
	cps, err := loadCheckpoints(filepath.Join(dir, checkpointsFile), "checkpoints.log", kc, rep)
	if err != nil {
		return err
	}
	for _, c := range cps {
		if c.Segment != n {
			rep.bad(-1, "checkpoints.log: the checkpoint at byte %d names origin %q, not segment %d", c.Offset, c.Origin, n)
			break
		}
	}
	if n > 1 {
		if _, err := readSegmentStart(dir, n); err != nil {
			rep.bad(0, "segment %d: %v", n, err)
		}
	}
	rep.Checkpoints = len(cps)

	w := newTreeWalk()
	w.deep, w.keys = deep, keys
	for _, list := range [][]cpEntry{cps, wcps} {
		for i, c := range list {
			w.roots[c.Size] = nil
			if i > 0 && list[i-1].Size < c.Size {
				n, err := proof.Consistency(list[i-1].Size, c.Size)
				if err == nil {
					w.want(n.IDs)
				}
			}
		}
	}
	haveCP := map[uint64]bool{}
	for _, c := range cps {
		haveCP[c.Size] = true
	}

	count, err := w.walkRecords(dir, rep, haveCP)
	if err != nil {
		return err
	}
	rep.Records = count
	if count > 0 && len(cps) == 0 {
		rep.bad(0, "no valid checkpoint in checkpoints.log covers the %d records", count)
	}
	checkList(cps, "checkpoints.log", count, w, rep)
	if haveWitness {
		checkList(wcps, "witness file", count, w, rep)
	}
	for _, c := range cps {
		if c.Size >= rep.LastCheckpoint && c.Size <= count {
			rep.LastCheckpoint, rep.Root = c.Size, rootString(c.Root)
		}
	}
	if rep.LastCheckpoint < count && len(cps) > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d records after the last checkpoint are not yet covered by a signature", count-rep.LastCheckpoint))
	}
	return nil
}

// loadCheckpoints reads a checkpoint file and returns the checkpoints whose
// signature verifies, reporting the others.
func loadCheckpoints(path, what string, kc *keyChain, rep *Report) ([]cpEntry, error) {
	out, err := readCheckpoints(path, what, kc, rep)
	if err != nil {
		return nil, err
	}
	checkOrder(out, what, rep)
	return out, nil
}

// loadWitness reads the witness file, which holds the checkpoints of
// every segment, and returns them by segment.
func loadWitness(path string, kc *keyChain, rep *Report) (map[int][]cpEntry, error) {
	all, err := readCheckpoints(path, "witness file", kc, rep)
	if err != nil {
		return nil, err
	}
	rep.WitnessCheckpoints = len(all)
	bySeg := map[int][]cpEntry{}
	for _, c := range all {
		if base, _ := splitOrigin(c.Origin); base != mustBase(all) {
			rep.bad(-1, "witness file: checkpoint at byte %d has origin %q, earlier ones belong to %q", c.Offset, c.Origin, mustBase(all))
			continue
		}
		bySeg[c.Segment] = append(bySeg[c.Segment], c)
	}
	for n, list := range bySeg {
		checkOrder(list, fmt.Sprintf("witness file (segment %d)", n), rep)
	}
	return bySeg, nil
}

func mustBase(all []cpEntry) string {
	base, _ := splitOrigin(all[0].Origin)
	return base
}

// readCheckpoints reads a checkpoint file and returns the checkpoints whose
// signature verifies, reporting the others.
func readCheckpoints(path, what string, kc *keyChain, rep *Report) ([]cpEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", what, err)
	}
	defer f.Close()
	var out []cpEntry
	var lastGood uint64
	n := 0
	// Signatures are checked a chunk at a time on every CPU (an Ed25519
	// check costs as much as hashing a few hundred records), then reported
	// in file order, so the report reads as if checked one by one.
	var chunk []rawNote
	report := func() {
		for i, res := range kc.openAll(chunk) {
			raw := chunk[i]
			n++
			if res.err != nil {
				rep.bad(int64(lastGood), "%s: checkpoint %d (byte %d) does not verify: %v", what, n, raw.Offset, res.err)
				continue
			}
			cp := res.cp
			_, seg := splitOrigin(cp.Origin)
			out = append(out, cpEntry{Size: cp.Size, Root: cp.Hash, Origin: cp.Origin, Offset: raw.Offset, Segment: seg})
			lastGood = max(lastGood, cp.Size)
		}
		clear(chunk)
		chunk = chunk[:0]
	}
	err = readNotes(bufio.NewReader(f), func(raw rawNote) error {
		if chunk = append(chunk, raw); len(chunk) == noteChunk {
			report()
		}
		return nil
	})
	report()
	if err := reportNotesEnd(err, what, lastGood, rep); err != nil {
		return nil, err
	}
	return out, nil
}

// reportNotesEnd reports how readNotes ended a checkpoint file: a torn
// note is a warning, anything else that is not a note a problem.
func reportNotesEnd(err error, what string, lastGood uint64, rep *Report) error {
	var ne *noteError
	switch {
	case errors.As(err, &ne) && ne.Torn:
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: unfinished checkpoint at byte %d (a crash not yet recovered)", what, ne.Offset))
	case errors.As(err, &ne):
		rep.bad(int64(lastGood), "%s: %v", what, ne)
	case err != nil:
		return fmt.Errorf("audit: %s: %w", what, err)
	}
	return nil
}

// checkOrder reports checkpoints that shrink the log or change its origin.
func checkOrder(list []cpEntry, what string, rep *Report) {
	for i := 1; i < len(list); i++ {
		prev, cp := list[i-1], list[i]
		if cp.Size < prev.Size {
			rep.bad(int64(cp.Size), "%s: checkpoint at byte %d shrinks the log from %d to %d records", what, cp.Offset, prev.Size, cp.Size)
		}
		if cp.Origin != prev.Origin {
			rep.bad(-1, "%s: checkpoint at byte %d has origin %q, earlier ones %q", what, cp.Offset, cp.Origin, prev.Origin)
		}
	}
}

// checkList compares checkpoints with the recomputed tree.
func checkList(list []cpEntry, what string, count uint64, w *treeWalk, rep *Report) {
	witness := what == "witness file"
	var good uint64 // the largest size up to which a checkpoint matched
	for i, c := range list {
		switch root := w.roots[c.Size]; {
		case c.Size > count && witness && rep.prefix:
			rep.WitnessAhead = max(rep.WitnessAhead, c.Size)
		case c.Size > count && witness:
			rep.diverges(c.Size)
			rep.bad(int64(count), "witness file: the log diverges from the witnessed checkpoint at size %d: only %d records are present (records %d.. deleted or truncated)", c.Size, count, count)
		case c.Size > count:
			rep.bad(int64(count), "%s: checkpoint at byte %d covers %d records but only %d are present (records %d.. deleted or truncated)", what, c.Offset, c.Size, count, count)
		case !bytes.Equal(root, c.Root) && witness:
			rep.diverges(c.Size)
			rep.badRange(good, c.Size, "witness file: the log diverges from the witnessed checkpoint at size %d: a record in [%d, %d) was changed, dropped or inserted", c.Size, good, c.Size)
		case !bytes.Equal(root, c.Root):
			rep.badRange(good, c.Size, "%s: checkpoint at byte %d (size %d) does not match the records: a record in [%d, %d) was changed", what, c.Offset, c.Size, good, c.Size)
		default:
			good = max(good, c.Size)
			if witness {
				rep.Witnessed++
				rep.WitnessedUpTo = max(rep.WitnessedUpTo, c.Size)
			}
		}
		if c.Size > count {
			continue
		}
		if i == 0 {
			continue
		}
		p := list[i-1]
		if p.Size > c.Size || c.Size > count {
			continue
		}
		cons, err := w.consistency(p.Size, c.Size)
		if err == nil {
			err = proof.VerifyConsistency(hasher, p.Size, c.Size, cons, p.Root, c.Root)
		}
		var mismatch proof.RootMismatchError
		if errors.As(err, &mismatch) {
			rep.badRange(min(p.Size, good), c.Size, "%s: checkpoints of size %d and %d are not consistent", what, p.Size, c.Size)
		} else if err != nil {
			rep.badRange(min(p.Size, good), c.Size, "%s: checkpoints of size %d and %d are not consistent: %v", what, p.Size, c.Size, err)
		}
	}
}

// treeWalk recomputes the Merkle tree from leaf hashes, keeping the roots
// at chosen sizes and the hashes of chosen nodes for proofs.
type treeWalk struct {
	deep  bool      // decode every record and check its canonical form
	keys  KeyReader // decrypt v2 parts (deep only); nil: leave them
	rng   *compact.Range
	roots map[uint64][]byte // size -> root; keys chosen in advance
	nodes map[compact.NodeID][]byte
	// wanted holds, level by level, the indices of the nodes in nodes
	// not yet computed, in increasing order, and rootSizes the sizes in
	// roots not yet reached: the tree computes each level's nodes, and
	// reaches the sizes, in that order, so one comparison with the head
	// of a list replaces a map lookup per node and per leaf. Made from
	// nodes and roots at the first add (prepared), so both are filled
	// before the walk.
	wanted    [][]uint64
	rootSizes []uint64
	prepared  bool

	slab   hashSlab
	leaves leafPair
	parts  map[partKey]int // parts not read, by reason, tenant, class and day
}

type partKey struct {
	reason, tenant, day string
	class               vault.Class
}

func newTreeWalk() *treeWalk {
	w := &treeWalk{
		roots: map[uint64][]byte{},
		nodes: map[compact.NodeID][]byte{},
	}
	w.rng = (&compact.RangeFactory{Hash: w.slab.hashChildren}).NewEmptyRange(0)
	return w
}

// hashSlab hands out the tree's hashes as 32-byte pieces of larger blocks:
// allocations, one per leaf and three per inner node, were about a sixth
// of a keyless verification's time. The compact range holds on to at most
// one hash per level, so at most that many blocks stay alive; the few
// hashes kept for longer (treeWalk.nodes, treeWalk.roots) are copied out.
type hashSlab struct{ free []byte }

const slabHashes = 128

func (s *hashSlab) put(h []byte) []byte {
	if len(s.free) < len(h) {
		s.free = make([]byte, max(slabHashes*sha256.Size, len(h)))
	}
	out := s.free[:len(h):len(h)]
	copy(out, h)
	s.free = s.free[len(h):]
	return out
}

// leafPair holds the last two leaf hashes appended to a compact range
// that starts at 0, by the parity of their index: the range holds a leaf
// hash only until the next one is appended (an even leaf waits for its
// sibling, an odd one is merged at once), so two buffers do for all and
// the slab is left to inner nodes, half of what it handed out.
type leafPair struct {
	buf  [2][sha256.Size]byte
	next int
}

func (p *leafPair) put(h []byte) []byte {
	b := p.buf[p.next][:]
	p.next ^= 1
	copy(b, h)
	return b
}

// hashChildren is hasher.HashChildren (RFC 6962: SHA-256 over 0x01, left,
// right) without its three allocations.
func (s *hashSlab) hashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return hasher.HashChildren(l, r)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	sum := sha256.Sum256(b[:])
	return s.put(sum[:])
}

func (w *treeWalk) want(ids []compact.NodeID) {
	for _, id := range ids {
		w.nodes[id] = nil
	}
	w.prepared = false
}

// prepare makes wanted and rootSizes from nodes and roots; what the range
// has passed already is dropped as the walk goes on.
func (w *treeWalk) prepare() {
	w.wanted = w.wanted[:0]
	for id, h := range w.nodes {
		if h != nil || id.Level >= 64 { // no tree is that high
			continue
		}
		for uint(len(w.wanted)) <= id.Level {
			w.wanted = append(w.wanted, nil)
		}
		w.wanted[id.Level] = append(w.wanted[id.Level], id.Index)
	}
	for _, l := range w.wanted {
		slices.Sort(l)
	}
	w.rootSizes = w.rootSizes[:0]
	w.rootSizes = slices.AppendSeq(w.rootSizes, maps.Keys(w.roots))
	slices.Sort(w.rootSizes)
	w.prepared = true
}

func (w *treeWalk) visit(id compact.NodeID, h []byte) {
	if id.Level >= uint(len(w.wanted)) {
		return
	}
	l := w.wanted[id.Level]
	if len(l) == 0 || l[0] > id.Index {
		// Most nodes: nothing to keep. No store back either, which
		// would cost a write barrier per node while the GC runs.
		return
	}
	for len(l) > 0 && l[0] < id.Index {
		l = l[1:]
	}
	if len(l) > 0 && l[0] == id.Index {
		l = l[1:]
		if v, ok := w.nodes[id]; ok && v == nil {
			w.nodes[id] = bytes.Clone(h) // not the slab's: see hashSlab
		}
	}
	w.wanted[id.Level] = l
}

// add appends one leaf hash; it keeps a copy, so the caller may reuse leaf.
func (w *treeWalk) add(leaf []byte) error {
	if !w.prepared {
		w.prepare()
	}
	kept := w.slab.put
	if len(leaf) == sha256.Size {
		kept = w.leaves.put
	}
	if err := w.rng.Append(kept(leaf), w.visit); err != nil {
		return err
	}
	end := w.rng.End()
	for len(w.rootSizes) > 0 && w.rootSizes[0] < end {
		w.rootSizes = w.rootSizes[1:]
	}
	if len(w.rootSizes) > 0 && w.rootSizes[0] == end {
		w.rootSizes = w.rootSizes[1:]
		root, err := w.rng.GetRootHash(nil)
		if err != nil {
			return err
		}
		w.roots[end] = bytes.Clone(root) // not the slab's: see hashSlab
	}
	return nil
}

func (w *treeWalk) start() {
	if _, ok := w.roots[0]; ok {
		w.roots[0] = hasher.EmptyRoot()
	}
}

func (w *treeWalk) hashes(n proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h := w.nodes[id]
		if h == nil {
			return nil, fmt.Errorf("node %+v not computed", id)
		}
		hs[i] = h
	}
	return n.Rehash(hs, hasher.HashChildren)
}

func (w *treeWalk) consistency(size1, size2 uint64) ([][]byte, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return w.hashes(n)
}

// Verification hands records to its workers in batches of batchRecords
// records, or fewer that hold batchBytes or more. It reads records.log in
// blocks of recordBlock bytes, which the batches' payloads point into.
const (
	batchRecords = 256
	batchBytes   = 1 << 20
	recordBlock  = 128 << 10
)

// batch is a run of consecutive records with their leaf hashes and what
// a worker found checking them.
type batch struct {
	first    uint64   // index of the first record
	payloads [][]byte // in the reader's blocks
	bytes    int      // their total length
	leaves   []byte   // the leaf hashes, 32 bytes each
	checks   []recordCheck
	retired  [][]byte      // blocks the reader left while this batch was filled
	done     chan struct{} // the worker filled checks
}

func (b *batch) leaf(j int) []byte { return b.leaves[sha256.Size*j : sha256.Size*(j+1)] }

// walkRecords streams leaves.bin and records.log side by side, checks each
// record against its leaf and its position, and feeds the leaves to the
// tree. It returns how many records it checked.
//
// The checks of a record on its own (its ciphertexts' hashes, its leaf
// hash, its index: most of the work) run on GOMAXPROCS workers, a batch
// of records at a time, while this goroutine reads the files, feeds the
// tree and reports; it reports each batch, record by record, in order,
// so the report (FirstBad, the problems and their order) is the one a
// walk record by record gives. Every goroutine it starts has ended when
// it returns.
func (w *treeWalk) walkRecords(dir string, rep *Report, haveCP map[uint64]bool) (uint64, error) {
	lf, err := os.Open(filepath.Join(dir, leavesFile))
	if err != nil {
		return 0, fmt.Errorf("audit: open leaves: %w", err)
	}
	defer lf.Close()
	rf, err := os.Open(filepath.Join(dir, recordsFile))
	if err != nil {
		return 0, fmt.Errorf("audit: open records: %w", err)
	}
	defer rf.Close()
	lr := bufio.NewReaderSize(lf, 1<<16)
	fr := newBlockFrames(rf, recordBlock)
	w.start()
	defer w.reportParts(rep)

	workers := runtime.GOMAXPROCS(0)
	depth := 2 * workers // batches in flight; sends to work never block
	work := make(chan *batch, depth)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c checker
			for b := range work {
				for j, p := range b.payloads {
					b.checks[j] = c.check(p, b.leaf(j), w.deep)
				}
				b.done <- struct{}{}
			}
		}()
	}
	defer wg.Wait()
	defer close(work)

	var inFlight, spare []*batch
	cur := &batch{done: make(chan struct{}, 1)}
	send := func() {
		// Blocks retired by now hold no record of a later batch: they
		// can be reused once this batch is reported.
		cur.retired = fr.takeRetired(cur.retired)
		if len(cur.payloads) == 0 {
			return
		}
		cur.checks = slices.Grow(cur.checks[:0], len(cur.payloads))[:len(cur.payloads)]
		work <- cur
		inFlight = append(inFlight, cur)
		next := &batch{done: make(chan struct{}, 1)}
		if n := len(spare); n > 0 {
			next, spare = spare[n-1], spare[:n-1]
		}
		next.first = cur.first + uint64(len(cur.payloads))
		clear(next.payloads)
		next.payloads, next.bytes, next.leaves = next.payloads[:0], 0, next.leaves[:0]
		cur = next
	}
	// finish reports the oldest batches in flight and adds their leaves
	// to the tree until at most keep are left.
	finish := func(keep int) error {
		for len(inFlight) > keep {
			b := inFlight[0]
			<-b.done
			for j, p := range b.payloads {
				w.report(b.first+uint64(j), p, &b.checks[j], rep, haveCP)
				if err := w.add(b.leaf(j)); err != nil {
					return err
				}
			}
			fr.release(b.retired)
			clear(b.retired)
			b.retired = b.retired[:0]
			inFlight = slices.Delete(inFlight, 0, 1)
			spare = append(spare, b)
		}
		return nil
	}

	for i := uint64(0); ; i++ {
		// The leaf is read where it lies in lr's buffer (valid until the
		// next read from lr) rather than copied out first.
		leaf, lerr := lr.Peek(sha256.Size)
		switch {
		case len(leaf) == sha256.Size:
			lerr = nil
			_, _ = lr.Discard(sha256.Size) // buffered: Peek returned it
		case lerr == nil || lerr == io.EOF:
			lerr = io.EOF // short: the files end together or leaves.bin is cut
		default:
			return 0, fmt.Errorf("audit: read leaves: %w", lerr)
		}
		payload, ferr := fr.next()
		if ferr != nil || lerr != nil {
			stop, err := walkEnd(i, ferr, lerr, lr, rep)
			if err != nil {
				return 0, err
			}
			send()
			if err := finish(0); err != nil {
				return 0, err
			}
			stop()
			return i, nil
		}
		cur.payloads = append(cur.payloads, payload)
		cur.bytes += len(payload)
		cur.leaves = append(cur.leaves, leaf...)
		if len(cur.payloads) == batchRecords || cur.bytes >= batchBytes {
			send()
			if err := finish(depth - 1); err != nil {
				return 0, err
			}
		}
	}
}

// walkEnd says what ends walkRecords at record i, given the errors of
// reading its frame (ferr) and its leaf hash (lerr), not both nil: stop
// reports it once the records before i are reported; err ends the walk
// with an error instead. It is apart from the loop so that what the
// closures hold is allocated only once, at the end.
func walkEnd(i uint64, ferr, lerr error, lr *bufio.Reader, rep *Report) (stop func(), err error) {
	var fe *frameError
	switch {
	case ferr == io.EOF && lerr != nil:
		return func() {}, nil
	case ferr == io.EOF:
		extra := 1 + remaining(lr)/32
		return func() {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d leaf hashes past the last record (a crash not yet recovered, or records removed after the last checkpoint)", extra))
		}, nil
	case errors.As(ferr, &fe) && fe.Torn:
		return func() {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("records.log ends in an unfinished record at byte %d (a crash not yet recovered, or a write in flight)", fe.Offset))
		}, nil
	case errors.As(ferr, &fe):
		return func() { rep.bad(int64(i), "record %d: %v; later records cannot be read", i, fe) }, nil
	case ferr != nil:
		return nil, fmt.Errorf("audit: read records: %w", ferr)
	}
	return func() {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("records from %d on have no leaf hash yet (a crash not yet recovered, or a write in flight)", i))
	}, nil
}

// recordCheck is what the checks of one record that need only the record
// and its leaf hash found: a worker fills it, the walk reports it.
type recordCheck struct {
	leafErr error // the leaf form could not be made
	leafBad bool  // the record does not match its leaf hash
	isCP    bool  // a log.checkpoint record
	fast    bool  // idx was read without decoding the record
	idxOK   bool
	idx     uint64
}

// check checks a record against its leaf hash and reads what checkRecord
// needs from it.
func (c *checker) check(payload, leaf []byte, deep bool) recordCheck {
	var r recordCheck
	match, err := c.leafMatches(payload, leaf)
	r.leafErr, r.leafBad = err, err == nil && !match
	r.readIndex(payload, deep)
	return r
}

// report reports what check found about record i: whether it matches its
// leaf hash (over the record itself in v1, over its leaf form in v2, whose
// ciphertexts must match their ct_sha256), then what checkRecord checks.
func (w *treeWalk) report(i uint64, payload []byte, c *recordCheck, rep *Report, haveCP map[uint64]bool) {
	switch {
	case c.leafErr != nil:
		rep.bad(int64(i), "record %d: %v", i, c.leafErr)
	case c.leafBad:
		rep.bad(int64(i), "record %d does not match its leaf hash", i)
	}
	w.reportRecord(i, payload, c, rep, haveCP)
}

// checker holds one goroutine's scratch for checking records against
// their leaf hashes, reused from record to record so that the check
// allocates nothing.
type checker struct {
	former leafFormer
	form   []byte // hasher.HashLeaf's input: the leaf prefix, then the leaf form
}

// leafMatches reports whether payload matches leaf: hasher.HashLeaf of the
// record (v1) or of its leaf form (v2), whose ciphertexts must match their
// ct_sha256 first.
func (c *checker) leafMatches(payload, leaf []byte) (bool, error) {
	// The prefix and the leaf form are hashed as one slice, by value:
	// cheaper than writing them to a hash.Hash one after the other.
	c.form = append(c.form[:0], rfc6962.RFC6962LeafHashPrefix)
	if isV2(payload) {
		var err error
		if c.form, err = c.former.appendForm(c.form, payload, true); err != nil {
			return false, err
		}
	} else {
		c.form = append(c.form, payload...)
	}
	sum := sha256.Sum256(c.form)
	return bytes.Equal(sum[:], leaf), nil
}

// checkpointType is how a log.checkpoint record's type appears in its
// canonical bytes. Inside an attribute value the quotes would be escaped,
// so the bytes cannot occur there.
var (
	checkpointType   = []byte(`"type":"` + string(LogCheckpoint) + `"`)
	checkpointTypeV2 = append(bytes.Clone(checkpointType), v2Suffix...)
)

// checkRecord checks what the leaf hash cannot: that the record claims its
// own position, and that log.checkpoint records agree with the checkpoint
// file. Tampering shows in the leaf hashes and the signed roots; the full
// canonical decode is left to Deep verification, which is several times
// slower (M10 needs the fast path to keep up with a 90-day log).
//
// A v2 log.checkpoint record keeps its size and root encrypted, but the
// writer appends it right after signing the checkpoint it names, so its
// index is that checkpoint's size: without keys, that is what is checked.
func (w *treeWalk) checkRecord(i uint64, payload []byte, rep *Report, haveCP map[uint64]bool) {
	var c recordCheck
	c.readIndex(payload, w.deep)
	w.reportRecord(i, payload, &c, rep, haveCP)
}

// readIndex reads what checkRecord can without decoding the record: is it
// a log.checkpoint, and its index when no decode is needed.
func (c *recordCheck) readIndex(payload []byte, deep bool) {
	if isV2(payload) {
		c.isCP = bytes.HasSuffix(payload, checkpointTypeV2) // the type comes last but "v"
	} else {
		c.isCP = bytes.Contains(payload, checkpointType)
	}
	if !deep && (!c.isCP || isV2(payload)) {
		c.fast = true
		c.idx, c.idxOK = fastIndex(payload)
	}
}

// reportRecord is checkRecord with what readIndex found in c.
func (w *treeWalk) reportRecord(i uint64, payload []byte, c *recordCheck, rep *Report, haveCP map[uint64]bool) {
	if c.fast {
		switch {
		case !c.idxOK:
			rep.bad(int64(i), "record %d: no index", i)
		case c.idx != i:
			rep.bad(int64(i), "record at position %d claims index %d (records deleted, inserted or reordered)", i, c.idx)
		case c.isCP:
			w.checkCheckpointAt(i, i, rep, haveCP)
		}
		return
	}
	idx, e, unread, err := DecodeRecordKeys(payload, w.keys)
	switch {
	case err != nil:
		rep.bad(int64(i), "record %d: %v", i, err)
	case idx != i:
		rep.bad(int64(i), "record at position %d claims index %d (records deleted, inserted or reordered)", i, idx)
	case e.Type == LogCheckpoint && e.Attrs == nil && isV2(payload):
		w.checkCheckpointAt(i, i, rep, haveCP)
	case e.Type == LogCheckpoint:
		w.checkCheckpointEvent(i, e, rep, haveCP)
	}
	if err == nil {
		w.countParts(i, tenantOf(e), unread, rep)
	}
}

func tenantOf(e Event) string {
	if e.Tenant == "" {
		return GatewayTenant
	}
	return e.Tenant
}

// countParts notes the parts deep verification could not read: a part
// that does not decrypt with a key that exists is a problem at once.
func (w *treeWalk) countParts(i uint64, tenant string, unread []Unreadable, rep *Report) {
	for _, u := range unread {
		if u.Reason == ReasonCorrupt {
			rep.bad(int64(i), "record %d: %s part (%s %s, key %s): %v", i, u.Class, tenant, u.Day, u.Key, u.err)
			continue
		}
		if w.parts == nil {
			w.parts = map[partKey]int{}
		}
		w.parts[partKey{reason: u.Reason, tenant: tenant, day: u.Day, class: u.Class}]++
	}
}

// reportParts turns the counts of unread parts into Report.Shredded and
// one warning per tenant, class, day and reason.
func (w *treeWalk) reportParts(rep *Report) {
	keys := slices.SortedFunc(maps.Keys(w.parts), func(a, b partKey) int {
		return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.class, b.class), cmp.Compare(a.day, b.day), cmp.Compare(a.reason, b.reason))
	})
	for _, k := range keys {
		c := PartCount{Tenant: k.tenant, Class: k.class, Day: k.day, Parts: w.parts[k]}
		if k.reason == ReasonShredded {
			rep.Shredded = append(rep.Shredded, c)
			continue
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("parts not readable (%s): %s", k.reason, c))
	}
}

// fastIndex reads the top-level "index" number of a canonical record
// without decoding it. Attribute values are strings, so the first
// `"index":` followed by a digit is the top-level field.
func fastIndex(p []byte) (uint64, bool) {
	key := []byte(`"index":`)
	for off := 0; ; {
		j := bytes.Index(p[off:], key)
		if j < 0 {
			return 0, false
		}
		k := off + j + len(key)
		if k < len(p) && p[k] >= '0' && p[k] <= '9' {
			// strconv.ParseUint of the digits, without making them a
			// string (an allocation per record): on overflow, its
			// largest value and false.
			var v uint64
			for ; k < len(p) && p[k] >= '0' && p[k] <= '9'; k++ {
				d := uint64(p[k] - '0')
				if v > (math.MaxUint64-d)/10 {
					return math.MaxUint64, false
				}
				v = v*10 + d
			}
			return v, true
		}
		off = k
	}
}

// checkCheckpointEvent compares a log.checkpoint event with the checkpoint
// file and the tree: a checkpoint the log says it published must still be
// in checkpoints.log, with the root the log recorded.
func (w *treeWalk) checkCheckpointEvent(i uint64, e Event, rep *Report, haveCP map[uint64]bool) {
	size, err := strconv.ParseUint(e.Attrs["size"], 10, 64)
	if err != nil || size > i {
		rep.bad(int64(i), "record %d: log.checkpoint event with a bad size %q", i, e.Attrs["size"])
		return
	}
	if !w.checkCheckpointAt(i, size, rep, haveCP) {
		return
	}
	if root := w.roots[size]; root != nil && rootString(root) != e.Attrs["root"] {
		rep.bad(-1, "record %d records root %s for size %d, the records give %s", i, e.Attrs["root"], size, rootString(root))
	}
}

// checkCheckpointAt reports whether the checkpoint of size that record i
// says was published is in checkpoints.log.
func (w *treeWalk) checkCheckpointAt(i, size uint64, rep *Report, haveCP map[uint64]bool) bool {
	if !haveCP[size] {
		rep.bad(-1, "record %d says a checkpoint of size %d was published, but checkpoints.log has no valid checkpoint of that size", i, size)
		return false
	}
	return true
}

func remaining(r *bufio.Reader) int64 {
	n, _ := io.Copy(io.Discard, r)
	return n
}
