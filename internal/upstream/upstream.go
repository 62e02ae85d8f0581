// Package upstream opens the gateway's own SSH connection to a target.
//
// Targets never see a person's key: for every session the dialer makes a
// fresh key pair and has the user CA sign a certificate for exactly one
// login, valid for minutes, whose key id names the session and the person
// so the target's own sshd log says who was there (M2). The target's host
// key is verified against the pinned key or host CA from the config; there
// is no trust on first use.
package upstream

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"tandem.dev/tandem/internal/netutil"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
)

// Dialer connects to targets on behalf of sessions.
type Dialer struct {
	Keys         *ca.Keys
	Profile      cryptoprofile.Profile
	Timeout      time.Duration // connect plus handshake
	CertValidity time.Duration
	// SourceAddress is gateway.egress_addresses: the source-address
	// critical option of every session certificate (none when empty).
	SourceAddress []string
}

// Target names what one session connects to, and for whom.
type Target struct {
	Host      *config.Host
	Login     string
	SessionID string
	Person    string
	PTY       bool
	// Forward asks for a certificate that permits port forwarding: the
	// session is one forward, opened as direct-tcpip on the target, so that
	// the destination is resolved there and the target's sshd
	// (AllowTcpForwarding, PermitOpen) decides last.
	Forward bool
}

// KeyID is the certificate key id for a session: the target's sshd logs it
// with every login, so keep it short and greppable.
func (t Target) KeyID() string {
	return fmt.Sprintf("tandem session=%s person=%s host=%s", t.SessionID, t.Person, t.Host.Name)
}

// HostKeyError reports a target whose host key is not the configured one.
type HostKeyError struct {
	Host        string
	Fingerprint string
	Reason      string
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key of %s does not match the configuration (%s, presented %s)", e.Host, e.Reason, e.Fingerprint)
}

// UnreachableError reports a target that could not be connected to.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("cannot reach %s: %v", e.Host, e.Err) }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Dial connects and authenticates to the target with a fresh certificate.
func (d *Dialer) Dial(ctx context.Context, t Target) (*ssh.Client, error) {
	c, err := d.DialConn(ctx, t)
	if err != nil {
		return nil, err
	}
	return ssh.NewClient(c.Conn, c.Chans, c.Reqs), nil
}

// Conn is an authenticated connection to a target without the three
// goroutines an ssh.Client runs to serve it. Its owner must keep Chans and
// Reqs served (Refuse does that) until the connection is closed.
type Conn struct {
	ssh.Conn
	Chans <-chan ssh.NewChannel
	Reqs  <-chan *ssh.Request
	ack   *netutil.QuickAckConn
}

// Interactive tells the connection that the target now sends with Nagle's
// algorithm off (sshd does once a session has a terminal), so reads need
// no immediate acknowledgement any more (netutil.QuickAckConn).
func (c *Conn) Interactive() { c.ack.Interactive() }

// Refuse answers what the target asks of the gateway on the connection
// level: channels it opens (the gateway never forwards any towards a
// client) are rejected and global requests (keep-alive probes) are
// refused, as an ssh.Client does. It returns at once.
func (c *Conn) Refuse(nch ssh.NewChannel, r *ssh.Request) {
	if nch != nil {
		_ = nch.Reject(ssh.Prohibited, "the gateway accepts no channels from a target")
	}
	if r != nil && r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// DialConn connects and authenticates to the target with a fresh
// certificate, like Dial, and leaves serving the connection to the caller.
// An idle interactive session keeps its target connection for hours; doing
// without ssh.Client saves its goroutines for every one of them.
func (d *Dialer) DialConn(ctx context.Context, t Target) (*Conn, error) {
	signer, err := d.sessionSigner(t)
	if err != nil {
		return nil, err
	}
	var hkErr *HostKeyError
	cfg := &ssh.ClientConfig{
		Config:            d.Profile.Config(),
		User:              t.Login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyAlgorithms: hostKeyAlgorithms(t.Host),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hkErr = checkHostKey(t.Host, key)
			if hkErr != nil {
				return hkErr
			}
			return nil
		},
		ClientVersion: "SSH-2.0-Tandem",
		Timeout:       d.Timeout,
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	// TCP keep-alives give the target connection a deadline without a
	// goroutine per session: a target that vanishes is noticed in about
	// 30 s of silence, and the session ends instead of hanging.
	nd := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
	tcp, err := nd.DialContext(ctx, "tcp", t.Host.Address)
	if err != nil {
		return nil, &UnreachableError{Host: t.Host.Name, Err: err}
	}
	conn := netutil.QuickAck(tcp)
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Host.Address, cfg)
	if err != nil {
		conn.Close()
		if hkErr != nil {
			return nil, hkErr
		}
		return nil, &UnreachableError{Host: t.Host.Name, Err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return &Conn{Conn: c, Chans: chans, Reqs: reqs, ack: conn}, nil
}

// sessionSigner makes a one-off key and certificate for this session. The
// private key never leaves memory.
func (d *Dialer) sessionSigner(t Target) (ssh.Signer, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	cert, err := d.Keys.SignUser(ca.UserCert{
		Key:           s.PublicKey(),
		KeyID:         t.KeyID(),
		Principals:    []string{t.Login},
		Validity:      d.CertValidity,
		PTY:           t.PTY,
		Forward:       t.Forward,
		SourceAddress: d.SourceAddress,
	})
	if err != nil {
		return nil, err
	}
	return ssh.NewCertSigner(cert, s)
}

// hostKeyAlgorithms asks the target for exactly the kind of key we can
// verify, so that a server with several host keys presents the pinned one.
func hostKeyAlgorithms(h *config.Host) []string {
	if h.HostPublicKey != nil {
		switch h.HostPublicKey.Type() {
		case ssh.KeyAlgoRSA:
			return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
		default:
			return []string{h.HostPublicKey.Type()}
		}
	}
	return []string{
		ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoED25519v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	}
}

func checkHostKey(h *config.Host, key ssh.PublicKey) *HostKeyError {
	fp := ssh.FingerprintSHA256(key)
	switch {
	case h.HostPublicKey != nil:
		if !bytes.Equal(key.Marshal(), h.HostPublicKey.Marshal()) {
			return &HostKeyError{Host: h.Name, Fingerprint: fp, Reason: "expected " + ssh.FingerprintSHA256(h.HostPublicKey)}
		}
		return nil
	case h.HostCAKey != nil:
		checker := ssh.CertChecker{
			IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
				return bytes.Equal(auth.Marshal(), h.HostCAKey.Marshal())
			},
		}
		// The certificate must name the host as configured, whatever
		// address it is reached at.
		if err := checker.CheckHostKey(net.JoinHostPort(h.Name, "22"), nil, key); err != nil {
			return &HostKeyError{Host: h.Name, Fingerprint: fp, Reason: "no valid certificate from the configured host CA: " + err.Error()}
		}
		return nil
	}
	return &HostKeyError{Host: h.Name, Fingerprint: fp, Reason: "no host_key or host_ca configured"}
}

// IsHostKeyError reports whether err is (or wraps) a host key mismatch.
func IsHostKeyError(err error) bool {
	var e *HostKeyError
	return errors.As(err, &e)
}
