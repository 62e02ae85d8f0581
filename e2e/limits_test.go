package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// TestHostileFloodRealClients: the tandem binary under a silent flood of
// 300 connections from 30 addresses of 127.0.0.0/24; a person with real
// OpenSSH logs in from another network quickly throughout, and a failed
// connection with a 200 kB user name and 20 keys grows the real audit log
// by less than 4 KiB. Then a silent flood from 150 networks, re-dialled,
// which the per-network share does not stop, holds the cap on
// unauthenticated connections: the person still gets in, by evicting a
// silent connection (M19, M30).
func TestHostileFloodRealClients(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": ""}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"])}
	}})
	alice := e.client(t, "alice", priv["alice"])
	addr := fmt.Sprintf("127.0.0.1:%d", e.GW.Port)

	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	var wg sync.WaitGroup
	var ips []string
	for a := range 30 {
		for range 10 {
			ips = append(ips, fmt.Sprintf("127.0.0.%d", a+2))
		}
	}
	held, _ := silentFlood(ctx, &wg, addr, ips, 1)
	defer func() { stop(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // the flood is in

	var lat []time.Duration
	for range 5 {
		start := time.Now()
		r := alice.SSH(t, "-o", "BindAddress=127.1.0.1", "gw", "whoami")
		took := time.Since(start)
		if r.Code != 0 || !strings.Contains(r.Stdout, "connections: 1 open") {
			e.failf(t, r, "alice from 127.1.0.1 during the flood: want whoami listing her connection")
		}
		lat = append(lat, took)
	}
	slices.Sort(lat)
	t.Logf("silent flood: %d connections dialled; OpenSSH logins (ssh gw whoami) from 127.1.0.1: %v", held.Load(), lat)
	if lat[len(lat)-1] > 2*time.Second {
		t.Errorf("an OpenSSH login took %v during the flood, want ≤ 2s", lat[len(lat)-1])
	}

	// One failed connection, hostile in size, against the real log.
	records := filepath.Join(e.GW.DataDir, "audit", "records.log")
	size := func() int64 {
		fi, err := os.Stat(records)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var signers []ssh.Signer
	for range 20 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s, _ := ssh.NewSignerFromKey(k)
		signers = append(signers, s)
	}
	before := size()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.2.0.1")}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, _, _, err = ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: strings.Repeat("u", 200_000),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // test only: the gateway's identity is not the point here
	nc.Close()
	if err == nil {
		t.Fatal("strangers' keys accepted")
	}
	if !e.waitAudit(t, "auth.failure", func(r auditRecord) bool { return strings.HasPrefix(r.Source, "127.2.0.1:") }) {
		t.Fatalf("no auth.failure for the hostile connection\n%s", e.GW.Tail())
	}
	time.Sleep(300 * time.Millisecond)
	grew := size() - before
	t.Logf("audit log growth for one failed connection with a 200 kB user name and 20 keys: %d bytes", grew)
	if grew >= 4096 {
		t.Errorf("the audit log grew by %d bytes for one failed connection, want < 4096", grew)
	}
	stop()
	wg.Wait()

	// Two connections from each of 150 /24s, re-dialled 250 ms after the
	// gateway closes them: more than the cap (100), none stopped by the
	// per-network share (25).
	ips = ips[:0]
	for n := range 150 {
		ips = append(ips, fmt.Sprintf("127.3.%d.1", n+1), fmt.Sprintf("127.3.%d.1", n+1))
	}
	ctx2, stop2 := context.WithTimeout(context.Background(), 40*time.Second)
	defer stop2() // before the wait deferred above
	dialled, closed := silentFlood(ctx2, &wg, addr, ips, 40)
	if !testenv.WaitFor(10*time.Second, func() bool { return closed.Load() >= 100 }) {
		t.Fatalf("the gateway closed only %d of %d silent connections: the cap was not reached", closed.Load(), dialled.Load())
	}
	lat = lat[:0]
	for range 3 {
		start := time.Now()
		r := alice.SSH(t, "-o", "BindAddress=127.1.0.1", "gw", "whoami")
		if r.Code != 0 || !strings.Contains(r.Stdout, "connections: 1 open") {
			e.failf(t, r, "alice from 127.1.0.1 during the flood from 150 networks: want whoami listing her connection")
		}
		lat = append(lat, time.Since(start))
	}
	t.Logf("silent flood from 150 networks: %d connections dialled, %d closed by the gateway; OpenSSH logins from 127.1.0.1: %v",
		dialled.Load(), closed.Load(), lat)
	if !e.waitAudit(t, "auth.failure", func(r auditRecord) bool {
		return r.Attrs["evicted"] == "true" && strings.HasPrefix(r.Source, "127.3.")
	}) {
		t.Errorf("no auth.failure event for a silent connection evicted for the person\n%s", e.GW.Tail())
	}
}

// silentFlood dials a connection from each of ips (an address may repeat)
// that never sends a byte and is held until the gateway closes it, then,
// 250 ms later, dials again, at most dials times in all and until ctx
// ends. It returns how many connections were made and how many of them
// the gateway closed.
func silentFlood(ctx context.Context, wg *sync.WaitGroup, addr string, ips []string, dials int) (dialled, closed *atomic.Int64) {
	dialled, closed = new(atomic.Int64), new(atomic.Int64)
	for _, ip := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
			for range dials {
				nc, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return
				}
				dialled.Add(1)
				stopRead := context.AfterFunc(ctx, func() { nc.Close() })
				_, _ = io.Copy(io.Discard, nc) // never send a byte
				stopRead()
				nc.Close()
				if ctx.Err() != nil {
					return
				}
				closed.Add(1)
				select {
				case <-ctx.Done():
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
	}
	return dialled, closed
}
