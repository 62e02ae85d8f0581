package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// attackServer is a minimal x/crypto SSH server on loopback: every exec
// pours zeros into its channel until the test closes the connection.
type attackServer struct {
	addr  string
	conns chan *net.TCPConn
}

func startAttackServer(t *testing.T) *attackServer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hk)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &attackServer{addr: l.Addr().String(), conns: make(chan *net.TCPConn, 4)}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			s.conns <- nc.(*net.TCPConn)
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					go func() {
						for r := range creqs {
							_ = r.Reply(r.Type == "exec", nil)
							if r.Type == "exec" {
								go func() {
									zeros := make([]byte, 32*1024)
									for {
										if _, err := ch.Write(zeros); err != nil {
											return
										}
									}
								}()
							}
						}
					}()
				}
			}()
		}
	}()
	return s
}

// TestAttackerSeesClose: the attacker client notices the server's close
// both when it leaves a channel unread and when it stopped reading its
// socket (the server then has to abort the connection: a FIN queued
// behind unsent data never reaches a peer that reads nothing).
func TestAttackerSeesClose(t *testing.T) {
	srv := startAttackServer(t)
	signer, err := NewSKSigner()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		freeze bool
	}{{"unread channel", false}, {"frozen socket", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := DialAttacker(t.Context(), AttackerOpts{Addr: srv.addr, User: "alice", Signer: signer})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			nc := <-srv.conns
			s, err := a.Session(SessionOpts{Exec: "cat /dev/zero"})
			if err != nil {
				t.Fatal(err)
			}
			_ = s
			if tc.freeze {
				a.Freeze()
			}
			time.Sleep(200 * time.Millisecond) // let the buffers fill
			select {
			case <-a.Closed():
				t.Fatalf("closed before the server closed: %s", a.HowClosed())
			default:
			}
			if tc.freeze {
				_ = nc.SetLinger(0) // abort: RST
			}
			closed := time.Now()
			_ = nc.Close()
			at, ok := a.WaitClosed(2 * time.Second)
			if !ok {
				t.Fatalf("the client did not see the close within 2s (%s)", a.HowClosed())
			}
			t.Logf("seen %v after the close: %s", at.Sub(closed), a.HowClosed())
			if tc.freeze && !strings.HasPrefix(a.HowClosed(), "TCP state") {
				t.Errorf("a frozen client must see the close in the TCP state, got %q", a.HowClosed())
			}
		})
	}
}
