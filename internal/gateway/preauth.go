package gateway

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/proxyproto"
	"tandem.dev/tandem/internal/ratelimit"
)

// Bounds on what one unauthenticated connection can put into the audit
// log (M19, M30): whatever a client sends, its failure is one event of
// well under 4 KiB.
const (
	maxUserBytes   = 64  // user name prefix kept in pre-authentication events
	maxReasonBytes = 256 // the refusal reason kept
	maxKeysAudited = 5   // distinct key fingerprints listed
	maxMethods     = 4   // distinct methods listed
)

// kexConn enforces the short deadline of the first handshake step. The
// connection starts with a read/write deadline of limits.kex_timeout; once
// the client's version line and its whole first binary packet (KEXINIT)
// have arrived, the deadline moves to the full handshake_timeout. x/crypto
// offers no hook between those steps, so kexConn watches the bytes the
// handshake reads: every byte up to the end of that packet passes through
// scan, nothing after it. A client that sends nothing, or dribbles, is
// gone after kex_timeout instead of holding an unauthenticated slot for the
// whole handshake_timeout.
type kexConn struct {
	net.Conn
	extendTo time.Time    // deadline once the KEXINIT is in
	pc       *preauthConn // the rate limiter's handle: when the client last sent a byte; nil: none

	// Read state; only the handshake's reader goroutine touches it.
	stage   int // 0: version line, 1: packet header, 2: packet body, 3: done, 4: give up
	line    []byte
	lines   int
	hdr     [6]byte
	hdrN    int
	need    uint32
	kexDone atomic.Bool
	timeout atomic.Bool // a read or write hit the deadline

	// head holds the connection's first bytes until proxyproto.Sniff
	// decides whether they start a PROXY header (see proxied.go).
	head        []byte
	sniffed     bool
	proxyHeader atomic.Bool // they did: the handshake was ended
}

func newKexConn(c net.Conn, extendTo time.Time, pc *preauthConn) *kexConn {
	return &kexConn{Conn: c, extendTo: extendTo, pc: pc}
}

func (k *kexConn) Read(p []byte) (int, error) {
	n, err := k.Conn.Read(p)
	if n > 0 {
		k.pc.read()
	}
	if !k.sniffed && n > 0 {
		k.head = append(k.head, p[:min(n, len(proxyproto.Signature)-len(k.head))]...)
		header, decided := proxyproto.Sniff(k.head)
		if header {
			k.proxyHeader.Store(true)
			return 0, errProxyHeader
		}
		k.sniffed = decided
		if decided {
			k.head = nil
		}
	}
	if k.stage < 3 && n > 0 {
		k.scan(p[:n])
	}
	k.noteTimeout(err)
	return n, err
}

func (k *kexConn) Write(p []byte) (int, error) {
	n, err := k.Conn.Write(p)
	k.noteTimeout(err)
	return n, err
}

func (k *kexConn) noteTimeout(err error) {
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		k.timeout.Store(true)
	}
}

// scan follows the client's first bytes: lines up to "SSH-…\n" (RFC 4253
// 4.2; at most 255 bytes each, as x/crypto reads them), then the packet
// length, padding length and message type of the first packet, which must
// be SSH_MSG_KEXINIT (20), then its body.
func (k *kexConn) scan(p []byte) {
	for len(p) > 0 && k.stage < 3 {
		switch k.stage {
		case 0:
			b := p[0]
			p = p[1:]
			if b == '\n' {
				if strings.HasPrefix(string(k.line), "SSH-") {
					k.stage = 1
				} else if k.lines++; k.lines > 32 {
					k.stage = 4
				}
				k.line = k.line[:0]
				continue
			}
			if len(k.line) >= 255 {
				k.stage = 4
				continue
			}
			k.line = append(k.line, b)
		case 1:
			c := copy(k.hdr[k.hdrN:], p)
			k.hdrN += c
			p = p[c:]
			if k.hdrN < len(k.hdr) {
				continue
			}
			length := binary.BigEndian.Uint32(k.hdr[:4])
			if k.hdr[5] != 20 || length < 2 || length > 256*1024 {
				k.stage = 4 // not a KEXINIT: x/crypto fails it anyway
				continue
			}
			k.need = length - 2 // padding length and type are read
			k.stage = 2
		case 2:
			c := min(uint32(len(p)), k.need)
			k.need -= c
			p = p[c:]
		}
		if k.stage == 2 && k.need == 0 {
			k.stage = 3
			k.line = nil
			k.kexDone.Store(true)
			k.pc.reached(preauthKex)
			_ = k.Conn.SetDeadline(k.extendTo)
		}
	}
}

// authAttempts collects, for one connection, every failed authentication
// attempt: whether any counts against the source (M19), for which person,
// and what the single audit event of a connection that ends
// unauthenticated says. Counting connections rather than attempts keeps a
// client that offers several keys from blocking itself.
type authAttempts struct {
	mu      sync.Mutex
	failed  bool // an attempt the rate limiter counts
	person  string
	count   int
	methods []string
	keys    []string
	more    int // distinct keys beyond maxKeysAudited
	user    string
	reason  string
	capped  string    // the connection cap that refused a proven key
	slot    *connSlot // the slot an authenticated outer connection holds
	// pc is the outer connection's handle for the rate limiter (nil on a
	// jump's inner handshake); set before the handshake starts.
	pc *preauthConn
}

