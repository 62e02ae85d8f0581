package cosign

import (
	"testing"

	"tandem.dev/tandem/internal/audit"
)

// FuzzCosign: whatever a node (or someone on the store) submits, the
// witness does not panic and co-signs only notes its peer's key signed.
func FuzzCosign(f *testing.F) {
	key, _, err := auditKey()
	if err != nil {
		f.Fatal(err)
	}
	good, err := key.SignNote(origin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, uint64(0), []byte{})
	f.Add([]byte(origin+"\n3\nAAAA\n\n\u2014 x y\n"), uint64(1), make([]byte, 32))
	f.Fuzz(func(t *testing.T, raw []byte, from uint64, proof []byte) {
		w, err := NewWitness(t.TempDir(), fuzzWitnessKey, []Peer{{Node: "a", Origin: origin, Key: key.Verifier()}})
		if err != nil {
			t.Fatal(err)
		}
		var prf [][]byte
		for len(proof) >= 32 {
			prf, proof = append(prf, proof[:32]), proof[32:]
		}
		out, err := w.Cosign(Submission{Node: "a", Note: raw, From: from, Proof: prf})
		if err == nil && len(out) <= len(raw) {
			t.Fatalf("co-signed without adding a signature")
		}
	})
}

// The fuzzer's keys, generated once per process: notes in the corpus
// signed by an earlier process's key only exercise the refusals.
var fuzzWitnessKey, fuzzLogKey = mustGenerate("tandem/witness/b"), mustGenerate(origin)

func mustGenerate(name string) string {
	_, text, err := audit.GenerateSigningKey(name)
	if err != nil {
		panic(err)
	}
	return string(text)
}

func auditKey() (*audit.SigningKey, string, error) {
	k, err := audit.ParseSigningKey([]byte(fuzzLogKey))
	return k, fuzzLogKey, err
}
