package gateway

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
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

// refusal is an authentication refusal that explains itself to the client
// as a pre-authentication banner.
func refusal(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &ssh.BannerError{Err: errors.New(msg), Message: "tandem: " + msg + "\r\n"}
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
	d := st.engine.CheckPerson(p, k, s.now(), "")
	if d.Verdict != policy.Allow {
		return fail(refusal("%s", joinReason(d)))
	}
	return &ssh.Permissions{Extensions: map[string]string{extPerson: p.ID, extKey: fp}}, nil
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
	return d.Reason + "\r\n  " + d.Hint
}
