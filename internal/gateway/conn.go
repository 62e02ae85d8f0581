package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
)

// clientConn is one authenticated SSH connection of one person: the
// outer connection to the gateway, or a jump connection inside it.
type clientConn struct {
	srv    *Server
	st     *state
	conn   ssh.Conn
	source string
	person *config.Person
	key    *config.Key
}

// route says where a connection's session channels go.
type route struct {
	host     *config.Host // nil: the gateway itself
	hostName string       // as the client named it, also when unknown
	login    string
	jump     bool
}

func (c *clientConn) identify(perms *ssh.Permissions) error {
	if perms == nil {
		return fmt.Errorf("no permissions")
	}
	c.person = c.st.cfg.Person(perms.Extensions[extPerson])
	if c.person == nil {
		return fmt.Errorf("person %q vanished", perms.Extensions[extPerson])
	}
	fp := perms.Extensions[extKey]
	for i := range c.person.Keys {
		if c.person.Keys[i].Fingerprint == fp {
			c.key = &c.person.Keys[i]
		}
	}
	return nil
}

// parseUser splits the user-name route "login%host". A name without '%'
// addresses the gateway itself.
func parseUser(user string) (login, host string, routed bool) {
	i := strings.LastIndexByte(user, '%')
	if i < 0 {
		return "", "", false
	}
	return user[:i], user[i+1:], true
}

// globalRequest refuses a connection-level request. Remote port
// forwarding (tcpip-forward) is never offered by the gateway.
func (c *clientConn) globalRequest(r *ssh.Request) {
	if r.Type == "tcpip-forward" {
		c.srv.record(audit.Event{Type: audit.ForwardDenied, Person: c.person.ID, Source: c.source,
			Attrs: map[string]string{"kind": "remote", "reason": "remote forwarding is not supported"}})
	}
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// serve answers the connection's global requests and dispatches its
// channels until the connection ends; it returns after every channel
// handler it started has ended. One loop serves both, so an idle
// connection costs one goroutine here, not two.
func (c *clientConn) serve(ctx context.Context, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, rt route) {
	if !rt.jump {
		if login, host, ok := parseUser(c.conn.User()); ok {
			rt = route{host: c.st.cfg.Host(host), hostName: host, login: login}
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for chans != nil || reqs != nil {
		var nch ssh.NewChannel
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
			} else {
				c.globalRequest(r)
			}
			continue
		case n, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			nch = n
		}
		switch nch.ChannelType() {
		case "session":
			wg.Add(1)
			go func() {
				defer wg.Done()
				if rt.hostName == "" {
					c.commandSession(ctx, nch)
				} else {
					c.targetSession(ctx, nch, rt)
				}
			}()
		case "direct-tcpip":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.directTCPIP(ctx, nch, rt.jump)
			}()
		default:
			c.srv.record(audit.Event{Type: audit.ForwardDenied, Person: c.person.ID, Source: c.source,
				Attrs: map[string]string{"kind": nch.ChannelType()}})
			_ = nch.Reject(ssh.Prohibited, "tandem: "+nch.ChannelType()+" channels are not allowed")
		}
	}
}
