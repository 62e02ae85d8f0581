package auditcli

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/cosign"
)

// Cluster is what a node's configuration says about its peers' logs and
// the cosignatures (cluster in the configuration).
type Cluster struct {
	Node       string
	WitnessKey string // this node's cosigning verifier key
	// Peers maps each peer to its audit verifier key and to this node's
	// co-signed copy of its checkpoints.
	Peers map[string]PeerLog
	// Cosigned returns, by peer, the latest checkpoint of this node's log
	// that the peer co-signed (from the shared store), and the peers'
	// cosigning verifier keys.
	Cosigned func() (notes map[string][]byte, keys map[string]string, err error)
	// PeerKeys opens a peer's vault (in its data directory) with this
	// node's key-encryption key, for audit show --node-log.
	PeerKeys func(dataDir string) (audit.KeyReader, error)
}

// PeerLog is a peer as this node knows it.
type PeerLog struct {
	AuditKey string
	Copy     string
}

// verifyCluster checks, after this node's own log: that every peer
// co-signed a checkpoint this log agrees with, and every peer's log given
// with --node-log against this node's co-signed copy of its checkpoints.
// It prints a line per check and reports whether all held.
func verifyCluster(out io.Writer, c *Cluster, dir, key string, nodeLogs map[string]string) (bool, error) {
	ok := true
	if c.Cosigned != nil {
		notes, keys, err := c.Cosigned()
		if err != nil {
			return false, err
		}
		for _, peer := range slices.Sorted(maps.Keys(notes)) {
			good, why, err := checkCosigned(dir, key, notes[peer], keys[peer])
			if err != nil {
				return false, err
			}
			ok = ok && good
			fmt.Fprintf(out, "co-signed by %-8s %s\n", peer+":", why)
		}
	}
	for _, node := range slices.Sorted(maps.Keys(nodeLogs)) {
		p, known := c.Peers[node]
		if !known {
			return false, fmt.Errorf("--node-log %s: not a peer in cluster.peers", node)
		}
		good, why, err := checkPeerLog(nodeLogs[node], p, c.WitnessKey)
		if err != nil {
			return false, err
		}
		ok = ok && good
		fmt.Fprintf(out, "node %-13s %s\n", node+":", why)
	}
	return ok, nil
}

// checkCosigned checks this node's log against the latest checkpoint a
// peer co-signed, and the peer's cosignature on it.
func checkCosigned(dir, key string, note []byte, peerKey string) (bool, string, error) {
	tmp, err := os.CreateTemp("", "tandem-cosigned-*")
	if err != nil {
		return false, "", err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(note)
	if err := tmp.Close(); werr != nil || err != nil {
		return false, "", fmt.Errorf("write %s: %v %v", tmp.Name(), werr, err)
	}
	cr, err := cosign.VerifyCopy(tmp.Name(), peerKey)
	if err != nil {
		return false, "", err
	}
	if !cr.OK() {
		return false, "FAILED: the cosignature does not verify: " + strings.Join(cr.Problems, "; "), nil
	}
	rep, err := audit.Verify(dir, key, tmp.Name())
	if err != nil {
		return false, "", err
	}
	if !rep.OK() {
		return false, "FAILED: this log does not agree with the checkpoint the peer co-signed: " + strings.Join(rep.Problems, "; "), nil
	}
	return true, fmt.Sprintf("OK, up to size %d", rep.WitnessedUpTo), nil
}

// checkPeerLog checks a peer's log directory against this node's
// co-signed copy of its checkpoints.
func checkPeerLog(dataDir string, p PeerLog, witnessKey string) (bool, string, error) {
	cr, err := cosign.VerifyCopy(p.Copy, witnessKey)
	if err != nil {
		return false, "", err
	}
	if !cr.OK() {
		return false, "FAILED: this node's copy: " + strings.Join(cr.Problems, "; "), nil
	}
	dir := filepath.Join(dataDir, "audit")
	if _, err := os.Stat(filepath.Join(dir, "records.log")); err != nil {
		dir = dataDir // the audit directory itself was given
	}
	rep, err := audit.Verify(dir, p.AuditKey, p.Copy)
	if err != nil {
		return false, "", err
	}
	if !rep.OK() {
		return false, "FAILED: " + strings.Join(rep.Problems, "; "), nil
	}
	return true, fmt.Sprintf("OK, %d records, agrees with %d co-signed checkpoints up to size %d", rep.Records, rep.Witnessed, rep.WitnessedUpTo), nil
}
