package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// goSession is (b)'s echo session with a Go client (golang.org/x/crypto/ssh)
// instead of OpenSSH's: the first measurement was made that way,
// and it leaves out the client's own terminal handling, so the gateway's
// share of the round trip shows more plainly. It asks for a PTY and runs
// echoCommand, like ssh -tt does.
type goSession struct {
	name   string
	client *ssh.Client
	sess   *ssh.Session
	stdin  io.WriteCloser
	bytes  chan byte
	done   chan struct{}
}

// openGoEcho dials 127.0.0.1:port as user with the owner's key and the
// benchmark's pinned algorithms, checks the host key with hostKeys (nil:
// against the benchmark's known_hosts, the target's key or the gateway's
// host CA), and starts the echo session.
func openGoEcho(ctx context.Context, e *env, name string, port int, user string, hostKeys ssh.HostKeyCallback) (*goSession, error) {
	pem, err := os.ReadFile(e.key)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: owner's key: %w", name, err)
	}
	if hostKeys == nil {
		if hostKeys, err = knownhosts.New(e.knownHosts); err != nil {
			return nil, fmt.Errorf("%s: known_hosts: %w", name, err)
		}
	}
	cfg := &ssh.ClientConfig{
		Config:          ssh.Config{KeyExchanges: []string{benchKex}, Ciphers: []string{benchCipher}},
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	}
	client, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &goSession{name: name, client: client, bytes: make(chan byte, 1<<16), done: make(chan struct{})}
	if err := s.start(ctx); err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

// start opens the session with a PTY, starts echoCommand, reads its
// output into s.bytes until it ends, and waits for the ready marker.
func (s *goSession) start(ctx context.Context) error {
	sess, err := s.client.NewSession()
	if err != nil {
		return fmt.Errorf("%s: session: %w", s.name, err)
	}
	s.sess = sess
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		return fmt.Errorf("%s: pty: %w", s.name, err)
	}
	if s.stdin, err = sess.StdinPipe(); err != nil {
		return err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sess.Start(echoCommand); err != nil {
		return fmt.Errorf("%s: start: %w", s.name, err)
	}
	go pump(out, s.bytes, s.done)
	var seen []byte
	deadline := time.After(30 * time.Second)
	for !bytes.Contains(seen, []byte(echoReady)) {
		select {
		case b := <-s.bytes:
			seen = append(seen, b)
		case <-s.done:
			return fmt.Errorf("%s: session ended before %s: %q", s.name, echoReady, seen)
		case <-deadline:
			return fmt.Errorf("%s: no %s after 30s: %q", s.name, echoReady, seen)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	drainFor(s.bytes, 200*time.Millisecond) // the rest of the marker line
	return nil
}

// roundTrip sends one byte and returns the time until it is read back.
func (s *goSession) roundTrip(b byte) (time.Duration, error) {
	return echoOnce(s.stdin, s.bytes, s.done, b)
}

// close ends the session and the connection.
func (s *goSession) close() {
	if s.sess != nil {
		_ = s.sess.Close()
	}
	_ = s.client.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}
