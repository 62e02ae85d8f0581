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
)

// TestHostileFloodRealClients: the tandem binary under a silent flood of
// 300 connections from 30 addresses of 127.0.0.0/24; a person with real
// OpenSSH logs in from another network quickly throughout, and a failed
// connection with a 200 kB user name and 20 keys grows the real audit log
// by less than 4 KiB (M19, M30).
func TestHostileFloodRealClients(t *testing.T) {
	t.Parallel()
	e, priv := newIDEnv(t, idSpec{KeyNames: map[string]string{"alice": ""}, Persons: func(pub map[string]string) []config.Person {
		return []config.Person{okPerson("alice", pub["alice"])}
	}})
	alice := e.client(t, "alice", priv["alice"])
	addr := fmt.Sprintf("127.0.0.1:%d", e.GW.Port)

	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	var wg sync.WaitGroup
	var held atomic.Int64
	for a := range 30 {
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", a+2))}, Timeout: time.Second}
				nc, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return
				}
				held.Add(1)
				defer nc.Close()
				stopRead := context.AfterFunc(ctx, func() { nc.Close() })
				defer stopRead()
				_, _ = io.Copy(io.Discard, nc) // never send a byte
			}()
		}
	}
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
}
