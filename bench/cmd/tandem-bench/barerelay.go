package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// bareRelay is the least an SSH relay built on golang.org/x/crypto/ssh
// can do: it accepts the owner's key, dials the target with it, and
// copies each session channel's requests and bytes both ways, with
// nothing else (no policy, no recording, no session package, no audit).
// In (b) the Go client's echo through it shows what two x/crypto
// connections cost on this machine, so that the gateway's own share of
// the round trip is the difference to the Tandem path. It runs in a
// process of its own, as the gateway does: in the benchmark's process its
// goroutines would find the client's threads awake. Loopback only, for
// the benchmark's lifetime.
type bareRelay struct {
	cmd     *exec.Cmd
	port    int
	hostKey ssh.PublicKey
}

// bareRelayArg makes the benchmark's binary serve a bare relay (see
// serveBareRelay) instead of measuring.
const bareRelayArg = "-serve-bare-relay"

// startBareRelay starts this binary as a bare relay to the target sshd
// of e and reads its port and host key; close stops it.
func startBareRelay(ctx context.Context, e *env) (*bareRelay, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, bareRelayArg, e.key, e.knownHosts, strconv.Itoa(e.targetPort))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &bareRelay{cmd: cmd}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err == nil {
		port, key, ok := strings.Cut(strings.TrimSpace(line), " ")
		if r.port, err = strconv.Atoi(port); err == nil && ok {
			r.hostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(key))
		} else if err == nil {
			err = fmt.Errorf("bare relay said %q", line)
		}
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("bare relay: %w", err)
	}
	return r, nil
}

// close stops the relay process.
func (r *bareRelay) close() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// serveBareRelay is the relay process's main (args: the owner's key, the
// known_hosts file, the target's port): it prints "PORT HOSTKEY" on one
// line and relays until it is killed.
func serveBareRelay(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "bare relay: want KEY KNOWN_HOSTS TARGET_PORT")
		return 2
	}
	if err := bareRelayMain(args[0], args[1], args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "bare relay:", err)
		return 1
	}
	return 0
}

func bareRelayMain(keyFile, knownHostsFile, targetPort string) error {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	owner, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return fmt.Errorf("owner's key: %w", err)
	}
	targetKeys, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	hk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	hostSigner, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		return err
	}
	want := owner.PublicKey().Marshal()
	srv := &ssh.ServerConfig{
		Config: ssh.Config{KeyExchanges: []string{benchKex}, Ciphers: []string{benchCipher}},
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) != string(want) {
				return nil, errors.New("not the owner's key")
			}
			return nil, nil
		},
	}
	srv.AddHostKey(hostSigner)
	up := &ssh.ClientConfig{
		Config:          ssh.Config{KeyExchanges: []string{benchKex}, Ciphers: []string{benchCipher}},
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(owner)},
		HostKeyCallback: targetKeys,
		Timeout:         10 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("%d %s\n", ln.Addr().(*net.TCPAddr).Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))))
	target := net.JoinHostPort("127.0.0.1", targetPort)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relayConn(nc, srv, target, up)
		}()
	}
}

// relayConn serves one client connection: every session channel gets a
// connection of its own to the target.
func relayConn(nc net.Conn, srv *ssh.ServerConfig, target string, up *ssh.ClientConfig) {
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(nc, srv)
	if err != nil {
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "session channels only")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relaySession(nch, target, up)
		}()
	}
}

// relaySession relays one session channel to a fresh connection to the
// target: requests both ways with their replies, data both ways.
func relaySession(nch ssh.NewChannel, target string, up *ssh.ClientConfig) {
	client, err := ssh.Dial("tcp", target, up)
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer client.Close()
	upCh, upReqs, err := client.OpenChannel("session", nil)
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	forward := func(wg *sync.WaitGroup, from <-chan *ssh.Request, to ssh.Channel) {
		defer wg.Done()
		for r := range from {
			ok, err := to.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				_ = r.Reply(ok && err == nil, nil)
			}
		}
	}
	pipe := func(wg *sync.WaitGroup, dst io.Writer, src io.Reader, done func()) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if done != nil {
			done()
		}
	}
	// The target's side ends first (output, exit-status, EOF, close);
	// then both channels are closed, which ends the client's side.
	var toClient, toTarget sync.WaitGroup
	toClient.Add(3)
	go forward(&toClient, upReqs, ch)
	go pipe(&toClient, ch, upCh, func() { _ = ch.CloseWrite() })
	go pipe(&toClient, ch.Stderr(), upCh.Stderr(), nil)
	toTarget.Add(2)
	go forward(&toTarget, reqs, upCh)
	go pipe(&toTarget, upCh, ch, func() { _ = upCh.CloseWrite() })
	toClient.Wait()
	_ = ch.Close()
	_ = upCh.Close()
	toTarget.Wait()
}
