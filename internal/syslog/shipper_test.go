package syslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
	"tandem.dev/tandem/internal/vault"
)

// collectorServer is an in-process RFC 5425 collector: mutual TLS,
// octet-counted frames, every message kept in arrival order.
type collectorServer struct {
	t    *testing.T
	addr string
	conf *tls.Config

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	msgs  []string
	wg    sync.WaitGroup
	cut   int // when > 0, the next connection is reset after this many bytes
}

func newCollectorServer(t *testing.T, pki *testenv.PKI) *collectorServer {
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(pki.CA)
	pool.AppendCertsFromPEM(b)
	s := &collectorServer{t: t, addr: "127.0.0.1:0", conf: &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *collectorServer) start() {
	ln, err := tls.Listen("tcp", s.addr, s.conf)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.read(c)
			}()
		}
	}()
}

// stop closes the listener and every connection, as a collector that
// goes away does.
func (s *collectorServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *collectorServer) read(c net.Conn) {
	s.mu.Lock()
	cut := s.cut
	s.cut = 0
	s.mu.Unlock()
	if cut > 0 { // a collector that dies mid-message: what it read is gone
		_, _ = io.ReadFull(c, make([]byte, cut))
		_ = c.(*tls.Conn).NetConn().(*net.TCPConn).SetLinger(0)
		c.Close()
		return
	}
	br := bufio.NewReader(c)
	for {
		lenText, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenText, " "))
		if err != nil || n <= 0 {
			s.t.Errorf("bad frame length %q", lenText)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, string(msg))
		s.mu.Unlock()
	}
}

func (s *collectorServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

var indexRE = regexp.MustCompile(`\[audit@32473 index="(\d+)" segment="(\d+)"`)

// recordIndexes returns the record indexes of msgs in arrival order.
func recordIndexes(msgs []string) []uint64 {
	var out []uint64
	for _, m := range msgs {
		if sm := indexRE.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.ParseUint(sm[1], 10, 64)
			out = append(out, n)
		}
	}
	return out
}

// checkOnceInOrder checks that, duplicates removed by index, the records
// 0..n-1 arrived, each first seen in order.
func checkOnceInOrder(t *testing.T, idx []uint64, n uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	var next uint64
	for _, i := range idx {
		if seen[i] {
			continue
		}
		if i != next {
			t.Fatalf("record %d arrived where %d was due (order %v)", i, next, idx)
		}
		seen[i] = true
		next++
	}
	if next != n {
		t.Fatalf("%d distinct records arrived, want %d", next, n)
	}
}

type fixture struct {
	dir  string
	keys audit.Keys
	log  *audit.Log
	key  *audit.SigningKey
	pki  *testenv.PKI
	srv  *collectorServer
	opts Options
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	if err := vault.GenerateFileKEK(filepath.Join(dir, "kek")); err != nil {
		t.Fatal(err)
	}
	kek, err := vault.FileKEK(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(filepath.Join(dir, "vault"), kek)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := audit.GenerateSigningKey("tandem/audit")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "audit"), Key: key, Keys: v, CheckpointEvents: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fixture{dir: dir, keys: v, log: l, key: key, pki: testenv.NewPKI(t, filepath.Join(dir, "pki"), "collector CA")}
	f.srv = newCollectorServer(t, f.pki)
	f.opts = Options{
		Config: config.Syslog{
			Collectors: []config.Collector{{Name: "central", Addr: f.srv.addr, ServerName: "localhost",
				CAFile: f.pki.CA, CertFile: f.pki.ClientCert, KeyFile: f.pki.ClientKey}},
			Hostname: "gw1", MaxBehind: 1000, MaxAge: config.Duration{Duration: time.Hour}, WarnPercent: 80,
			Timeout: config.Duration{Duration: 2 * time.Second}, Settle: config.Duration{Duration: 100 * time.Millisecond},
			Retry: config.Duration{Duration: 50 * time.Millisecond},
		},
		AuditDir: filepath.Join(dir, "audit"), StateDir: filepath.Join(dir, "syslog"), Durable: l.Size,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), poll: 20 * time.Millisecond,
	}
	return f
}

