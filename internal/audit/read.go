package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Record is one stored event with its position in the log and its
// canonical bytes (the Merkle leaf of a v1 record; of a v2 record, the
// leaf is these bytes without ciphertexts).
type Record struct {
	Index uint64
	Event Event
	Raw   []byte
	// Unreadable lists the parts of a v2 record whose fields are missing
	// from Event: shredded, without a key, or not decrypted at all.
	Unreadable []Unreadable
}

// Filter selects records for Read. Zero fields match everything.
type Filter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Types        []Type    // any of these
	Person       string    // named in any role (Event.Names)
	Session      string
	Tenant       string
	Request      string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e Event) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until),
		len(f.Types) > 0 && !slices.Contains(f.Types, e.Type),
		f.Person != "" && !e.Names(f.Person),
		f.Session != "" && e.Session != f.Session,
		f.Tenant != "" && e.Tenant != f.Tenant,
		f.Request != "" && e.Request != f.Request:
		return false
	}
	return true
}

// Read calls fn for every record in the log in dir that matches f, in log
// order, reading one record at a time. An unfinished record at the end (a
// crash not yet recovered by Open, or a write in flight) ends the read
// quietly; any other damage is an error. Read does not check the Merkle
// tree; Verify does. If fn returns an error Read stops and returns it.
// Of v2 records Read knows only index, tenant, time and type; ReadKeys
// decrypts the rest.
func Read(dir string, f Filter, fn func(Record) error) error {
	return ReadKeys(dir, nil, f, fn)
}

// ReadKeys is Read that decrypts v2 records with keys (*vault.Vault). The
// filter sees the decrypted event, so a person whose fields were shredded
// is not found any more.
func ReadKeys(dir string, keys KeyReader, f Filter, fn func(Record) error) error {
	file, err := os.Open(filepath.Join(dir, recordsFile))
	if err != nil {
		return fmt.Errorf("audit: open records: %w", err)
	}
	defer file.Close()
	fr := newFrameReader(bufio.NewReaderSize(file, 1<<16))
	for i := uint64(0); ; i++ {
		payload, err := fr.next()
		if err == io.EOF {
			return nil
		}
		var fe *frameError
		if errors.As(err, &fe) && fe.Torn {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: record %d: %w", i, err)
		}
		idx, e, bad, err := DecodeRecordKeys(payload, keys)
		if err != nil {
			return fmt.Errorf("audit: record %d: %w", i, err)
		}
		if idx != i {
			return fmt.Errorf("audit: record %d claims index %d", i, idx)
		}
		if !f.Match(e) {
			continue
		}
		if err := fn(Record{Index: i, Event: e, Raw: append([]byte(nil), payload...), Unreadable: bad}); err != nil {
			return err
		}
	}
}
