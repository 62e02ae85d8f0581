package vault

import (
	"crypto/subtle"
	"errors"
)

// kekCheckLabel is what a KEK check value wraps: a fixed, labelled
// constant, of another length and label than any data key's plaintext,
// so a check value cannot be passed off for a data key or back.
const kekCheckLabel = "tandem kek check v1"

// KEKCheck returns a check value of kek: the constant kekCheckLabel wrapped
// by it. Stored where several processes meet (the recordings a cluster
// shares), it tells which KEK they agreed on without revealing it: the
// KEK's own authenticated encryption keeps the key out of it, and only a
// process holding the same KEK opens it (MatchesKEKCheck).
func KEKCheck(kek KEK) ([]byte, error) {
	if kek == nil {
		return nil, errors.New("vault: no key-encryption key")
	}
	return kek.Wrap([]byte(kekCheckLabel))
}

// MatchesKEKCheck reports whether check (a KEKCheck value) was made with
// kek. A check another KEK made, or a malformed one, is false; an error
// is only a failure to try (none of the KEKs here has one).
func MatchesKEKCheck(kek KEK, check []byte) (bool, error) {
	if kek == nil {
		return false, errors.New("vault: no key-encryption key")
	}
	pt, err := kek.Unwrap(check)
	if errors.Is(err, ErrKEK) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(pt, []byte(kekCheckLabel)) == 1, nil
}
