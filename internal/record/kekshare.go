package record

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"tandem.dev/tandem/internal/vault"
)

// Every gateway of a cluster that keeps recordings in the database must
// hold the same KEK: each leaves copies of its data keys in
// recording_keys, wrapped by its KEK, for the others to read with theirs.
// The table recording_kek (store migration 14) holds a check value of the
// KEK those copies are wrapped with (vault.KEKCheck), written by the first
// gateway that checks and by each rotation; a gateway whose KEK does not
// open it refuses to start (CheckKEK). A rotation (RewrapKeys) rewraps the
// copies in the database, not only the gateway's own vault.

// ErrOtherKEK: the gateway's KEK is not the one the cluster's recordings
// are wrapped with.
var ErrOtherKEK = errors.New("not the key-encryption key the cluster's recordings are wrapped with")

// Bounds of a KEK check and of a rotation of the shared copies.
const (
	// keysRewrapBatch is how many copies one transaction of a rotation
	// rewraps: a batch holds the keys' lock (recordings that copy a new
	// key wait for it) for a bounded time, and an interrupted rotation
	// loses at most one batch's work.
	keysRewrapBatch = 256
	// keysRewrapTimeout bounds one batch's transaction; an age KEK costs
	// an X25519 (or ML-KEM) operation per unwrap and per wrap.
	keysRewrapTimeout = time.Minute
	// kekSample is how many copies the first check opens when no check
	// value is stored yet (a cluster from before the check): a KEK that
	// opens none of the newest copies is not the cluster's.
	kekSample = 16
	// neitherNamed is how many copies that open with neither KEK an
	// error names; it counts them all.
	neitherNamed = 3
)

// storedKEKCheck returns the stored check value, nil when there is none.
func storedKEKCheck(ctx context.Context, tx *sql.Tx) ([]byte, error) {
	var check []byte
	err := tx.QueryRowContext(ctx, `SELECT check_value FROM recording_kek WHERE id = 1`).Scan(&check)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return check, err
}

