package auditcli

import (
	"context"
	"errors"
	"sync"

	"tandem.dev/tandem/internal/audit"
)

// source is one node's log for a merged listing.
type source struct {
	node string
	dir  string // the log directory
	keys audit.KeyReader
}

// nodeRecord is a record with the node whose log holds it.
type nodeRecord struct {
	node string
	rec  audit.Record
}

// mergeLogs calls fn with the records of every source that pass f, in
// time order across the sources (each log is read in its own order; ties
// go to the source listed first). One goroutine per source reads ahead a
// bounded number of records; all have ended when mergeLogs returns.
func mergeLogs(srcs []source, f audit.Filter, fn func(nodeRecord) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type head struct {
		ch  chan nodeRecord
		cur nodeRecord
		ok  bool
	}
	heads := make([]*head, len(srcs))
	errs := make([]error, len(srcs))
	var wg sync.WaitGroup
	for i, s := range srcs {
		h := &head{ch: make(chan nodeRecord, 64)}
		heads[i] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(h.ch)
			errs[i] = audit.ReadKeys(s.dir, s.keys, f, func(r audit.Record) error {
				select {
				case h.ch <- nodeRecord{node: s.node, rec: r}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}()
	}
	defer func() { cancel(); wg.Wait() }() // the readers stop at their next record
	for _, h := range heads {
		h.cur, h.ok = <-h.ch
	}
	for {
		var next *head
		for _, h := range heads {
			if h.ok && (next == nil || h.cur.rec.Event.Time.Before(next.cur.rec.Event.Time)) {
				next = h
			}
		}
		if next == nil {
			break
		}
		if err := fn(next.cur); err != nil {
			return err
		}
		next.cur, next.ok = <-next.ch
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}
