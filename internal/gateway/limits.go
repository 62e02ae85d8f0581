package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/ratelimit"
)

// Caps on what one person, address or connection may hold once
// authenticated (M19, M30): connections per person and per source address,
// channels per connection, sessions waiting for a second person per
// person. Each refusal names its cap and how to see one's own connections.

// connSlot is one authenticated outer connection, as `ssh gw whoami`
// lists it; a jump connection has a slot of its own only for counting its
// channels.
type connSlot struct {
	person, source string
	since          time.Time
	channels       atomic.Int32
}

// slotTable counts authenticated connections per person and per source.
type slotTable struct {
	mu       sync.Mutex
	byPerson map[string]map[*connSlot]struct{}
	bySource map[string]int
}

// acquire takes a slot for person from source, or explains which cap
// refuses it (a banner error tagged as a cap refusal, which is no failed
// login).
func (t *slotTable) acquire(person, source string, now time.Time, l config.Limits) (*connSlot, error) {
	src := ratelimit.SourceKey(source)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byPerson == nil {
		t.byPerson, t.bySource = map[string]map[*connSlot]struct{}{}, map[string]int{}
	}
	if mine := t.byPerson[person]; l.ConnectionsPerPerson > 0 && len(mine) >= l.ConnectionsPerPerson {
		var b strings.Builder
		fmt.Fprintf(&b, "%s already has %d connections open to this gateway, the most one person may hold (gateway.limits.connections_per_person); close some of them.\nOpen now (oldest first):",
			person, len(mine))
		for i, s := range sortedSlots(mine) {
			if i == 5 {
				fmt.Fprintf(&b, "\n  … and %d more", len(mine)-5)
				break
			}
			fmt.Fprintf(&b, "\n  from %s since %s UTC, %d channels", s.source, s.since.UTC().Format(time.DateTime), s.channels.Load())
		}
		b.WriteString("\n`ssh gw whoami` over one of them lists them all.")
		return nil, capRefused(person, "connections_per_person", refusal("%s", b.String()))
	}
	if n := t.bySource[src]; l.ConnectionsPerSource > 0 && n >= l.ConnectionsPerSource {
		return nil, capRefused(person, "connections_per_source", refusal(
			"%d connections are open from your address %s, the most one address may hold (gateway.limits.connections_per_source); close some, or ask the gateway's operators.\n`ssh gw whoami` lists your own connections.",
			n, src))
	}
	s := &connSlot{person: person, source: source, since: now}
	if t.byPerson[person] == nil {
		t.byPerson[person] = map[*connSlot]struct{}{}
	}
	t.byPerson[person][s] = struct{}{}
	t.bySource[src]++
	return s, nil
}

func capRefused(person, limit string, err error) error {
	be := err.(*ssh.BannerError)
	be.Err = keyRefusal{person: person, cap: limit, error: be.Err}
	return be
}

// release frees a slot; nil and a second release do nothing.
func (t *slotTable) release(s *connSlot) {
	if s == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	mine := t.byPerson[s.person]
	if _, ok := mine[s]; !ok {
		return
	}
	delete(mine, s)
	if len(mine) == 0 {
		delete(t.byPerson, s.person)
	}
	src := ratelimit.SourceKey(s.source)
	if t.bySource[src]--; t.bySource[src] <= 0 {
		delete(t.bySource, src)
	}
}

// of returns person's connections, oldest first.
func (t *slotTable) of(person string) []*connSlot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sortedSlots(t.byPerson[person])
}

func sortedSlots(m map[*connSlot]struct{}) []*connSlot {
	out := make([]*connSlot, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].since.Before(out[j].since) })
	return out
}

// channelAllowed reports whether c may open one more channel; if not, it
// refuses nch with the cap's name (audited once per connection).
func (c *clientConn) channelAllowed(nch ssh.NewChannel) bool {
	max := c.st.cfg.Gateway.Limits.ChannelsPerConnection
	if c.slot == nil || max <= 0 || int(c.slot.channels.Load()) < max {
		return true
	}
	msg := fmt.Sprintf("tandem: %d channels are open on this connection, the most one connection may hold (gateway.limits.channels_per_connection); close some, or open another connection. `ssh gw whoami` lists your connections.", max)
	c.auditRefusedOnce("limit channels_per_connection", audit.SessionDeniedEvent{Target: c.who(), Channel: channelKind(nch), Reason: "channels_per_connection"}.Event())
	_ = nch.Reject(ssh.ResourceShortage, msg)
	return false
}

func (c *clientConn) channelOpened() {
	if c.slot != nil {
		c.slot.channels.Add(1)
	}
}

func (c *clientConn) channelClosed() {
	if c.slot != nil {
		c.slot.channels.Add(-1)
	}
}

// waitingRooms counts the sessions each person has waiting for a second
// person.
type waitingRooms struct {
	mu sync.Mutex
	n  map[string]int
}

// enter takes a waiting place for person, or returns nil when the person
// already has max sessions waiting. The returned leave may be called
// several times; it frees the place once.
func (w *waitingRooms) enter(person string, max int) (leave func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if max > 0 && w.n[person] >= max {
		return nil
	}
	if w.n == nil {
		w.n = map[string]int{}
	}
	w.n[person]++
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.n[person]--; w.n[person] <= 0 {
				delete(w.n, person)
			}
		})
	}
}

