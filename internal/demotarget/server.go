package demotarget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/cryptoprofile"
)

// handshakeTimeout bounds how long a connection may take to finish the SSH
// handshake and authentication, so an idle or slow peer cannot hold a
// goroutine and a file descriptor forever.
const handshakeTimeout = 20 * time.Second

// serverVersion is what the target announces; it says honestly what it is.
const serverVersion = "SSH-2.0-TandemDemoTarget"

// Options configures the demo target.
type Options struct {
	Addr    string        // listen address, e.g. 127.0.0.1:0 (the default)
	UserCA  ssh.PublicKey // CA whose certificates are accepted
	HostKey ssh.Signer    // the target's host key (the caller generates and pins it in the gateway config)
	Dir     string        // working directory for commands; created 0700 if missing
	Logger  *slog.Logger  // nil discards the log
	Now     func() time.Time
}

// Server is a running demo target. Close stops it.
type Server struct {
	opts  Options
	shell string // program for "shell" requests
	cfg   *ssh.ServerConfig
	ln    net.Listener
	log   *slog.Logger

	// ctx is cancelled on shutdown; sessions derive from it so that their
	// processes are killed when the server stops.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed on shutdown

	wg sync.WaitGroup // every goroutine the server starts

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}

	shutdownOnce sync.Once
	closeErr     error
}

// certKey is the Permissions.ExtraData key under which the authenticated
// certificate travels from the auth callback to the connection handler.
type certKey struct{}

// Start listens on o.Addr and serves in the background until ctx is done or
// Close is called. The caller must call Close to release everything and wait
// for the goroutines, also after ctx is done.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.UserCA == nil {
		return nil, errors.New("demo target: no user CA key")
	}
	if o.HostKey == nil {
		return nil, errors.New("demo target: no host key")
	}
	if o.Dir == "" {
		return nil, errors.New("demo target: no working directory")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo target: create working directory: %w", err)
	}
	prof, err := cryptoprofile.Get("bsi")
	if err != nil {
		return nil, fmt.Errorf("demo target: %w", err)
	}

	s := &Server{
		opts:  o,
		shell: pickShell(os.Getenv("SHELL")),
		log:   o.Logger,
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	s.cfg = s.serverConfig(prof.Config())

	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("demo target: listen on %s: %w", o.Addr, err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.wg.Go(func() {
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.done:
		}
	})
	s.wg.Go(s.acceptLoop)
	s.log.Info("demo target listening", "addr", ln.Addr().String(), "dir", o.Dir)
	return s, nil
}

// pickShell returns $SHELL if it names an existing regular file, else /bin/sh.
func pickShell(env string) string {
	if env != "" {
		if fi, err := os.Stat(env); err == nil && fi.Mode().IsRegular() {
			return env
		}
	}
	return "/bin/sh"
}

// serverConfig accepts user certificates from the configured CA only, like
// sshd with TrustedUserCAKeys and PasswordAuthentication no. Password and
// keyboard-interactive callbacks stay nil, so those methods are refused.
func (s *Server) serverConfig(transport ssh.Config) *ssh.ServerConfig {
	caBytes := s.opts.UserCA.Marshal()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return string(auth.Marshal()) == string(caBytes)
		},
		Clock: s.opts.Now,
		// force-command is honoured by the session code; any other
		// critical option we cannot enforce makes the certificate invalid,
		// as it must.
		SupportedCriticalOptions: []string{"force-command"},
		// UserKeyFallback stays nil: plain keys are refused.
	}
	cfg := &ssh.ServerConfig{
		Config:        transport,
		ServerVersion: serverVersion,
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			perms, err := checker.Authenticate(conn, key)
			if err != nil {
				return nil, err
			}
			cert := key.(*ssh.Certificate) // Authenticate accepts nothing else
			// Return a copy: Authenticate hands out the certificate's own maps.
			return &ssh.Permissions{
				CriticalOptions: maps.Clone(perms.CriticalOptions),
				Extensions:      maps.Clone(perms.Extensions),
				ExtraData:       map[any]any{certKey{}: cert},
			}, nil
		},
		AuthLogCallback: func(conn ssh.ConnMetadata, method string, err error) {
			if err == nil || method == "none" {
				return
			}
			s.log.Info(fmt.Sprintf("Failed %s for %s from %s", method, conn.User(), conn.RemoteAddr()),
				"user", conn.User(), "remote", conn.RemoteAddr().String(), "method", method, "reason", err.Error())
		},
	}
	cfg.AddHostKey(s.opts.HostKey)
	return cfg
}

// Addr is the address the target listens on (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, closes every connection (which kills the
// sessions' processes) and waits for every goroutine of the server.
func (s *Server) Close() error {
	s.shutdown()
	s.wg.Wait()
	return s.closeErr
}

// shutdown stops accepting and tears down connections without waiting.
func (s *Server) shutdown() {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		close(s.done)
		s.cancel()
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("demo target: close listener: %w", err)
		}
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

func (s *Server) acceptLoop() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors (e.g. out of file descriptors): back off
			// briefly instead of spinning.
			s.log.Warn("demo target: accept failed", "err", err.Error())
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !s.track(nc) {
			_ = nc.Close()
			return
		}
		s.wg.Go(func() { s.serveConn(nc) })
	}
}

// track registers a connection so that shutdown can close it; it reports
// false when the server is already shutting down.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

func (s *Server) serveConn(nc net.Conn) {
	defer s.untrack(nc)
	defer nc.Close()

	// Network deadlines need the real clock; the injected one only decides
	// certificate validity.
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		s.log.Debug("demo target: handshake failed", "remote", nc.RemoteAddr().String(), "err", err.Error())
		return
	}
	defer sconn.Close()
	_ = nc.SetDeadline(time.Time{})

	cert, _ := sconn.Permissions.ExtraData[certKey{}].(*ssh.Certificate)
	if cert == nil { // cannot happen: the only auth callback sets it
		return
	}
	s.log.Info(fmt.Sprintf("Accepted certificate ID %s (serial %d) for %s", strconv.Quote(cert.KeyId), cert.Serial, sconn.User()),
		"key_id", cert.KeyId, "serial", cert.Serial, "user", sconn.User(),
		"remote", sconn.RemoteAddr().String(),
		"ca", ssh.FingerprintSHA256(cert.SignatureKey), "key", ssh.FingerprintSHA256(cert.Key))

	// Sessions of this connection end (and their processes are killed)
	// when the connection ends or the server shuts down.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()

	// Global requests (tcpip-forward, keepalives, ...) are all refused.
	s.wg.Go(func() { ssh.DiscardRequests(reqs) })

	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.Prohibited, "the demo target only offers sessions")
			continue
		}
		s.wg.Go(func() { s.serveSession(ctx, sconn, nch) })
	}
}