// note records one failed attempt.
func (a *authAttempts) note(method, user string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count++
	a.user = user
	if len(a.methods) < maxMethods && !contains(a.methods, method) {
		a.methods = append(a.methods, method)
	}
	reason := err.Error()
	var be *ssh.BannerError
	if errors.As(err, &be) {
		reason = be.Err.Error()
	}
	a.reason = reason
	var kr keyRefusal
	if errors.As(err, &kr) {
		if kr.key != "" && !contains(a.keys, kr.key) {
			if len(a.keys) < maxKeysAudited {
				a.keys = append(a.keys, kr.key)
			} else {
				a.more++ // may count a key twice; it is a bound, not a census
			}
		}
		if kr.person != "" {
			a.person = kr.person
		}
		if kr.cap != "" {
			a.capped = kr.cap
			return // a cap on a proven key is no failed login
		}
	}
	a.failed = true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (a *authAttempts) setSlot(s *connSlot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.slot = s
}

func (a *authAttempts) takeSlot() *connSlot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.slot
	a.slot = nil
	return s
}

// event is the one auth.failure event of a connection that ended
// unauthenticated; stage says where it ended: "kex" (no key exchange in
// time) or "auth".
func (a *authAttempts) event(source, stage string, timedOut bool) audit.Event {
	return a.failure(source, stage, timedOut).Event()
}

// failure is event before it is built, for callers that add to it.
func (a *authAttempts) failure(source, stage string, timedOut bool) audit.AuthFailureEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := audit.AuthFailureEvent{Conn: audit.Conn{Person: a.person, Source: source}, Stage: stage, Attempts: a.count,
		Methods: strings.Join(a.methods, ","), Keys: strings.Join(a.keys, ","), KeysMore: a.more, RefusedBy: a.capped, Timeout: timedOut}
	if len(a.methods) > 0 {
		ev.Method = a.methods[len(a.methods)-1]
	}
	if len(a.keys) > 0 {
		ev.Key = a.keys[len(a.keys)-1]
	}
	if a.count > 0 {
		ev.ClientUser = clientUser(a.user, true)
		ev.Reason = cut(a.reason, maxReasonBytes)
	}
	if timedOut && a.count == 0 {
		ev.Reason = "no authentication in time"
		if stage == "kex" {
			ev.Reason = "no key exchange in time"
		}
	}
	return ev
}

// clientUser is a client's user name for an audit event: cut to
// maxUserBytes, with its SHA-256 (hex) and length whenever it was cut, or
// always (hash true) in pre-authentication events, so that they can be
// matched whatever the name's length.
func clientUser(user string, hash bool) audit.ClientUser {
	u := audit.ClientUser{User: cut(user, maxUserBytes)}
	if hash || len(user) > maxUserBytes {
		sum := sha256.Sum256([]byte(user))
		u.UserSHA256 = hex.EncodeToString(sum[:])
	}
	if len(user) > maxUserBytes {
		u.UserBytes = len(user)
	}
	return u
}

// cut returns at most n bytes of s, ending on a whole UTF-8 character and
// with invalid bytes replaced.
func cut(s string, n int) string {
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s) {
			r, size := utf8.DecodeLastRuneInString(s)
			if r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1]
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// handshakeFailed accounts for a connection that ended without
// authenticating: a failure of its source (and person) when an attempt
// failed or the connection ran out of time, and one audit event, within
// the source's audit budget.
func (s *Server) handshakeFailed(source string, kc *kexConn, a *authAttempts) {
	s.slots.release(a.takeSlot())
	if kc.proxyHeader.Load() {
		s.log.Warn("connection refused: PROXY protocol header from an address that may not send one", "source", source)
		s.countFailure(source, "")
		s.recordPreauth(audit.AuthFailureEvent{Conn: audit.Conn{Source: source}, Stage: "proxy", Reason: errProxyHeader.Error()}.Event())
		return
	}
	timedOut := kc.timeout.Load()
	a.mu.Lock()
	failed, person, count, capped := a.failed, a.person, a.count, a.capped
	a.mu.Unlock()
	// An evicted connection had been silent while others waited: it
	// counts like one that let kex_timeout pass, which is where a silent
	// connection would otherwise have ended.
	evicted := kc.pc.evicted()
	if failed || timedOut || evicted {
		s.countFailure(source, person)
	}
	if count == 0 && !timedOut && !evicted && capped == "" {
		return // closed by the client before trying: a scan, a health check
	}
	stage := "auth"
	if !kc.kexDone.Load() {
		stage = "kex"
	}
	ev := a.failure(source, stage, timedOut)
	if evicted {
		s.log.Debug("connection evicted", "source", source, "stage", stage, "reason", ratelimit.ReasonEvicted)
		s.metrics.ConnectionRefused(ratelimit.ReasonEvicted)
		ev.Evicted, ev.Reason = true, ratelimit.ReasonEvicted
	}
	s.recordPreauth(ev.Event())
}

// recordPreauth appends an event about an unauthenticated connection if
// its source has audit budget left (limits.preauth_audit_per_minute);
// otherwise it is dropped and counted for the next auth.suppressed event.
func (s *Server) recordPreauth(e audit.Event) {
	if !s.preauth.Allow(e.Source) {
		return
	}
	s.record(e)
}

// flushSuppressed writes one auth.suppressed event that says how many
// pre-authentication events were dropped since the last flush, in total
// and for the sources that dropped most.
func (s *Server) flushSuppressed() {
	dropped := s.preauth.TakeDropped()
	if len(dropped) == 0 {
		return
	}
	type kv struct {
		src string
		n   int
	}
	var all []kv
	total := 0
	for k, n := range dropped {
		all = append(all, kv{k, n})
		total += n
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].src < all[j].src })
	var top []string
	for i := 0; i < len(all) && i < 10; i++ {
		top = append(top, fmt.Sprintf("%s=%d", all[i].src, all[i].n))
	}
	s.record(audit.AuthSuppressedEvent{Dropped: total, Sources: len(all), Top: strings.Join(top, ","),
		PerMinute: s.state.Load().cfg.Gateway.Limits.PreauthAuditPerMinute}.Event())
}
