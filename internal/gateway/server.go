// Package gateway is Tandem's SSH server: it terminates an administrator's
// OpenSSH connection, identifies the person by key, routes each channel
// (jump, user name, or a command on the gateway itself), asks the policy,
// and relays allowed sessions to the target over the gateway's own
// connection.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"tandem.dev/tandem/internal/netutil"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/ratelimit"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/upstream"
)

// Options are the parts a Server is wired from.
type Options struct {
	Config *config.Config
	Keys   *ca.Keys
	Audit  audit.Sink
	// Store holds locks (and later other shared state). Nil disables
	// locks, for tests of other parts only.
	Store *store.Store
	// Recorder records every session; it is required (no recording, no
	// session).
	Recorder *Recorder
	Logger   *slog.Logger
	Now      func() time.Time
	// ReadAudit reads the audit log for `ssh gw audit show`; nil: the
	// gateway cannot read its log, and refuses to.
	ReadAudit func(f audit.Filter, fn func(audit.Record) error) error
	// Reload re-reads the configuration file for `ssh gw reload` by
	// person (from source), records it and applies it through Reload,
	// returning the changes; nil: the gateway cannot reload itself.
	Reload func(ctx context.Context, person, source string) ([]config.Change, error)
	// Metrics counts for monitoring; nil counts nothing.
	Metrics Metrics
	// Refuse, if set, is asked before every new target session; a
	// non-empty answer refuses it with that message (the central audit
	// log is too far behind: internal/syslog).
	Refuse func() string
	// LinkKey is this node's key on the internal link of a cluster
	// (cluster.link_key); nil: joins are not relayed between nodes.
	LinkKey ssh.Signer
	// LinkListener, if set, takes the joins other nodes relay to the
	// sessions this node holds (cluster.listen). Serve closes it.
	LinkListener net.Listener
}

// Server is one gateway. It is safe for concurrent use; the configuration
// it decides on can be swapped at run time (Reload) without dropping
// connections.
type Server struct {
	keys  *ca.Keys
	audit audit.Sink
	log   *slog.Logger
	now   func() time.Time
	state atomic.Pointer[state]
	conns chan struct{} // semaphore capping concurrent connections
	live  registry
	store *store.Store
	rec   *Recorder
	limit *ratelimit.Limiter
	// preauth bounds the audit events of unauthenticated connections
	// per source; slots, waiting and disk are the caps of limits.go.
	preauth *ratelimit.Budget
	slots   slotTable
	waiting waitingRooms
	disk    diskWatch
	locks   atomic.Pointer[map[string]store.Lock]
	// lockdown holds why everybody counts as locked, when the lock table
	// failed its integrity check (see integrity.go); nil otherwise.
	lockdown atomic.Pointer[string]
	// freezes are the freezes in force (see freezes.go); a single
	// FreezeAll when the freeze table failed its integrity check.
	freezes atomic.Pointer[[]policy.Freeze]
	name    string // this gateway in the store's acknowledgements: host and listen address
	// storeDown holds why the state store could not be read at the last
	// poll, nil while it answers; storeOK is when it last answered. See
	// storeRefusal.
	storeDown atomic.Pointer[string]
	storeOK   atomic.Pointer[time.Time]
	metrics   Metrics
	cluster   *clusterNode // nil outside a cluster
	wg        sync.WaitGroup
	opts      Options // what the server was wired from, for the hooks (ReadAudit)
}

// state is everything derived from one configuration.
type state struct {
	cfg     *config.Config
	engine  *policy.Engine
	profile cryptoprofile.Profile
	dialer  *upstream.Dialer
	server  *ssh.ServerConfig
}

// New checks the configuration's crypto profile and builds a Server.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Audit == nil {
		return nil, errors.New("gateway: no audit sink (no audit, no access)")
	}
	if o.Recorder == nil || o.Recorder.Vault == nil {
		return nil, errors.New("gateway: no recorder (every session is recorded)")
	}
	s := &Server{keys: o.Keys, audit: o.Audit, log: o.Logger, now: o.Now, store: o.Store, rec: o.Recorder, opts: o, metrics: o.Metrics}
	var err error
	if s.cluster, err = newCluster(o); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s.name = host + " " + o.Config.Gateway.Listen
	st, err := s.newState(o.Config)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	lim := o.Config.Gateway.Limits
	max := o.Config.Gateway.MaxConnections
	if max <= 0 {
		max = 1000
	}
	s.limit = ratelimit.New(ratelimit.Options{
		Window: lim.Window.Duration, Block: lim.Block.Duration,
		MaxPerSource: lim.FailuresPerSource, MaxPerPerson: lim.FailuresPerPerson,
		MaxUnauth: lim.Unauthenticated, MaxUnauthPerSource: lim.UnauthenticatedPerSource,
		MaxUnauthPerPrefix: lim.UnauthenticatedPerPrefix, PrefixV4: lim.PrefixV4, PrefixV6: lim.PrefixV6,
		EvictAfterSilence: lim.EvictAfterSilence.Duration, Now: o.Now,
		// Newcomers waiting for a slot count against max_connections.
		MaxParked: ratelimit.ParkingSize(lim.Unauthenticated, max),
	})
	s.preauth = ratelimit.NewBudget(lim.PreauthAuditPerMinute, 0, o.Now)
	s.disk.statfs = statfs
	s.checkDisk() // refuse sessions from the start if the disk is full
	if s.store != nil {
		// Locks apply from the first connection on: read them now.
		if err := s.refreshLocks(context.Background()); err != nil {
			return nil, fmt.Errorf("read locks: %w", err)
		}
	}
	s.conns = make(chan struct{}, max)
	return s, nil
}

