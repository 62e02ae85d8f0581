package audit

import (
	"context"
	"sync"
)

// MemorySink is a Sink for tests of other packages: it keeps events in
// memory and can be told to fail, to check that callers fail closed.
type MemorySink struct {
	mu     sync.Mutex
	events []Event
	err    error
}

var _ Sink = (*MemorySink)(nil)

// Append stores e, or returns the error set by SetErr without storing it.
func (m *MemorySink) Append(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if e.Attrs != nil {
		a := make(map[string]string, len(e.Attrs))
		for k, v := range e.Attrs {
			a[k] = v
		}
		e.Attrs = a
	}
	m.events = append(m.events, e)
	return nil
}

// SetErr makes every later Append fail with err; nil restores success.
func (m *MemorySink) SetErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

// Events returns a copy of the stored events in order.
func (m *MemorySink) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Types returns the types of the stored events in order, for short asserts.
func (m *MemorySink) Types() []Type {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := make([]Type, len(m.events))
	for i, e := range m.events {
		t[i] = e.Type
	}
	return t
}
