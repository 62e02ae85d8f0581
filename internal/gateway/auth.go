package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"tandem.dev/tandem/internal/ratelimit"
	"tandem.dev/tandem/internal/store"
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
// made by the same person as the connection it travels in. Each connection
// runs on a copy made by connConfig, whose callbacks note its attempts.
func (s *Server) serverConfig(st *state, person *config.Person, names ...string) (*ssh.ServerConfig, error) {
	hostSigner, err := s.keys.LiveHostSigner(names...)
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
			return s.checkKey(st, meta, key)
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			return s.verifiedLogin(st, person, meta, perms, nil)
		},
	}
	// The certificate covers clients that trust the host CA; the plain key
	// covers clients that pinned the gateway's key instead.
	cfg.AddHostKey(hostSigner)
	cfg.AddHostKey(s.keys.HostKey)
	return cfg, nil
}

// connConfig is the server configuration for one connection: base, with
// callbacks that note every failed attempt in a (for the rate limiter and
// for the one audit event a failed connection costs) and, on an outer
// connection (outer true), take one of the person's connection slots.
func (s *Server) connConfig(st *state, base *ssh.ServerConfig, only *config.Person, a *authAttempts, outer bool) *ssh.ServerConfig {
	cfg := *base
	cfg.VerifiedPublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		if !outer {
			return s.verifiedLogin(st, only, meta, perms, nil)
		}
		return s.verifiedLogin(st, only, meta, perms, a)
	}
	cfg.AuthLogCallback = func(meta ssh.ConnMetadata, method string, err error) {
		a.pc.reached(preauthAuth)
		if err != nil && method != "none" {
			a.note(method, meta.User(), err)
		}
	}
	return &cfg
}

// countFailure feeds one failed connection to the rate limiter and audits
// a block the moment it starts.
//
// A block is also logged and reported to the store, so that the operator
// sees it (`tandem blocks`) and can lift it (`tandem unblock`).
func (s *Server) countFailure(source, person string) {
	srcBlocked, personBlocked := s.limit.Failure(source, person)
	if srcBlocked {
		_, until := s.limit.SourceBlocked(source)
		s.record(audit.AuthBlockedEvent{Conn: audit.Conn{Source: source}, Scope: store.BlockSource, Until: until}.Event())
		s.reportBlock(store.BlockSource, ratelimit.SourceKey(source), until, "too many failed logins from this address")
	}
	if personBlocked {
		_, until := s.limit.PersonBlocked(person)
		s.record(audit.AuthBlockedEvent{Conn: audit.Conn{Person: person, Source: source}, Scope: store.BlockPerson, Until: until}.Event())
		s.reportBlock(store.BlockPerson, person, until, "too many failed logins for this person (last from "+source+")")
	}
}

// reportBlock logs a block and records it in the store for `tandem blocks`.
func (s *Server) reportBlock(scope, key string, until time.Time, why string) {
	s.log.Warn("blocked after failed logins", "scope", scope, "blocked", key, "until", until.UTC().Format(time.RFC3339), "why", why,
		"lift", "tandem unblock "+key)
	if s.store == nil {
		return
	}
	if err := s.store.RecordBlock(context.Background(), store.Block{Scope: scope, Key: key, Until: until, Reason: why, At: s.now()}); err != nil {
		s.log.Error("state store: record block", "err", err)
	}
}

// applyUnblocks lifts the blocks operators asked to lift (`tandem
// unblock`) and audits each. Called by the watcher.
func (s *Server) applyUnblocks(ctx context.Context) {
	us, err := s.store.PendingUnblocks(ctx)
	if err != nil || len(us) == 0 {
		return
	}
	for _, u := range us {
		var was bool
		if u.Scope == store.BlockPerson {
			was = s.limit.UnblockPerson(u.Key)
		} else {
			was = s.limit.UnblockSource(u.Key)
		}
		ev := audit.AuthUnblockedEvent{Time: u.At, Scope: u.Scope, By: u.By, WasBlocked: was}
		if u.Scope == store.BlockPerson {
			ev.Person = u.Key
		} else {
			ev.Source = u.Key
		}
		if err := audit.OrRefuse(ctx, s.audit, ev.Event()); err != nil {
			s.failed(ctx, "audit log refuses unblock event", err)
			return
		}
		s.log.Info("block lifted", "scope", u.Scope, "unblocked", u.Key, "by", u.By)
		if err := s.store.MarkUnblockApplied(ctx, u.ID); err != nil {
			s.failed(ctx, "state store", err)
			return
		}
	}
}

// keyRefusal is a refusal of one key: the fingerprint for the audit event,
// the person whose key it was (after the signature only) for the rate
// limiter's per-person count, and cap when a connection cap refused a
// proven key, which is no failure of the person's.
type keyRefusal struct {
	person, key, cap string
	error
}

func (k keyRefusal) Unwrap() error { return k.error }

// keyRefused tags a banner refusal with the key and person it concerns.
func keyRefused(person, key string, err error) error {
	be := err.(*ssh.BannerError)
	be.Err = keyRefusal{person: person, key: key, error: be.Err}
	return be
}

