package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/link"
)

// A join relayed between the nodes of a cluster. The joining person's
// node has decided the join on its state (admin.Join) and opens a join
// channel to the node that holds the session (joinRemote); that node
// decides again on its own state and hands the channel to the session
// as the joiner's terminal (holdJoin), through the same attach as a local
// join: attribution, pause on loss, recording and audit events are those
// of a local join, written by the node that holds the session.
//
// The joining node only pipes bytes: its person's channel to the link
// channel and back, through io.Copy's fixed buffer and the SSH windows of
// both channels. A person who stops reading stalls only their own link
// channel; on the holding node their terminal's output queue then fills
// and the session drops them ("too slow"), as it does a slow local joiner,
// so the session's fan-out never waits for them.

// joinRemote relays the caller's join to the node t names and pipes the
// caller's channel to it until either side ends. It returns the exit
// status for the caller's client.
func (c *clientConn) joinRemote(ctx context.Context, ch ssh.Channel, closed <-chan struct{}, t admin.Ticket) uint32 {
	node, id := t.Node, t.SessionID
	lk := c.srv.cluster.link
	if lk == nil {
		return failOn(ch, "session %s runs on node %s, and this node has no link to the other nodes (cluster.link_key)", id, node)
	}
	st, err := lk.Open(ctx, node, link.Join{Session: id, Person: c.person.ID, Mode: t.Mode, External: t.External, KeyFP: c.keyFP, Source: c.source})
	var refused *ssh.OpenChannelError
	switch {
	case errors.As(err, &refused):
		return failOn(ch, "node %s: %s", node, refused.Message)
	case err != nil:
		c.srv.log.Warn("cluster: link unavailable", "node", node, "session", id, "err", err)
		return failOn(ch, "session %s runs on node %s, which cannot be reached now; try again shortly", id, node)
	}
	defer st.Close()
	status := make(chan uint32, 1)
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		for r := range st.Requests {
			if r.Type == "exit-status" && len(r.Payload) == 4 {
				select {
				case status <- binary.BigEndian.Uint32(r.Payload):
				default:
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}()
	// The person's keystrokes; their leaving (the channel closed) closes
	// the link channel, which the holding node takes as their leaving.
	go func() {
		_, _ = io.Copy(st, &chanTerminal{ch: ch, closed: closed})
		_ = st.Close()
	}()
	errDone := make(chan struct{})
	go func() { defer close(errDone); _, _ = io.Copy(ch.Stderr(), st.Stderr()) }()
	_, _ = io.Copy(ch, st)
	<-errDone
	_ = st.Close()
	<-reqsDone // closes once the channel is closed both ways, or the link ends
	select {
	case code := <-status:
		return code
	default:
	}
	if !st.Alive() {
		c.srv.log.Warn("cluster: link lost during a join", "node", node, "session", id, "person", c.person.ID)
		return failOn(ch, "%s", linkLost(node, id))
	}
	// The holding node closed the channel without a status: the session
	// ended or took the person out, and its notice said why. A local join
	// ends the same way.
	_ = ch.Close()
	return 0
}

// holdJoin serves a join relayed by peer: it decides the join again on
// this node's state — its store readable, the person and key as
// configured here, the session as it runs here, the locks and freezes in
// force — and attaches the link channel to the session as the joiner's
// terminal. A refusal goes back to
// the joining node as the channel's rejection, which it shows its person.
func (s *Server) holdJoin(_ context.Context, peer string, j link.Join, nc ssh.NewChannel) {
	// Without its store this node cannot know whether the person was
	// locked a moment ago; the joining node's store answering does not
	// tell it (a local join is refused the same way, joinSession).
	if msg := s.storeRefusal(); msg != "" {
		s.rejectJoin(nc, peer, j, msg, true)
		return
	}
	st := s.state.Load()
	p := st.cfg.Person(j.Person)
	if p == nil {
		s.rejectJoin(nc, peer, j, fmt.Sprintf("%s is not a person of node %s's configuration", j.Person, s.nodeName()), true)
		return
	}
	k := keyByFingerprint(p, j.KeyFP)
	if k == nil {
		s.rejectJoin(nc, peer, j, fmt.Sprintf("the key %s is not registered to %s on node %s", j.KeyFP, p.ID, s.nodeName()), true)
		return
	}
	sh := s.live.sharedByID(j.Session)
	if sh == nil {
		s.rejectJoin(nc, peer, j, admin.NoSession(j.Session).Error(), true)
		return
	}
	// The joiner as a connection of this node would be: person, key and
	// address, deciding on this node's configuration and state.
	c := &clientConn{srv: s, st: st, person: p, key: k, keyFP: j.KeyFP, source: j.Source}
	d, err := admin.DecideJoin(context.Background(), adminGateway{c}, c.caller(),
		admin.JoinAsk{Session: j.Session, Owner: sh.owner, Host: sh.host.Name, Mode: j.Mode, RelayedBy: peer})
	if err != nil {
		s.rejectJoin(nc, peer, j, err.Error(), false) // DecideJoin audited it
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}()
	endChannel(ch, c.attach(sh, d.Mode, d.External, ch, closed))
}