func (f *fixture) append(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		e := audit.Event{Type: audit.SessionStart, Tenant: "nord", Person: "alice", Host: "db1", Source: "10.0.0.1:4711",
			Attrs: map[string]string{"command": fmt.Sprint("ls ", i)}}
		if err := f.log.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// run starts a shipper with o and stops it at the end of the test.
func run(t *testing.T, o Options) *Shipper {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func waitRecords(t *testing.T, srv *collectorServer, n uint64) {
	t.Helper()
	ok := testenv.WaitFor(10*time.Second, func() bool {
		seen := map[uint64]bool{}
		for _, i := range recordIndexes(srv.messages()) {
			seen[i] = true
		}
		return uint64(len(seen)) >= n
	})
	if !ok {
		t.Fatalf("collector has %d record messages, want %d distinct", len(recordIndexes(srv.messages())), n)
	}
}

func TestShipFramingAndStructuredData(t *testing.T) {
	f := newFixture(t)
	f.append(t, 10)
	run(t, f.opts)
	waitRecords(t, f.srv, f.log.Size())
	msgs := f.srv.messages()
	checkOnceInOrder(t, recordIndexes(msgs), uint64(len(recordIndexes(msgs))))
	first := msgs[0]
	for _, want := range []string{`<110>1 `, ` gw1 tandem - session.start [audit@32473 index="0" segment="1" tenant="nord" type="session.start" class="admin" v="2"]`,
		`[admin@32473 day="`, `[content@32473 day="`, `[operational@32473 day="`, ` ct_sha256="`, ` {"index":0,"parts":[`} {
		if !strings.Contains(first, want) {
			t.Errorf("first message lacks %q:\n%s", want, first)
		}
	}
	// Quoted, as plaintext would appear in JSON or a parameter: a short
	// name like db1 also turns up by chance inside base64 ciphertext.
	for _, leak := range []string{`"alice"`, `"db1"`, "10.0.0.1", "ls 0"} {
		if strings.Contains(strings.Join(msgs, "\n"), leak) {
			t.Errorf("a message carries %q in clear", leak)
		}
	}
	if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(strings.Join(f.srv.messages(), "\n"), "[checkpoint@32473 ") }) {
		t.Fatal("no checkpoint message arrived")
	}
}

// TestShipWithClockBehind: the shipper's clock (Options.Now) may be a
// test's, moved back by hours; the socket's write deadline stays on the
// real clock, or every write would time out at once.
func TestShipWithClockBehind(t *testing.T) {
	f := newFixture(t)
	f.opts.Now = func() time.Time { return time.Now().Add(-6 * time.Hour) }
	f.append(t, 5)
	run(t, f.opts)
	waitRecords(t, f.srv, f.log.Size())
}

func TestShipOutageResendsInOrderAtLeastOnce(t *testing.T) {
	f := newFixture(t)
	f.append(t, 20)
	s := run(t, f.opts)
	waitRecords(t, f.srv, f.log.Size())
	f.srv.stop()
	f.append(t, 50) // while the collector is away
	if !testenv.WaitFor(5*time.Second, func() bool { st := s.Status(); return len(st) == 1 && !st[0].Connected && st[0].Depth >= 50 }) {
		t.Fatalf("status while the collector is away: %+v", s.Status())
	}
	f.srv.start()
	f.append(t, 5)
	waitRecords(t, f.srv, f.log.Size())
	checkOnceInOrder(t, recordIndexes(f.srv.messages()), f.log.Size())
	if !testenv.WaitFor(5*time.Second, func() bool { st := s.Status(); return st[0].Depth == 0 && st[0].Connected }) {
		t.Fatalf("status after catching up: %+v", s.Status())
	}
}

// TestShipResetMidMessage: a collector that resets the connection in the
// middle of a message gets everything again on the next connection; the
// cursor did not move past what it lost.
func TestShipResetMidMessage(t *testing.T) {
	f := newFixture(t)
	f.srv.mu.Lock()
	f.srv.cut = 3000
	f.srv.mu.Unlock()
	f.append(t, 40)
	s := run(t, f.opts)
	waitRecords(t, f.srv, f.log.Size())
	checkOnceInOrder(t, recordIndexes(f.srv.messages()), f.log.Size())
	f.srv.mu.Lock()
	conns := len(f.srv.conns)
	f.srv.mu.Unlock()
	if conns < 2 {
		t.Fatalf("%d connections: the reset did not happen", conns)
	}
	if !testenv.WaitFor(5*time.Second, func() bool { return s.Status()[0].Depth == 0 }) {
		t.Fatalf("status: %+v", s.Status())
	}
}

func TestShipResumesFromCursorAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.append(t, 10)
	s, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitRecords(t, f.srv, f.log.Size())
	testenv.WaitFor(5*time.Second, func() bool { return s.Status()[0].Depth == 0 })
	cancel()
	<-done
	before := len(recordIndexes(f.srv.messages()))
	f.append(t, 10)
	run(t, f.opts)
	waitRecords(t, f.srv, f.log.Size())
	idx := recordIndexes(f.srv.messages())
	checkOnceInOrder(t, idx, f.log.Size())
	if resent := len(idx) - before - 10; resent > 2 {
		t.Errorf("a restart sent %d delivered records again", resent)
	}
	if st, err := os.Stat(CursorPath(f.opts.StateDir, "central")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("cursor file: %v %v", st, err)
	}
}

func TestShipRefusesCollectorOfAnotherCA(t *testing.T) {
	f := newFixture(t)
	other := testenv.NewPKI(t, filepath.Join(f.dir, "other"), "another CA")
	f.srv.stop()
	f.srv.conf.Certificates = nil
	cert, err := tls.LoadX509KeyPair(other.ServerCert, other.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.conf.Certificates = []tls.Certificate{cert}
	f.srv.start()
	f.opts.Config.Collectors[0].Addr = f.srv.addr
	f.append(t, 3)
	s := run(t, f.opts)
	if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(s.Status()[0].LastErr, "certificate") }) {
		t.Fatalf("status: %+v", s.Status())
	}
	if n := len(f.srv.messages()); n != 0 {
		t.Fatalf("a collector with a certificate of another CA got %d messages", n)
	}
}

func TestShipRefusesSessionsPastTheLimit(t *testing.T) {
	f := newFixture(t)
	f.srv.stop()
	f.append(t, 9)
	f.opts.Config.MaxBehind = int(f.log.Size()) + 2 // just past 80 %
	s := run(t, f.opts)
	if !testenv.WaitFor(5*time.Second, func() bool { return s.Status()[0].Level == "warn" }) {
		t.Fatalf("no warning at 90%%: %+v", s.Status())
	}
	if s.Refusal() != "" {
		t.Fatalf("refused below the limit: %s", s.Refusal())
	}
	f.append(t, 2)
	if !testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(s.Refusal(), "central lacks") }) {
		t.Fatalf("no refusal past the limit: %+v", s.Status())
	}
	f.srv.start() // the same address: the shipper finds it again and catches up
	waitRecords(t, f.srv, f.log.Size())
	if !testenv.WaitFor(5*time.Second, func() bool { return s.Refusal() == "" }) {
		t.Fatalf("still refusing after catching up: %s", s.Refusal())
	}
}

func TestWitnessFromCollectorFile(t *testing.T) {
	f := newFixture(t)
	f.append(t, 30)
	if _, err := f.log.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	run(t, f.opts)
	size := f.log.Size()
	waitRecords(t, f.srv, size)
	var cps [][]byte
	testenv.WaitFor(5*time.Second, func() bool {
		var err error
		cps, err = Checkpoints(strings.NewReader(strings.Join(f.srv.messages(), "\n")))
		return err == nil && len(cps) >= 4
	})
	if len(cps) < 4 {
		t.Fatalf("%d checkpoints in the collector's messages", len(cps))
	}
	w := filepath.Join(f.dir, "witness")
	var all []byte
	for _, c := range cps {
		all = append(all, c...)
	}
	if err := os.WriteFile(w, all, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(filepath.Join(f.dir, "audit"), f.key.Verifier(), w)
	if err != nil || !rep.OK() || rep.Witnessed < 4 {
		t.Fatalf("verify against the collector's checkpoints: %v %+v", err, rep)
	}
}