// refusal is an authentication refusal that explains itself to the client
// as a pre-authentication banner.
func refusal(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &ssh.BannerError{Err: errors.New(msg), Message: "tandem: " + strings.ReplaceAll(safetext.Lines(msg), "\n", "\r\n") + "\r\n"}
}

// checkKey answers "is this a key the gateway knows?". x/crypto calls it
// for the client's unsigned query too, when nobody has proven to hold the
// key yet, so it says nothing about the key's person (M30): a blocked
// source, a key the profile refuses and an unregistered key are refused
// here, with reasons that concern only the address and the key; every
// registered key is accepted and its person checked in verifiedLogin, after
// the signature.
func (s *Server) checkKey(st *state, meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	if blocked, until := s.limit.SourceBlocked(meta.RemoteAddr().String()); blocked {
		return nil, keyRefused("", fp, refusal("too many failed logins from your address; try again after %s UTC", until.UTC().Format("15:04")))
	}
	if err := st.profile.AcceptsUserKey(key); err != nil {
		return nil, keyRefused("", fp, refusal("key %s refused: %v", fp, err))
	}
	p, _ := st.cfg.PersonByKey(key)
	if p == nil {
		return nil, keyRefused("", fp, refusal("key %s is not registered to any person; ask your administrator to register it", fp))
	}
	return &ssh.Permissions{Extensions: map[string]string{extPerson: p.ID, extKey: fp}}, nil
}

// verifiedLogin runs once the client has proven it holds the key: now the
// person may read why they cannot log in (a lock, lapsed obligations, an
// expired key, a block). Then, on an outer connection (a non-nil), it takes
// a connection slot, and it records the login durably.
func (s *Server) verifiedLogin(st *state, only *config.Person, meta ssh.ConnMetadata, perms *ssh.Permissions, a *authAttempts) (*ssh.Permissions, error) {
	id, fp := perms.Extensions[extPerson], perms.Extensions[extKey]
	p := st.cfg.Person(id)
	var k *config.Key
	if p != nil {
		k = keyByFingerprint(p, fp)
	}
	if p == nil || k == nil {
		return nil, keyRefused("", fp, refusal("key %s is not registered to any person; ask your administrator to register it", fp))
	}
	if only != nil && p.ID != only.ID {
		return nil, keyRefused("", fp, refusal("key %s belongs to %s, but this connection was opened by %s", fp, p.ID, only.ID))
	}
	if msg := routeTooLong(meta.User(), only != nil); msg != "" {
		return nil, keyRefused(p.ID, fp, refusal("%s", msg))
	}
	if blocked, until := s.limit.PersonBlocked(p.ID); blocked {
		return nil, keyRefused(p.ID, fp, refusal("too many failed logins for %s; try again after %s UTC", p.ID, until.UTC().Format("15:04")))
	}
	if only == nil {
		// One user name per person: a plain user name that names another
		// person is refused, so that nobody reads `bob@gw` in a log or a
		// shell history as bob's login. The person's own id, any name that
		// is not a person's, and the login%host route stay as they are.
		if user := meta.User(); !strings.Contains(user, "%") && user != p.ID && st.cfg.Person(user) != nil {
			return nil, keyRefused(p.ID, fp, refusal("the key %s is %s's, not %s's: log in as %s (ssh %s@gw) or name a route (ssh LOGIN%%HOST@gw)",
				fp, p.ID, user, p.ID, p.ID))
		}
	}
	if d := st.engine.CheckPerson(p, k, s.now(), s.lockReason(p.ID)); d.Verdict != policy.Allow {
		return nil, keyRefused(p.ID, fp, refusal("%s", d.Message()))
	}
	if a != nil {
		slot, err := s.slots.acquire(p.ID, meta.RemoteAddr().String(), s.now(), st.cfg.Gateway.Limits)
		if err != nil {
			return nil, err
		}
		a.setSlot(slot)
	}
	out, err := s.loginSucceeded(meta, perms)
	if err != nil && a != nil {
		s.slots.release(a.takeSlot())
	}
	return out, err
}

// loginSucceeded records the login durably before it takes effect: if the
// audit log cannot take the event, the login is refused (fail closed).
func (s *Server) loginSucceeded(meta ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	ev := audit.AuthSuccessEvent{Conn: audit.Conn{Person: perms.Extensions[extPerson], Source: meta.RemoteAddr().String()},
		Method: "publickey", Key: perms.Extensions[extKey], ClientUser: clientUser(meta.User(), false)}
	// The key callback carries no context.
	if err := audit.OrRefuse(context.Background(), s.audit, ev.Event()); err != nil {
		s.log.Error("audit log unavailable: login refused", "err", err)
		return nil, refusal("the audit log is unavailable, so no login is possible; tell the gateway's operators")
	}
	return perms, nil
}

// record appends an event whose loss must not block the action it
// describes — a refusal, which happens anyway, or an end (audit.BestEffort).
// Not under a connection's context: a refusal is recorded also when the
// connection that caused it is gone.
func (s *Server) record(e audit.Event) {
	audit.BestEffort(context.Background(), s.audit, s.log, e)
}