// putKEKCheck records that the copies are wrapped with kek.
func putKEKCheck(ctx context.Context, tx *sql.Tx, kek vault.KEK) error {
	check, err := vault.KEKCheck(kek)
	if err != nil {
		return decided{err}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO recording_kek (id, check_value, at_ns) VALUES (1, $1, $2)
		ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value, at_ns = excluded.at_ns`, check, time.Now().UnixNano())
	return err
}

// matches reports whether check was made with kek.
func matches(kek vault.KEK, check []byte) (bool, error) {
	ok, err := vault.MatchesKEKCheck(kek, check)
	if err != nil {
		return false, decided{err}
	}
	return ok, nil
}

// CheckKEK refuses (ErrOtherKEK) a KEK other than the one the cluster's
// copies of the data keys are wrapped with; a gateway holding it would
// record what the others cannot read, and read nothing they recorded.
// The first gateway to check records its KEK's check value; if copies
// are stored already (a cluster from before the check), its KEK must open
// at least one of the newest of them.
func (s *SQL) CheckKEK(kek vault.KEK) error {
	return s.keysTx(func(ctx context.Context, tx *sql.Tx) error {
		check, err := storedKEKCheck(ctx, tx)
		if err != nil {
			return err
		}
		if check != nil {
			ok, err := matches(kek, check)
			if err != nil || ok {
				return err
			}
			return decided{ErrOtherKEK}
		}
		rows, err := tx.QueryContext(ctx, `SELECT class, tenant, day, id, key_file FROM recording_keys
			ORDER BY day DESC, class, tenant, id LIMIT $1`, kekSample)
		if err != nil {
			return err
		}
		n, opened := 0, 0
		for rows.Next() {
			var c, tenant, day, id string
			var raw []byte
			if err := rows.Scan(&c, &tenant, &day, &id, &raw); err != nil {
				rows.Close()
				return err
			}
			n++
			if _, _, err := vault.OpenKeyFileWith(kek, vault.Class(c), tenant, day, raw, s.KeyName(vault.Class(c), tenant, day, id)); err == nil {
				opened++
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if n > 0 && opened == 0 {
			return decided{fmt.Errorf("%w (none of the %d newest copies of data keys opens with it)", ErrOtherKEK, n)}
		}
		return putKEKCheck(ctx, tx, kek)
	})
}

// KeysRewrapped tells what RewrapKeys did with the copies of the data
// keys in the database, or what CheckRewrap found it would do.
type KeysRewrapped struct {
	// Rewrapped: copies moved from the old KEK to the new one (by
	// CheckRewrap: to move).
	Rewrapped int
	// Already: copies that opened with the new KEK only, rewrapped by an
	// earlier, interrupted run (or copied by a gateway that holds it).
	Already int
	// Neither: copies that open with neither KEK; they are left as they
	// are, and the rotation fails.
	Neither int
}

// RewrapKeys moves every copy of a data key in the database from the KEK
// old to the KEK new, one transaction per batch of keysRewrapBatch
// copies, and in the transaction of the last batch records new as the
// cluster's KEK (CheckKEK). It is idempotent: a copy that opens with new
// counts as done, so an interrupted run is finished by running it again.
// A copy that opens with neither is never changed nor deleted: the
// rotation goes on with the others and then fails, naming how many (the
// gateway that holds their KEK moves them with a rotation from it to
// new). CheckRewrap finds them before anything changes.
//
// The stored check value must be old's or new's (or absent): a rotation
// from a KEK that is not the cluster's would be one gateway's mistake
// spread to every copy.
func (s *SQL) RewrapKeys(old, new vault.KEK) (KeysRewrapped, error) {
	return s.rewrapKeys(old, new, true)
}

// CheckRewrap is RewrapKeys without changing anything: what a rotation
// would find, so that it can refuse before the first key moves.
func (s *SQL) CheckRewrap(old, new vault.KEK) (KeysRewrapped, error) {
	return s.rewrapKeys(old, new, false)
}

func (s *SQL) rewrapKeys(old, new vault.KEK, write bool) (KeysRewrapped, error) {
	var r KeysRewrapped
	if old == nil || new == nil {
		return r, errors.New("record: a rotation needs the old and the new key-encryption key")
	}
	size := keysRewrapBatch
	if s.keysBatch > 0 {
		size = s.keysBatch
	}
	var named []string
	var after [4]string // the last copy done: class, tenant, day, id
	first, last := true, false
	for !last {
		err := s.keysTxFor(keysRewrapTimeout, func(ctx context.Context, tx *sql.Tx) error {
			if first {
				if err := checkRotation(ctx, tx, old, new); err != nil {
					return err
				}
			}
			batch, err := keysAfter(ctx, tx, after, size)
			if err != nil {
				return err
			}
			for _, k := range batch {
				name := s.KeyName(vault.Class(k.class), k.tenant, k.day, k.id)
				out, already, err := vault.RewrapKeyFile(vault.Class(k.class), k.tenant, k.day, k.raw, old, new, name)
				switch {
				case err != nil:
					// Malformed, bound elsewhere or under a third KEK:
					// unreadable to the cluster either way; counted.
					r.Neither++
					if len(named) < neitherNamed {
						named = append(named, name)
					}
				case already:
					r.Already++
				default:
					r.Rewrapped++
					if write {
						if _, err := tx.ExecContext(ctx, `UPDATE recording_keys SET key_file = $1
							WHERE class = $2 AND tenant = $3 AND day = $4 AND id = $5 AND key_file = $6`,
							out, k.class, k.tenant, k.day, k.id, k.raw); err != nil {
							return err
						}
					}
				}
			}
			if len(batch) > 0 {
				b := batch[len(batch)-1]
				after = [4]string{b.class, b.tenant, b.day, b.id}
			}
			last = len(batch) < size
			if last && write {
				// Every copy that opened is wrapped with new now: so
				// says the check, even when some opened with neither,
				// which were not readable to the cluster before either.
				return putKEKCheck(ctx, tx, new)
			}
			return nil
		})
		if err == nil && s.afterBatch != nil && write {
			err = s.afterBatch()
		}
		if err != nil {
			return r, err
		}
		first = false
	}
	if r.Neither > 0 {
		more := ""
		if r.Neither > len(named) {
			more = fmt.Sprintf(" and %d more", r.Neither-len(named))
		}
		return r, fmt.Errorf("copies of data keys in the database that open with neither the old nor the new key-encryption key: %d (%s%s); "+
			"they are left as they are, unreadable to every gateway but one holding their KEK: %w", r.Neither, strings.Join(named, ", "), more, vault.ErrKEK)
	}
	return r, nil
}

// checkRotation refuses a rotation between two KEKs neither of which is
// the cluster's, as far as the stored check value tells.
func checkRotation(ctx context.Context, tx *sql.Tx, old, new vault.KEK) error {
	check, err := storedKEKCheck(ctx, tx)
	if err != nil || check == nil {
		return err
	}
	for _, k := range []vault.KEK{old, new} {
		if ok, err := matches(k, check); err != nil || ok {
			return err
		}
	}
	return decided{fmt.Errorf("neither the old nor the new key-encryption key is the one the cluster's recordings are wrapped with "+
		"(another node rotated to a third one?): %w", ErrOtherKEK)}
}

// sharedKey is one row of recording_keys.
type sharedKey struct {
	class, tenant, day, id string
	raw                    []byte
}

// keysAfter reads the next batch of copies after the one named by after,
// in key order.
func keysAfter(ctx context.Context, tx *sql.Tx, after [4]string, size int) ([]sharedKey, error) {
	rows, err := tx.QueryContext(ctx, `SELECT class, tenant, day, id, key_file FROM recording_keys
		WHERE (class, tenant, day, id) > ($1, $2, $3, $4) ORDER BY class, tenant, day, id LIMIT $5`,
		after[0], after[1], after[2], after[3], size)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sharedKey
	for rows.Next() {
		var k sharedKey
		if err := rows.Scan(&k.class, &k.tenant, &k.day, &k.id, &k.raw); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