// enterWaiting takes one of c's person's waiting places for a four-eyes
// session; when none is left it refuses the session on ch, audited, and
// returns nil.
func (c *clientConn) enterWaiting(ch ssh.Channel, ss *sessionStart, tgt audit.Target) (leave func()) {
	max := c.st.cfg.Gateway.Limits.WaitingPerPerson
	if leave = c.srv.waiting.enter(c.person.ID, max); leave != nil {
		return leave
	}
	c.srv.record(audit.SessionDeniedEvent{Target: tgt, Reason: "waiting_per_person"}.Event())
	refuse(ch, ss, fmt.Sprintf("%s already has %d sessions waiting for a second person, the most one person may have (gateway.limits.waiting_per_person); end one, or have a colleague join it. `ssh gw sessions` lists them.", c.person.ID, max))
	return nil
}

// Free space on the data disk (M19, M30). A timer checks it; nothing is
// checked per event.
const (
	diskOK int32 = iota
	diskWarn
	diskRefuse
)

// diskWatch holds the last free-space check of data_dir.
type diskWatch struct {
	level    atomic.Int32
	free     atomic.Uint64
	total    atomic.Uint64
	warnings atomic.Uint64

	mu     sync.Mutex // guards checks and statfs
	checks int
	statfs func(path string) (free, total uint64, err error)
}

// statfs returns the free (for unprivileged users) and total bytes of the
// file system path lies on; a path that does not exist yet is looked up
// by its nearest existing parent.
func statfs(path string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	for {
		err = syscall.Statfs(path, &st)
		parent := filepath.Dir(path)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || parent == path {
			break
		}
		path = parent
	}
	if err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// diskLevel says how low free of total bytes is: a level is reached when
// free space falls below its percentage of total or below its amount in
// MiB, whichever comes first.
func diskLevel(free, total uint64, l config.Limits) int32 {
	below := func(pct, mib int) bool {
		return free*100 < total*uint64(pct) || free < uint64(mib)<<20
	}
	switch {
	case below(l.DiskRefusePercent, l.DiskRefuseMiB):
		return diskRefuse
	case below(l.DiskWarnPercent, l.DiskWarnMiB):
		return diskWarn
	}
	return diskOK
}

// checkDisk looks at data_dir's file system once; it logs a warning when
// space runs low (at the change and then once a minute or so) and counts
// it.
func (s *Server) checkDisk() {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	st := s.state.Load()
	free, total, err := s.disk.statfs(st.cfg.Gateway.DataDir)
	if err != nil {
		s.log.Warn("cannot check free space of the data directory", "dir", st.cfg.Gateway.DataDir, "err", err)
		return
	}
	s.disk.free.Store(free)
	s.disk.total.Store(total)
	l := st.cfg.Gateway.Limits
	level := diskLevel(free, total, l)
	prev := s.disk.level.Swap(level)
	s.disk.checks++
	every := max(1, int(time.Minute/max(l.DiskCheckEvery.Duration, time.Second)))
	if level == diskOK {
		if prev != diskOK {
			s.log.Info("free space on the data disk is back above the warning level", "dir", st.cfg.Gateway.DataDir, "free_mib", free>>20)
		}
		return
	}
	if level == prev && s.disk.checks%every != 0 {
		return
	}
	s.disk.warnings.Add(1)
	if level == diskRefuse {
		s.log.Error("data disk almost full: new sessions are refused", "dir", st.cfg.Gateway.DataDir,
			"free_mib", free>>20, "total_mib", total>>20, "refuse_below_percent", l.DiskRefusePercent, "refuse_below_mib", l.DiskRefuseMiB)
	} else {
		s.log.Warn("data disk running low", "dir", st.cfg.Gateway.DataDir,
			"free_mib", free>>20, "total_mib", total>>20, "warn_below_percent", l.DiskWarnPercent, "warn_below_mib", l.DiskWarnMiB)
	}
}

// DiskWarnings returns how many warnings about low free space on the data
// disk the gateway has logged, for metrics.
func (s *Server) DiskWarnings() uint64 { return s.disk.warnings.Load() }

// DiskFree returns the free and total bytes of the data disk as last
// checked, and whether new sessions are refused for lack of space.
func (s *Server) DiskFree() (free, total uint64, refusing bool) {
	return s.disk.free.Load(), s.disk.total.Load(), s.disk.level.Load() == diskRefuse
}

// diskRefusal is the message for a session refused for lack of space, or
// "" when there is space.
func (s *Server) diskRefusal() string {
	if s.disk.level.Load() != diskRefuse {
		return ""
	}
	return fmt.Sprintf("the gateway's data disk is almost full (%d MiB free), so no new session can start; tell the gateway's operators", s.disk.free.Load()>>20)
}

// sessionRefusal is why a new target session is refused for the
// gateway's own state — a full disk, a state store it cannot read, or what
// Options.Refuse says — or "".
func (s *Server) sessionRefusal() string {
	if msg := s.diskRefusal(); msg != "" {
		return msg
	}
	if msg := s.storeRefusal(); msg != "" || s.opts.Refuse == nil {
		return msg
	}
	return s.opts.Refuse()
}

// housekeeping checks the data disk and writes the summary of dropped
// pre-authentication audit events, every limits.disk_check_every, until
// ctx ends.
func (s *Server) housekeeping(ctx context.Context) {
	every := s.state.Load().cfg.Gateway.Limits.DiskCheckEvery.Duration
	if every <= 0 {
		every = config.DefaultDiskCheckEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushSuppressed()
			return
		case <-t.C:
			s.checkDisk()
			s.flushSuppressed()
			s.purgeEndedBlocks(ctx)
		}
	}
}

// purgeEndedBlocks removes ended blocks from the store's report, so the
// addresses in it stay no longer than the blocks themselves.
func (s *Server) purgeEndedBlocks(ctx context.Context) {
	if s.store == nil {
		return
	}
	if err := s.store.PurgeEndedBlocks(ctx, s.now()); err != nil && ctx.Err() == nil {
		s.log.Warn("ended blocks not purged", "err", err)
	}
}
