// Package syslog sends the audit log to central log servers: every record
// and every signed checkpoint as an RFC 5424 message over mutual TLS with
// RFC 5425 framing, exactly as the local log stores them (encrypted parts
// stay encrypted). The local log is the spool: each collector has a
// cursor in data_dir, and a collector that was away gets everything from
// its cursor on, in order, at least once; the record index (with the
// segment) is the key to remove duplicates by. See docs/CENTRAL-LOG.md.
package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// Bounds of one write: records per batch and bytes per batch. Memory per
// collector stays at about one batch.
const (
	batchRecords = 256
	batchBytes   = 256 << 10
	maxPending   = 1024        // unsettled batches kept; a later one covers every earlier one
	maxRetry     = time.Minute // or 30 times syslog.retry, if less
)

// Options configure a Shipper.
type Options struct {
	Config config.Syslog
	// AuditDir is the log directory (data_dir/audit); StateDir keeps the
	// cursors (data_dir/syslog, created 0700).
	AuditDir, StateDir string
	// Durable is how many records of the current segment are durable
	// (audit.Log.Size); nothing beyond is sent, so a record lost in a
	// crash before its fsync never reaches a collector.
	Durable func() uint64
	Now     func() time.Time
	Log     *slog.Logger

	poll time.Duration // how often to look for new records; default 200ms
}

// Shipper sends the log to every configured collector, each in its own
// goroutine, and watches how far behind they are.
type Shipper struct {
	o       Options
	hdr     header
	segDirs []string // every segment's directory; the last is the current
	cols    []*collector
	mu      sync.Mutex
	refusal string
}

// New prepares a shipper: TLS settings, certificates and cursors. It
// sends nothing before Run.
func New(o Options) (*Shipper, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.poll <= 0 {
		o.poll = 200 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	host := o.Config.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	dirs, err := audit.SegmentDirs(o.AuditDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("syslog: state directory: %w", err)
	}
	s := &Shipper{o: o, hdr: header{hostname: host}, segDirs: dirs}
	for _, cc := range o.Config.Collectors {
		c, err := s.newCollector(cc)
		if err != nil {
			return nil, err
		}
		s.cols = append(s.cols, c)
	}
	return s, nil
}

func (s *Shipper) newCollector(cc config.Collector) (*collector, error) {
	tc, err := clientTLS(cc)
	if err != nil {
		return nil, err
	}
	path := CursorPath(s.o.StateDir, cc.Name)
	cur, err := loadCursor(path, len(s.segDirs))
	if err != nil {
		return nil, err
	}
	if cur, err = s.within(cur); err != nil {
		s.o.Log.Warn("syslog cursor lies beyond the log; sending its segment again from the start", "collector", cc.Name, "cursor", path, "err", err)
	}
	return &collector{s: s, name: cc.Name, addr: cc.Addr, tls: tc, path: path, cur: cur}, nil
}

// within returns cur when it lies inside the log; else, with the reason,
// the start of its segment (of the current one when its segment is gone),
// so that a cursor from a restored backup or an operator's edit sends
// records twice rather than skipping any.
func (s *Shipper) within(cur cursor) (cursor, error) {
	if cur.Segment > len(s.segDirs) {
		return cursor{Segment: len(s.segDirs)}, fmt.Errorf("segment %d of %d", cur.Segment, len(s.segDirs))
	}
	if cur.Segment == len(s.segDirs) && cur.Next.Index > s.o.Durable() {
		return cursor{Segment: cur.Segment}, fmt.Errorf("record %d of %d", cur.Next.Index, s.o.Durable())
	}
	end, err := audit.CheckpointsEnd(s.segDirs[cur.Segment-1])
	if err != nil {
		return cursor{Segment: cur.Segment}, err
	}
	if cur.Checkpoints > end {
		return cursor{Segment: cur.Segment}, fmt.Errorf("checkpoint offset %d of %d", cur.Checkpoints, end)
	}
	return cur, nil
}

// Run sends until ctx ends, then returns once every goroutine it started
// has ended. Records written but not yet settled are sent again next time.
func (s *Shipper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range s.cols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx)
		}()
	}
	s.watch(ctx)
	wg.Wait()
}

