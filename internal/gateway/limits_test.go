package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/ratelimit"
	"tandem.dev/tandem/internal/testenv"
)

// Bounded attacks on loopback (M19, M30): each test floods or hoards one
// kind of slot and asserts that honest use goes on. Sources are told apart
// by binding clients to addresses of 127.0.0.0/8.

func loadSigner(t *testing.T, keyFile string) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialFrom logs in to the rig from local address ip as user, collecting
// the banners the gateway sends.
func (r *rig) dialFrom(ip, user string, auth ...ssh.AuthMethod) (*ssh.Client, []string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	var mu sync.Mutex
	var banners []string
	cc, chans, reqs, err := ssh.NewClientConn(nc, nc.RemoteAddr().String(), &ssh.ClientConfig{
		User: user, Auth: auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // test only: the gateway's identity is not the point here
		BannerCallback: func(m string) error {
			mu.Lock()
			defer mu.Unlock()
			banners = append(banners, m)
			return nil
		},
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		nc.Close()
		return nil, banners, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), banners, nil
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// silent holds connections from ip that never send a byte: it dials, reads
// what the gateway sends until the gateway closes, waits a little and dials
// again, at most dials times and until ctx ends.
func silent(ctx context.Context, port int, ip string, dials int, count *atomic.Int64) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
	for range dials {
		if ctx.Err() != nil {
			return
		}
		nc, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			count.Add(1)
			stop := context.AfterFunc(ctx, func() { nc.Close() })
			_, _ = io.Copy(io.Discard, nc)
			stop()
			nc.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TestSilentFloodHonestLogin: 300 connections from 30 addresses of
// 127.0.0.0/24 that never send a byte (re-dialled when the gateway drops
// them) take at most their network's share of the unauthenticated slots;
// a person from another network logs in quickly all along, and the silent
// connections end after kex_timeout as failures of their sources.
func TestSilentFloodHonestLogin(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	signer := loadSigner(t, aliceKey)
	lim := r.cfg.Gateway.Limits

	ctx, stop := context.WithTimeout(context.Background(), 40*time.Second)
	var wg sync.WaitGroup
	var dials atomic.Int64
	for a := range 30 {
		for range 10 {
			wg.Add(1)
			go func() { defer wg.Done(); silent(ctx, r.port, fmt.Sprintf("127.0.0.%d", a+2), 40, &dials) }()
		}
	}
	defer func() { stop(); wg.Wait() }()
	waitUntil(t, 5*time.Second, "the flood holds its network's share", func() bool {
		return r.srv.limit.Unauthenticated() >= lim.UnauthenticatedPerPrefix
	})

	// 20 logins spread over the kex_timeout, so that they also meet the
	// gateway cutting the silent connections and the flood dialling again.
	var lat []time.Duration
	maxHeld := 0
	gap := lim.KexTimeout.Duration / 16
	for range 20 {
		_, held := r.srv.limit.UnauthenticatedFrom("127.0.0.2")
		maxHeld = max(maxHeld, held)
		start := time.Now()
		c, _, err := r.dialFrom("127.1.0.1", "alice", ssh.PublicKeys(signer))
		took := time.Since(start)
		if err != nil {
			t.Fatalf("honest login during the flood: %v (after %v)", err, took)
		}
		c.Close()
		lat = append(lat, took)
		time.Sleep(gap)
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)-1] // of 20: the 99th percentile is the slowest
	t.Logf("flood: %d silent dials from 30 addresses of 127.0.0.0/24 so far; unauthenticated slots held by the flood: at most %d (cap per /24 %d, per address %d, total %d); honest logins from 127.1.0.1: n=%d p50=%v p99=%v",
		dials.Load(), maxHeld, lim.UnauthenticatedPerPrefix, ratelimit.DefaultMaxUnauthPerSource, ratelimit.DefaultMaxUnauth, len(lat), p50, p99)
	if maxHeld > lim.UnauthenticatedPerPrefix {
		t.Errorf("the flood held %d unauthenticated slots, more than its network's share %d", maxHeld, lim.UnauthenticatedPerPrefix)
	}
	if p99 > 2*time.Second {
		t.Errorf("honest login took %v during the flood, want ≤ 2s", p99)
	}

	// The silent connections end after kex_timeout and count against
	// their sources.
	waitUntil(t, lim.KexTimeout.Duration+5*time.Second, "silent connections cut at kex_timeout", func() bool {
		for _, e := range r.sink.Events() {
			if e.Type == audit.AuthFailure && e.Attrs["stage"] == "kex" && e.Attrs["timeout"] == "true" {
				return true
			}
		}
		return false
	})
	kexCut := 0
	for _, e := range r.sink.Events() {
		if e.Type == audit.AuthFailure && e.Attrs["stage"] == "kex" {
			kexCut++
		}
	}
	t.Logf("flood: %d silent dials in all; %d silent connections cut at kex_timeout (%v) and counted as failures", dials.Load(), kexCut, lim.KexTimeout.Duration)
}

// TestOneAddressFloodSameNetwork: an address that floods takes no more than
// the per-address cap, so a neighbour in its own /24 still logs in.
func TestOneAddressFloodSameNetwork(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	var wg sync.WaitGroup
	var dials atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); silent(ctx, r.port, "127.0.0.50", 4, &dials) }()
	}
	defer func() { stop(); wg.Wait() }()
	perSource := 10 // the rate limiter's default
	waitUntil(t, 5*time.Second, "the flood holds its address's share", func() bool {
		return r.srv.limit.Unauthenticated() >= perSource
	})
	if n := r.srv.limit.Unauthenticated(); n > perSource {
		t.Errorf("one address holds %d unauthenticated slots, want ≤ %d", n, perSource)
	}
	start := time.Now()
	c, _, err := r.dialFrom("127.0.0.51", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatalf("neighbour of the flooding address: %v", err)
	}
	c.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("neighbour's login took %v", took)
	}
}

