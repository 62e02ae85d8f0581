package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/safetext"
)

// Permission extension names carried from authentication to channels.
const (
	extPerson = "tandem-person"
	extKey    = "tandem-key"
)

// serverConfig builds the SSH server side for the gateway itself (names are
// its own host names) or, in jump mode, for one target name. When person is
// non-nil, only that person's keys are accepted: a jump connection must be
// made by the same person as the connection it travels in.
func (s *Server) serverConfig(st *state, person *config.Person, names ...string) (*ssh.ServerConfig, error) {
	hostSigner, err := s.keys.HostSigner(names...)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ServerConfig{
		Config:                  st.profile.Config(),
		PublicKeyAuthAlgorithms: st.profile.UserKeys,
		ServerVersion:           "SSH-2.0-Tandem",
		MaxAuthTries:            6,
		// Password and keyboard-interactive callbacks stay nil: those
		// methods are never offered (M1). AuthLogCallback still sees the
		// attempts, so they are audited.
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return s.checkKey(st, person, meta, key)
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			return s.loginSucceeded(meta, perms)
		},
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			s.authAttempt(meta, method, err)
		},
	}
	// The certificate covers clients that trust the host CA; the plain key
	// covers clients that pinned the gateway's key instead.
	cfg.AddHostKey(hostSigner)
	cfg.AddHostKey(s.keys.HostKey)
	return cfg, nil
}

// authAttempts remembers, for one connection, whether any authentication
// attempt failed and for which person, so that a connection that ends
// unauthenticated counts once against its source (M19). Counting
// connections rather than attempts keeps a client that offers several
// keys from blocking itself.
type authAttempts struct {
	mu     sync.Mutex
	failed bool
	person string
}

func (a *authAttempts) fail(person string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failed = true
	if person != "" {
		a.person = person
	}
}

// connConfig is the server configuration for one connection: the shared
// one, with callbacks that also note failures for the rate limiter.
func (s *Server) connConfig(st *state, a *authAttempts) *ssh.ServerConfig {
	cfg := *st.server
	base := cfg.AuthLogCallback
	cfg.AuthLogCallback = func(meta ssh.ConnMetadata, method string, err error) {
		if err != nil && method != "none" {
			var be *ssh.BannerError
			person := ""
			if errors.As(err, &be) {
				person = personOfRefusal(be)
			}
			a.fail(person)
		}
		base(meta, method, err)
	}
	return &cfg
}

// countFailure feeds one failed connection to the rate limiter and audits
// a block the moment it starts.
func (s *Server) countFailure(source, person string) {
	srcBlocked, personBlocked := s.limit.Failure(source, person)
	if srcBlocked {
		_, until := s.limit.SourceBlocked(source)
		s.record(audit.Event{Type: audit.AuthBlocked, Source: source, Attrs: map[string]string{
			"scope": "source", "until": until.UTC().Format(time.RFC3339)}})
	}
	if personBlocked {
		_, until := s.limit.PersonBlocked(person)
		s.record(audit.Event{Type: audit.AuthBlocked, Person: person, Source: source, Attrs: map[string]string{
			"scope": "person", "until": until.UTC().Format(time.RFC3339)}})
	}
}

// personRefusal is a refusal that names the person whose key it was, for
// the rate limiter's per-person count.
type personRefusal struct {
	person string
	error
}

func (p personRefusal) Unwrap() error { return p.error }

func personOfRefusal(be *ssh.BannerError) string {
	var pr personRefusal
	if errors.As(be.Err, &pr) {
		return pr.person
	}
	return ""
}

// refusal is an authentication refusal that explains itself to the client
// as a pre-authentication banner.
func refusal(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &ssh.BannerError{Err: errors.New(msg), Message: "tandem: " + strings.ReplaceAll(safetext.Lines(msg), "\n", "\r\n") + "\r\n"}
}

// checkKey answers "who is this key, and may they log in at all?". It runs
// before the client proves it holds the key, so it records nothing as a
// success.
func (s *Server) checkKey(st *state, only *config.Person, meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	fail := func(err error) (*ssh.Permissions, error) {
		s.record(audit.Event{Type: audit.AuthFailure, Source: meta.RemoteAddr().String(), Attrs: map[string]string{
			"method": "publickey", "key": fp, "user": meta.User(), "reason": err.Error(),
		}})
		return nil, err
	}
	source := meta.RemoteAddr().String()
	if blocked, until := s.limit.SourceBlocked(source); blocked {
		return fail(refusal("too many failed logins from your address; try again after %s UTC", until.UTC().Format("15:04")))
	}
	if err := st.profile.AcceptsUserKey(key); err != nil {
		return fail(refusal("key %s refused: %v", fp, err))
	}
	p, k := st.cfg.PersonByKey(key)
	if p == nil {
		return fail(refusal("key %s is not registered to any person; ask your administrator to register it", fp))
	}
	if only != nil && p.ID != only.ID {
		return fail(refusal("key %s belongs to %s, but this connection was opened by %s", fp, p.ID, only.ID))
	}
	if blocked, until := s.limit.PersonBlocked(p.ID); blocked {
		return fail(personRefused(p.ID, refusal("too many failed logins for %s; try again after %s UTC", p.ID, until.UTC().Format("15:04"))))
	}
	d := st.engine.CheckPerson(p, k, s.now(), s.lockReason(p.ID))
	if d.Verdict != policy.Allow {
		return fail(personRefused(p.ID, refusal("%s", joinReason(d))))
	}
	return &ssh.Permissions{Extensions: map[string]string{extPerson: p.ID, extKey: fp}}, nil
}

// personRefused tags a banner refusal with the person it concerns.
func personRefused(person string, err error) error {
	be := err.(*ssh.BannerError)
	be.Err = personRefusal{person: person, error: be.Err}
	return be
}

// loginSucceeded records the login durably before it takes effect: if the
// audit log cannot take the event, the login is refused (fail closed).
func (s *Server) loginSucceeded(meta ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	err := s.audit.Append(context.Background(), audit.Event{
		Type: audit.AuthSuccess, Person: perms.Extensions[extPerson], Source: meta.RemoteAddr().String(),
		Attrs: map[string]string{"method": "publickey", "key": perms.Extensions[extKey], "user": meta.User()},
	})
	if err != nil {
		s.log.Error("audit log unavailable: login refused", "err", err)
		return nil, refusal("the audit log is unavailable, so no login is possible; tell the gateway's operators")
	}
	return perms, nil
}

// authAttempt audits failed attempts that checkKey did not already record:
// passwords, keyboard-interactive, and bad signatures. The "none" probe
// every client starts with is not an attempt.
func (s *Server) authAttempt(meta ssh.ConnMetadata, method string, err error) {
	if err == nil || method == "none" {
		return
	}
	var be *ssh.BannerError
	if method == "publickey" && errors.As(err, &be) {
		return
	}
	s.record(audit.Event{Type: audit.AuthFailure, Source: meta.RemoteAddr().String(), Attrs: map[string]string{
		"method": method, "user": meta.User(), "reason": err.Error(),
	}})
}

// record appends an event whose loss must not block the action it
// describes — a refusal, which happens anyway. Failures are logged.
func (s *Server) record(e audit.Event) {
	if err := s.audit.Append(context.Background(), e); err != nil {
		s.log.Error("audit append failed", "type", string(e.Type), "err", err)
	}
}

// joinReason renders a decision's reason and hint as one or two lines.
func joinReason(d policy.Decision) string {
	if d.Hint == "" {
		return d.Reason
	}
	return d.Reason + "\n  " + d.Hint
}