// collector is one central log server and how far it got.
type collector struct {
	s    *Shipper
	name string
	addr string
	tls  *tls.Config
	path string

	mu        sync.Mutex
	cur       cursor // delivered: saved in path
	connected bool
	lastErr   string
	level     level
	oldest    oldest
}

// inflight is a cursor written to a connection at a time; it counts as
// delivered once the connection has stayed up for Settle after it.
type inflight struct {
	cur cursor
	at  time.Time
}

// run connects, sends and reconnects with backoff until ctx ends.
func (c *collector) run(ctx context.Context) {
	wait := c.s.o.Config.Retry.Duration
	for ctx.Err() == nil {
		delivered, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.setConn(false, err)
		if delivered {
			wait = c.s.o.Config.Retry.Duration
		}
		c.s.o.Log.Warn("syslog collector unavailable; the log keeps everything for it", "collector", c.name, "addr", c.addr, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetry, 30*c.s.o.Config.Retry.Duration)
	}
}

// session is one connection: it sends everything from the delivered
// cursor on and keeps sending as the log grows, until the connection
// breaks or ctx ends. It reports whether anything was delivered.
func (c *collector) session(ctx context.Context) (bool, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	c.setConn(true, nil)
	broken := make(chan error, 1)
	go watchClose(conn, broken)
	sent := c.delivered()
	var pending []inflight
	delivered := false
	tick := time.NewTicker(c.s.o.poll)
	defer tick.Stop()
	for {
		before := len(pending)
		var err error
		if pending, err = c.settle(pending, broken); err != nil {
			return delivered, err
		}
		delivered = delivered || len(pending) < before
		n, full, err := c.send(conn, &sent)
		if err != nil {
			return delivered, err
		}
		if n > 0 && len(pending) < maxPending {
			pending = append(pending, inflight{cur: sent, at: c.s.o.Now()})
		}
		if full {
			continue
		}
		select {
		case <-ctx.Done():
			return delivered, nil
		case err := <-broken:
			return delivered, fmt.Errorf("connection closed by the collector: %w", err)
		case <-tick.C:
		}
	}
}

// dial connects and completes the TLS handshake within Timeout.
func (c *collector) dial(ctx context.Context) (*tls.Conn, error) {
	timeout := c.s.o.Config.Timeout.Duration
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}, Config: c.tls}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// watchClose reads from the connection, on which a collector never sends
// anything, to learn at once when it closes. It ends when the connection
// is closed; each read waits at most a minute and is then renewed.
func watchClose(conn *tls.Conn, broken chan<- error) {
	buf := make([]byte, 512)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := conn.Read(buf)
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		broken <- err
		return
	}
}

// settle saves the newest cursor written at least Settle ago on this
// connection and returns the batches still in flight. It first looks
// whether the collector has closed the connection: the session loop may
// not have looked since (it was sending a backlog, or its select took the
// ticker), and what a closed connection carried is not delivered.
func (c *collector) settle(pending []inflight, broken <-chan error) ([]inflight, error) {
	cutoff := c.s.o.Now().Add(-c.s.o.Config.Settle.Duration)
	n := 0
	for n < len(pending) && !pending[n].at.After(cutoff) {
		n++
	}
	if n == 0 {
		return pending, nil
	}
	select {
	case err := <-broken:
		return pending, fmt.Errorf("connection closed by the collector: %w", err)
	default:
	}
	if err := c.deliver(pending[n-1].cur); err != nil {
		return pending, err
	}
	return append(pending[:0], pending[n:]...), nil
}

func (c *collector) deliver(cur cursor) error {
	if err := cur.save(c.path); err != nil {
		return err
	}
	c.mu.Lock()
	c.cur = cur
	c.mu.Unlock()
	return nil
}

func (c *collector) delivered() cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *collector) setConn(up bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = up
	if err != nil {
		c.lastErr = err.Error()
	} else if up {
		c.lastErr = ""
	}
}