// TestKexConnDeadline: the short deadline moves to the full handshake
// deadline exactly when the client's whole KEXINIT has been read, however
// the bytes are split.
func TestKexConnDeadline(t *testing.T) {
	body := append([]byte{20}, bytes.Repeat([]byte{7}, 40)...) // type KEXINIT, payload
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	pkt = append(append(pkt, 4), body...) // padding length byte, then type and body
	stream := append([]byte("junk line\r\nSSH-2.0-Test\r\n"), pkt...)
	for _, chunk := range []int{1, 3, 7, len(stream)} {
		a, b := net.Pipe()
		k := newKexConn(a, time.Now().Add(time.Hour), nil)
		go func() {
			for i := 0; i < len(stream); i += chunk {
				_, _ = b.Write(stream[i:min(i+chunk, len(stream))])
			}
		}()
		buf := make([]byte, 5)
		read := 0
		for read < len(stream) {
			n, err := k.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			read += n
			if done := k.kexDone.Load(); done != (read == len(stream)) {
				t.Fatalf("chunk %d: after %d of %d bytes kexDone=%v", chunk, read, len(stream), done)
			}
		}
		a.Close()
		b.Close()
	}
	// Not a KEXINIT: never extended.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	k := newKexConn(a, time.Now().Add(time.Hour), nil)
	go func() { _, _ = b.Write([]byte("SSH-2.0-x\n\x00\x00\x00\x05\x04\x15abcd")) }()
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(k, buf, 20)
	if k.kexDone.Load() || n != 20 {
		t.Fatalf("extended for a non-KEXINIT packet (%d bytes)", n)
	}
}

