package syslog

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// How far behind a collector is: ok, past warn_percent of a limit
// (logged), or past a limit (new sessions are refused; nothing is
// dropped).
type level int

const (
	levelOK level = iota
	levelWarn
	levelRefuse
)

func (l level) String() string { return [...]string{"ok", "warn", "refuse"}[l] }

// oldest caches the time of the first record a collector lacks.
type oldest struct {
	segment int
	index   uint64
	time    time.Time
}

// Status is one collector's state, for `tandem status` and metrics.
type Status struct {
	Name      string
	Addr      string
	Connected bool
	Segment   int    // the segment the collector is in
	Delivered uint64 // records of that segment delivered (the next index)
	// Depth is how many records the collector lacks (those of closed
	// segments it has not finished are not counted); Oldest is the time of
	// the first of them, zero when it lacks none.
	Depth   uint64
	Oldest  time.Time
	Level   string // ok, warn or refuse
	LastErr string
}

// Age is how old the oldest record the collector lacks is, at now.
func (s Status) Age(now time.Time) time.Duration {
	if s.Oldest.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.Oldest))
}

// Status returns every collector's state. It is cheap (no I/O beyond one
// record when the first missing record changed) and safe for concurrent
// use; a nil Shipper has no collectors.
func (s *Shipper) Status() []Status {
	if s == nil {
		return nil
	}
	out := make([]Status, 0, len(s.cols))
	for _, c := range s.cols {
		out = append(out, c.status())
	}
	return out
}

func (c *collector) status() Status {
	cur := c.delivered()
	depth := c.s.o.Durable()
	if cur.Segment == len(c.s.segDirs) {
		depth -= min(depth, cur.Next.Index)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Name: c.name, Addr: c.addr, Connected: c.connected, Segment: cur.Segment, Delivered: cur.Next.Index,
		Depth: depth, Level: c.level.String(), LastErr: c.lastErr}
	if depth > 0 {
		if c.oldest.segment != cur.Segment || c.oldest.index != cur.Next.Index || c.oldest.time.IsZero() {
			t, _ := FirstTime(c.s.segDirs[cur.Segment-1], cur.Next)
			c.oldest = oldest{segment: cur.Segment, index: cur.Next.Index, time: t}
		}
		st.Oldest = c.oldest.time
	}
	return st
}

// FirstTime is the time of the record at pos in the segment in dir; zero
// when there is none yet.
func FirstTime(dir string, pos audit.Position) (time.Time, error) {
	var t time.Time
	err := audit.ReadFrom(dir, pos, pos.Index+1, func(raw []byte, _ audit.Position) error {
		env, err := audit.OpenEnvelope(raw)
		t = env.Time
		return err
	})
	return t, err
}

// Refusal is why new sessions are refused — a collector lacks more
// records, or older ones, than syslog.max_behind or syslog.max_age allow —
// or "" when none is that far behind. The gateway asks it before every
// new session (fail closed: rather no session than one whose audit trail
// does not reach the central log).
func (s *Shipper) Refusal() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusal
}

// watch checks every collector once a second until ctx ends: it sets the
// refusal and logs a warning at the change of level and once a minute
// while a collector is behind.
func (s *Shipper) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 0; ; n++ {
		s.check(n%60 == 0)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Shipper) check(remind bool) {
	now := s.o.Now()
	var refuse []string
	for _, c := range s.cols {
		st := c.status()
		lv := s.levelOf(st, now)
		c.mu.Lock()
		prev := c.level
		c.level = lv
		c.mu.Unlock()
		if lv == levelRefuse {
			refuse = append(refuse, fmt.Sprintf("%s lacks %d audit records, the oldest from %s", st.Name, st.Depth, st.Age(now).Round(time.Second)))
		}
		s.report(st, prev, lv, now, remind)
	}
	msg := ""
	if len(refuse) > 0 {
		msg = "the central audit log is too far behind (" + strings.Join(refuse, "; ") + "), so no new session can start; tell the gateway's operators"
	}
	s.mu.Lock()
	s.refusal = msg
	s.mu.Unlock()
}

// levelOf compares a collector's backlog with the limits.
func (s *Shipper) levelOf(st Status, now time.Time) level {
	cfg := s.o.Config
	depth, age := st.Depth, st.Age(now)
	maxDepth, maxAge := uint64(cfg.MaxBehind), cfg.MaxAge.Duration
	switch {
	case depth >= maxDepth || age >= maxAge:
		return levelRefuse
	case depth*100 >= maxDepth*uint64(cfg.WarnPercent) || age*100 >= maxAge*time.Duration(cfg.WarnPercent):
		return levelWarn
	}
	return levelOK
}

func (s *Shipper) report(st Status, prev, lv level, now time.Time, remind bool) {
	args := []any{"collector", st.Name, "missing_records", st.Depth, "oldest_age", st.Age(now).Round(time.Second),
		"max_behind", s.o.Config.MaxBehind, "max_age", s.o.Config.MaxAge.Duration}
	switch {
	case lv == levelOK && prev != levelOK:
		s.o.Log.Info("syslog collector caught up below the warning level", args...)
	case lv == levelOK || lv == prev && !remind:
	case lv == levelRefuse:
		s.o.Log.Error("syslog collector too far behind: new sessions are refused until it catches up (nothing is dropped)", args...)
	default:
		s.o.Log.Warn("syslog collector falling behind: new sessions will be refused at the limit", args...)
	}
}

// Offline is a collector's status read from the files alone — its cursor
// and the log — for `tandem status`, which runs beside serve: Depth
// counts the records from the cursor to the end of the log, Level and
// Connected are unknown there.
func Offline(auditDir, stateDir string, c config.Collector) (Status, error) {
	dirs, err := audit.SegmentDirs(auditDir)
	if err != nil {
		return Status{}, err
	}
	cur, err := loadCursor(CursorPath(stateDir, c.Name), len(dirs))
	if err != nil {
		return Status{}, err
	}
	st := Status{Name: c.Name, Addr: c.Addr, Segment: cur.Segment, Delivered: cur.Next.Index}
	if cur.Segment > len(dirs) {
		return st, fmt.Errorf("syslog: cursor of %s names segment %d, the log has %d", c.Name, cur.Segment, len(dirs))
	}
	for seg := cur.Segment; seg <= len(dirs); seg++ {
		from := audit.Position{}
		if seg == cur.Segment {
			from = cur.Next
		}
		err := audit.ReadFrom(dirs[seg-1], from, math.MaxUint64, func(raw []byte, _ audit.Position) error {
			if st.Depth == 0 {
				env, err := audit.OpenEnvelope(raw)
				if err != nil {
					return err
				}
				st.Oldest = env.Time
			}
			st.Depth++
			return nil
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
