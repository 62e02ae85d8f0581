package testenv

import (
	"net"

	"golang.org/x/crypto/ssh"
)

// ServeAnyKey plays a peer that behaves as it likes: it accepts one SSH
// connection on ln with hostKey, lets any client key in, answers global
// requests (keep-alives) with a refusal, and hands every channel opened
// on the connection to onChannel, in order, until the connection ends.
// It returns at once; the server ends with ln or the connection.
func ServeAnyKey(ln net.Listener, hostKey ssh.Signer, onChannel func(ssh.NewChannel)) {
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
		cfg.AddHostKey(hostKey)
		sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nch := range chans {
			onChannel(nch)
		}
	}()
}