func (s *Server) newState(cfg *config.Config) (*state, error) {
	prof, err := cryptoprofile.Get(cfg.Gateway.CryptoProfile)
	if err != nil {
		return nil, err
	}
	st := &state{
		cfg:     cfg,
		engine:  policy.New(cfg),
		profile: prof,
		dialer: &upstream.Dialer{
			Keys:          s.keys,
			Profile:       prof,
			Timeout:       cfg.Gateway.DialTimeout.Duration,
			CertValidity:  cfg.Gateway.CertValidity.Duration,
			SourceAddress: cfg.Gateway.EgressAddresses,
		},
	}
	st.server, err = s.serverConfig(st, nil, cfg.Gateway.Names...)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Reload swaps in a new, already validated configuration. Every decision
// from now on uses it, also on connections opened before (M2, M4, M6);
// live sessions and connections that it no longer allows end at once
// (see enforceConfig).
func (s *Server) Reload(cfg *config.Config) error {
	if old := s.state.Load(); old != nil && !slices.Equal(linkSettings(old.cfg), linkSettings(cfg)) {
		return errLinkReload
	}
	st, err := s.newState(cfg)
	if err != nil {
		return err
	}
	s.state.Store(st)
	s.enforceConfig(context.Background(), st)
	return nil
}

// Serve accepts connections until ctx is done or the listener fails. It
// returns after every connection handler has ended: nil when ctx ended,
// the listener's error otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// The stop is marked before the listener closes: Accept then fails
	// with net.ErrClosed, which may come back before the derived context
	// below has heard of the cancel.
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() { stopping.Store(true); ln.Close() })
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watchLocks(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.housekeeping(ctx) }()
	s.serveCluster(ctx)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if stopping.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		select {
		case s.conns <- struct{}{}:
		default:
			s.log.Debug("connection refused: max_connections reached", "source", nc.RemoteAddr().String())
			s.metrics.ConnectionRefused("max_connections")
			nc.Close()
			continue
		}
		// A load balancer's connection is admitted by the client's
		// address, which only its PROXY header names: handleConn reads
		// it, off this loop, and admits the connection then.
		viaBalancer := s.fromBalancer(nc)
		// A connection that finds the unauthenticated ones at their cap
		// waits for its first bytes (admitSpoken, in handleConn) before
		// it is refused or takes a silent connection's slot.
		pc := newPreauthConn(nc, s.now, s.limit.EvictAfterSilence())
		var release func() // nil: not admitted yet
		if !viaBalancer {
			var ok bool
			var reason string
			release, ok, reason = s.limit.Admit(nc.RemoteAddr().String(), pc)
			if !ok && reason != ratelimit.ReasonTooManyUnauth {
				<-s.conns
				s.log.Debug("connection refused", "source", nc.RemoteAddr().String(), "reason", reason)
				s.metrics.ConnectionRefused(reason)
				nc.Close()
				continue
			}
			if ok {
				s.metrics.ConnectionAccepted()
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleConn(ctx, nc, pc, viaBalancer, release, func() { <-s.conns })
		}()
	}
}