// TestConnectionCaps: a person's idle connections stop at the per-person
// cap with a refusal that names it and lists them; other persons still log
// in; one address stops at the per-source cap; `ssh gw whoami` lists the
// person's connections.
func TestConnectionCaps(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	carolKey, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	r := startRigWith(t, "limits: {connections_per_source: 24}", nil, map[string]string{"alice": alicePub, "carol": carolPub})
	alice, carol := ssh.PublicKeys(loadSigner(t, aliceKey)), ssh.PublicKeys(loadSigner(t, carolKey))
	perPerson := r.cfg.Gateway.Limits.ConnectionsPerPerson // the default, 20

	var held []*ssh.Client
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range perPerson {
		c, _, err := r.dialFrom(fmt.Sprintf("127.0.0.%d", 2+i%2), "alice", alice)
		if err != nil {
			t.Fatalf("alice's connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	_, banners, err := r.dialFrom("127.0.0.4", "alice", alice)
	if err == nil {
		t.Fatal("alice got a connection beyond connections_per_person")
	}
	msg := strings.Join(banners, "")
	if !strings.Contains(msg, "connections_per_person") || !strings.Contains(msg, "127.0.0.2") || !strings.Contains(msg, "ssh gw whoami") {
		t.Errorf("refusal does not name the cap or list the connections: %q", msg)
	}
	// Others are not locked out.
	c, _, err := r.dialFrom("127.0.0.2", "carol", carol)
	if err != nil {
		t.Fatalf("carol locked out by alice's connections: %v", err)
	}
	held = append(held, c)
	// whoami lists alice's connections.
	sess, err := held[0].NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("whoami")
	if err != nil {
		t.Fatalf("whoami: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("connections: %d open", perPerson)) || strings.Count(string(out), "from 127.0.0.") != perPerson ||
		!strings.Contains(string(out), "(this one)") {
		t.Errorf("whoami does not list alice's connections:\n%s", out)
	}
	// 127.0.0.2 holds 10 of alice's and 1 of carol's; fill it up to 24.
	for i := 11; i < 24; i++ {
		c, _, err := r.dialFrom("127.0.0.2", "carol", carol)
		if err != nil {
			t.Fatalf("carol's connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	_, banners, err = r.dialFrom("127.0.0.2", "carol", carol)
	if err == nil || !strings.Contains(strings.Join(banners, ""), "connections_per_source") {
		t.Fatalf("per-source cap: err %v, banners %q", err, banners)
	}
	// A cap is no failed login: no block, no failure counted.
	if b, _ := r.srv.limit.PersonBlocked("alice"); b {
		t.Error("alice blocked by cap refusals")
	}
	found := false
	for _, e := range r.sink.Events() {
		if e.Type == audit.AuthFailure && e.Attrs["refused_by"] == "connections_per_person" && e.Person == "alice" {
			found = true
		}
	}
	if !found {
		t.Errorf("cap refusal not audited: %v", r.sink.Types())
	}
	// Closing connections frees the slots.
	for _, c := range held[:3] {
		c.Close()
	}
	waitUntil(t, 5*time.Second, "slots freed", func() bool { return len(r.srv.slots.of("alice")) <= perPerson-3 })
	if c, _, err := r.dialFrom("127.0.0.5", "alice", alice); err != nil {
		t.Errorf("alice after closing some: %v", err)
	} else {
		c.Close()
	}
}

// TestChannelsPerConnection: one connection holds at most
// channels_per_connection channels at once; a closed one frees its place.
func TestChannelsPerConnection(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	c, _, err := r.dialFrom("127.0.0.2", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	max := r.cfg.Gateway.Limits.ChannelsPerConnection
	var open []ssh.Channel
	for i := range max {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatalf("channel %d: %v", i+1, err)
		}
		go ssh.DiscardRequests(reqs)
		open = append(open, ch)
	}
	_, _, err = c.OpenChannel("session", nil)
	var oc *ssh.OpenChannelError
	if !errors.As(err, &oc) || oc.Reason != ssh.ResourceShortage || !strings.Contains(oc.Message, "channels_per_connection") {
		t.Fatalf("channel beyond the cap: %v", err)
	}
	open[0].Close()
	waitUntil(t, 5*time.Second, "channel place freed", func() bool {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			return false
		}
		go ssh.DiscardRequests(reqs)
		ch.Close()
		return true
	})
}

// TestWaitingPerPerson: a person has at most waiting_per_person sessions
// waiting for a second person; the next is refused with the cap's name.
func TestWaitingPerPerson(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	c, _, err := r.dialFrom("127.0.0.2", "root%prod1", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	max := r.cfg.Gateway.Limits.WaitingPerPerson
	shell := func() (*ssh.Session, *bytes.Buffer) {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		s.Stderr = &stderr
		if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Shell(); err != nil {
			t.Fatal(err)
		}
		return s, &stderr
	}
	for range max {
		s, _ := shell()
		defer s.Close()
	}
	r.waitEvents(t, audit.SessionWaiting, max)
	s, stderr := shell()
	err = s.Wait()
	if err == nil || !strings.Contains(stderr.String(), "waiting_per_person") {
		t.Fatalf("waiting session beyond the cap: err %v, stderr %q", err, stderr)
	}
}

// TestFailedConnectionAuditBytes: a connection with a 200 kB user name and
// 20 keys costs one audit event of under 4 KiB; a source's failures beyond
// its audit budget are dropped and summed up in auth.suppressed.
func TestFailedConnectionAuditBytes(t *testing.T) {
	dir := t.TempDir()
	_, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRigWith(t, "limits: {failures_per_source: 100, disk_check_every: 1s}", nil, map[string]string{"alice": alicePub})
	var signers []ssh.Signer
	for range 20 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	user := strings.Repeat("u", 200_000)
	if _, _, err := r.dialFrom("127.0.0.7", user, ssh.PublicKeys(signers...)); err == nil {
		t.Fatal("strangers' keys accepted")
	}
	from := func(src string) []audit.Event {
		var out []audit.Event
		for _, e := range r.sink.Events() {
			if strings.HasPrefix(e.Source, src+":") || e.Type == audit.AuthSuppressed {
				out = append(out, e)
			}
		}
		return out
	}
	waitUntil(t, 5*time.Second, "the failure's audit event", func() bool { return len(from("127.0.0.7")) > 0 })
	time.Sleep(200 * time.Millisecond) // anything else it would write
	events := from("127.0.0.7")
	size := 0
	for _, e := range events {
		b, _ := json.Marshal(e)
		size += len(b)
	}
	sum := sha256.Sum256([]byte(user))
	t.Logf("audit bytes for one failed connection with a 200 kB user name and 20 keys: %d in %d event(s): %+v", size, len(events), events[0].Attrs)
	if len(events) != 1 || size >= 4096 {
		t.Fatalf("%d events, %d bytes of audit for one failed connection, want 1 and < 4096", len(events), size)
	}
	a := events[0].Attrs
	if len(a["user"]) > 64 || a["user_sha256"] != hex.EncodeToString(sum[:]) || a["user_bytes"] != "200000" {
		t.Errorf("user name not cut and hashed: %q", a)
	}
	if n, _ := strconv.Atoi(a["attempts"]); n < 6 || strings.Count(a["keys"], "SHA256:") != 5 || a["keys_more"] == "" {
		t.Errorf("attempts and keys not summed up: %q", a)
	}

	// 30 failed connections from one address: at most the budget is
	// written, the rest counted.
	const n = 30
	for range n {
		if _, _, err := r.dialFrom("127.0.0.8", "x", ssh.PublicKeys(signers[0])); err == nil {
			t.Fatal("stranger's key accepted")
		}
	}
	budget := r.cfg.Gateway.Limits.PreauthAuditPerMinute
	waitUntil(t, 10*time.Second, "written and suppressed add up", func() bool {
		written, dropped := 0, 0
		for _, e := range from("127.0.0.8") {
			if e.Type == audit.AuthFailure {
				written++
			} else if strings.Contains(e.Attrs["top"], "127.0.0.8=") {
				d, _ := strconv.Atoi(e.Attrs["dropped"])
				dropped += d
			}
		}
		if written > budget+2 { // the bucket refills a little while the test runs
			t.Fatalf("%d events written for one address, budget %d a minute", written, budget)
		}
		return written+dropped == n
	})
}

// publicOnly holds a public key but not its private half: it can ask
// whether the key would be accepted, never sign.
type publicOnly struct{ pub ssh.PublicKey }

func (p publicOnly) PublicKey() ssh.PublicKey { return p.pub }
func (p publicOnly) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	return nil, errors.New("no private key")
}

// TestNothingDisclosedBeforeProof: whoever holds only a person's public
// key learns nothing about the person (lock reason, obligations, key
// expiry); the key's holder reads why they are refused, and the refusal
// counts and is audited.
func TestNothingDisclosedBeforeProof(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	carolKey, carolPub := testenv.KeyPair(t, dir, "carol", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub, "carol": carolPub})
	// carol's training has lapsed; alice is locked.
	var lines []string
	for _, l := range strings.Split(r.yaml, "\n") {
		if strings.Contains(l, "id: carol") {
			l = strings.Replace(l, "training_valid_until: 2099-12-31", "training_valid_until: 2020-01-01", 1)
		}
		lines = append(lines, l)
	}
	cfg, err := config.Parse(filepath.Join(r.dir, "tandem.yaml"), []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.lockPerson(context.Background(), "alice", "test", "case 4711 under review", time.Time{}); err != nil {
		t.Fatal(err)
	}
	secret := []string{"4711", "review", "lock", "training", "obligation", "expire", "alice", "carol"}
	for _, tc := range []struct{ person, key, want string }{{"alice", aliceKey, "4711"}, {"carol", carolKey, "training"}} {
		real := loadSigner(t, tc.key)
		_, banners, err := r.dialFrom("127.0.0.2", tc.person, ssh.PublicKeys(publicOnly{real.PublicKey()}))
		if err == nil {
			t.Fatalf("%s: logged in without the private key", tc.person)
		}
		for _, s := range secret {
			if strings.Contains(strings.ToLower(strings.Join(banners, "")), s) {
				t.Errorf("%s: the public key alone learned %q: %q", tc.person, s, banners)
			}
		}
		_, banners, err = r.dialFrom("127.0.0.3", tc.person, ssh.PublicKeys(real))
		if err == nil || !strings.Contains(strings.Join(banners, ""), tc.want) {
			t.Errorf("%s: the key holder does not read why: err %v, banners %q", tc.person, err, banners)
		}
	}
	// Both refusals after proof were audited and counted for the person.
	r.waitEvents(t, audit.AuthFailure, 2)
	for _, p := range []string{"alice", "carol"} {
		found := false
		for _, e := range r.sink.Events() {
			if e.Type == audit.AuthFailure && e.Person == p && strings.HasPrefix(e.Source, "127.0.0.3:") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s's refusal not audited: %v", p, r.sink.Events())
		}
	}
}

// TestDiskLowRefusesSessions: below the refuse level the gateway refuses
// new sessions on targets with a message, warns and counts it, and still
// serves its own commands (and their audit).
func TestDiskLowRefusesSessions(t *testing.T) {
	dir := t.TempDir()
	aliceKey, alicePub := testenv.KeyPair(t, dir, "alice", "ecdsa")
	r := startRig(t, nil, map[string]string{"alice": alicePub})
	if got := diskLevel(50<<30, 100<<30, r.cfg.Gateway.Limits); got != diskOK {
		t.Fatalf("half free: level %d", got)
	}
	if got := diskLevel(5<<30, 100<<30, r.cfg.Gateway.Limits); got != diskWarn { // 5 %
		t.Fatalf("5 %% free: level %d", got)
	}
	if got := diskLevel(1<<30, 4<<30, r.cfg.Gateway.Limits); got != diskWarn { // 25 %, but under 2 GiB
		t.Fatalf("1 of 4 GiB free: level %d", got)
	}
	if got := diskLevel(400<<20, 100<<30, r.cfg.Gateway.Limits); got != diskRefuse {
		t.Fatalf("400 MiB free: level %d", got)
	}
	if free, total, err := statfs(filepath.Join(r.dir, "not", "yet")); err != nil || free == 0 || total < free {
		t.Errorf("statfs of a directory not made yet: %d of %d, %v", free, total, err)
	}
	r.srv.disk.mu.Lock()
	r.srv.disk.statfs = func(string) (uint64, uint64, error) { return 100 << 20, 100 << 30, nil }
	r.srv.disk.mu.Unlock()
	r.srv.checkDisk()
	if r.srv.DiskWarnings() == 0 {
		t.Error("no warning counted")
	}
	c, _, err := r.dialFrom("127.0.0.2", "root%db1", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = c.OpenChannel("session", nil)
	if err == nil || !strings.Contains(err.Error(), "almost full") {
		t.Fatalf("session with the disk full: %v", err)
	}
	g, _, err := r.dialFrom("127.0.0.2", "alice", ssh.PublicKeys(loadSigner(t, aliceKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	s, _ := g.NewSession()
	if out, err := s.Output("whoami"); err != nil || !strings.Contains(string(out), "alice") {
		t.Fatalf("whoami with the disk full: %v %s", err, out)
	}
	if n := len(r.target.AcceptedCertIDs()); n != 0 {
		t.Fatalf("target reached %d times with the disk full", n)
	}
}

func TestCutUser(t *testing.T) {
	for _, in := range []string{"", "root%db1", strings.Repeat("ä", 40), strings.Repeat("x", 63) + "ü", "\xff\xfe" + strings.Repeat("a", 100)} {
		cu := clientUser(in, true)
		u := cu.User
		if len(u) > maxUserBytes+3 || !utf8.ValidString(u) || !strings.HasPrefix(in, strings.TrimRight(u, "\uFFFD")) && !strings.Contains(in, "\xff") {
			t.Errorf("clientUser(%q): user %q", in, u)
		}
		if (len(in) > maxUserBytes) != (cu.UserBytes != 0) || len(cu.UserSHA256) != 64 {
			t.Errorf("clientUser(%q) = %+v", in, cu)
		}
	}
}