// handleConn runs the handshake of one client connection and, once the
// client is authenticated, hands the connection to serveConn in a fresh
// goroutine and returns. Why a fresh one: the handshake (key exchange,
// signatures, policy, the audit append) grows this goroutine's stack to
// several times what serving an idle connection needs, and the stack
// stays that size for the connection's life. done frees the connection's
// slot; it is called once the connection is over. A connection from a
// load balancer (viaBalancer) starts with its PROXY header, read here
// within the first deadline; the rate limiter admits it (release) by the
// client's address the header names. pc is the connection's handle for
// the rate limiter, which may evict it (close tcp) until it has
// authenticated. A nil release means the rate limiter has not admitted
// the connection yet (the cap was reached): it is admitted here once its
// client has spoken (admitSpoken).
func (s *Server) handleConn(ctx context.Context, tcp net.Conn, pc *preauthConn, viaBalancer bool, release, done func()) {
	handedOff := false
	defer func() {
		if !handedOff {
			tcp.Close()
			done()
		}
	}()
	defer func() {
		if release != nil {
			release()
		}
	}()
	st := s.state.Load()
	// Two deadlines (see kexConn): kex_timeout until the client's key
	// exchange offer is in, then handshake_timeout from the start. The
	// PROXY header, the connection's first bytes, falls under the first.
	// Socket deadlines are on the real clock, never on s.now, the clock of
	// decisions that tests move by days: a clock moved back would put
	// every deadline in the past and end each handshake at once.
	start := time.Now()
	lim := st.cfg.Gateway.Limits
	first := st.cfg.Gateway.HandshakeTimeout.Duration
	if lim.KexTimeout.Duration > 0 {
		first = min(first, lim.KexTimeout.Duration)
	}
	ack := netutil.QuickAck(tcp)
	var conn net.Conn = ack
	if viaBalancer {
		_ = tcp.SetDeadline(start.Add(first))
		client, rel, ok := s.acceptProxied(ctx, conn, pc, start.Add(first))
		if !ok {
			return
		}
		conn, release = client, rel
	} else if release == nil {
		client, rel, ok := s.admitSpoken(ctx, conn, pc, conn.RemoteAddr().String(), start.Add(first))
		if !ok {
			return
		}
		conn, release = client, rel
	}
	source := conn.RemoteAddr().String()
	nc := newKexConn(conn, start.Add(st.cfg.Gateway.HandshakeTimeout.Duration), pc)
	_ = nc.SetDeadline(start.Add(first))
	attempts := authAttempts{pc: pc}
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.connConfig(st, st.server, nil, &attempts, true))
	release() // authenticated or failed: no longer an unauthenticated connection
	if !pc.finish() && err == nil {
		// Evicted in the instant between its last step and this line:
		// the socket is closed, so end it as the eviction it was.
		sc.Close()
		err = errors.New(ratelimit.ReasonEvicted)
	}
	if err != nil {
		s.log.Debug("handshake failed", "source", source, "err", err)
		s.handshakeFailed(source, nc, &attempts)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	slot := attempts.takeSlot()
	c := &clientConn{srv: s, st: st, conn: sc, source: source, tcp: tcp, ack: ack, slot: slot}
	if err := c.identify(sc.Permissions); err != nil {
		s.log.Error("authenticated connection without identity", "err", err)
		s.slots.release(slot)
		sc.Close()
		return
	}
	handedOff = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer done()
		defer tcp.Close()
		defer s.slots.release(slot)
		s.serveConn(ctx, c, chans, reqs)
	}()
}

// serveConn owns an authenticated client connection and everything
// started for it, until the connection ends.
func (s *Server) serveConn(ctx context.Context, c *clientConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	sc := c.conn
	defer sc.Close()
	s.live.addConn(c)
	defer s.live.removeConn(c)
	// A lock that landed between the key check and addConn found no
	// connection to close: look again now that this one is registered.
	if s.lockReason(c.person.ID) != "" {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Close the connection when the gateway stops, so blocked reads end.
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()

	ka := startKeepAlive(sc, c.st.cfg.Gateway.KeepAlive.Duration)
	defer ka.stop()
	c.serve(ctx, chans, reqs, route{})
}

// keepAlive probes a client every interval; three intervals in a row with
// a probe still unanswered close the connection, so a silent network loss
// ends its sessions in seconds. One probe is outstanding at a time.
//
// It runs on a runtime timer (time.AfterFunc), not a goroutine with a
// ticker: an idle connection then costs no goroutine stack for its
// keep-alive, only while a probe is in flight. The goroutine sending a
// probe ends when the client answers or, at the latest, when the
// connection closes.
type keepAlive struct {
	conn  ssh.Conn
	every time.Duration

	mu      sync.Mutex
	timer   *time.Timer // nil when keep-alives are off
	pending bool        // a probe is waiting for its answer
	missed  int         // intervals that ended with the probe unanswered
	stopped bool
}

// startKeepAlive starts probing conn every interval (none if every <= 0).
// The caller must call stop when the connection ends.
func startKeepAlive(conn ssh.Conn, every time.Duration) *keepAlive {
	k := &keepAlive{conn: conn, every: every}
	if every > 0 {
		k.mu.Lock()
		k.timer = time.AfterFunc(every, k.tick)
		k.mu.Unlock()
	}
	return k
}

// tick runs at every interval in its own short-lived goroutine.
func (k *keepAlive) tick() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	if k.pending {
		if k.missed++; k.missed >= 3 {
			k.stopped = true
			k.mu.Unlock()
			k.conn.Close()
			return
		}
		k.timer.Reset(k.every)
		k.mu.Unlock()
		return
	}
	k.pending, k.missed = true, 0
	k.timer.Reset(k.every)
	k.mu.Unlock()

	_, _, _ = k.conn.SendRequest("keepalive@openssh.com", true, nil)

	k.mu.Lock()
	k.pending = false
	k.mu.Unlock()
}

// stop ends the probes. A probe in flight ends with the connection.
func (k *keepAlive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.timer != nil {
		k.timer.Stop()
	}
}
