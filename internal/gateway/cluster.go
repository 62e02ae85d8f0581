package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/cryptoprofile"
	"tandem.dev/tandem/internal/link"
	"tandem.dev/tandem/internal/session"
	"tandem.dev/tandem/internal/store"
)

// Sessions across the nodes of a cluster (docs/HA.md): every node
// publishes the shared sessions it holds to the store it shares with the
// others, so `ssh gw sessions` on any node lists them all and `join`
// finds them; a join of a session another node holds is relayed to it
// over the internal link (linkjoin.go), where the session takes the
// joiner as one more terminal.

const (
	// clusterHeartbeat is how often a node marks itself alive in the
	// store when its sessions did not change (a change is published at
	// the next poll, lockPoll).
	clusterHeartbeat = time.Second
	// clusterStale is how long a node's published sessions count after
	// its last heartbeat: a node killed mid-session drops out of every
	// listing after this, without anybody deleting its rows. The nodes'
	// clocks must agree far better than this (they do under NTP; the
	// certificates of the targets need it anyway).
	clusterStale = 5 * time.Second
	// clusterRead bounds a read of the other nodes' sessions.
	clusterRead = 3 * time.Second
)

// clusterNode is this gateway's part in a cluster; nil outside one.
type clusterNode struct {
	name string
	link *link.Link   // nil without a link key: joins are not relayed
	ln   net.Listener // the link's listener; nil: this node takes no relayed joins
}

// newCluster builds the cluster part from the configuration and the
// link key and listener the caller opened (tandem serve: cluster.link_key
// and cluster.listen). Outside a cluster it returns nil.
func newCluster(o Options) (*clusterNode, error) {
	cl := o.Config.Cluster
	if !cl.Enabled() {
		if o.LinkKey != nil || o.LinkListener != nil {
			return nil, errors.New("gateway: a link key or listener outside a cluster (cluster.node)")
		}
		return nil, nil
	}
	n := &clusterNode{name: cl.Node, ln: o.LinkListener}
	if o.LinkKey == nil {
		if o.LinkListener != nil {
			return nil, errors.New("gateway: a link listener without a link key")
		}
		return n, nil
	}
	var peers []link.Peer
	for _, p := range cl.Peers {
		if p.LinkKey == "" {
			continue
		}
		k, err := config.ParseLinkKey(p.LinkKey)
		if err != nil {
			return nil, fmt.Errorf("cluster.peers: node %s: link_key: %w", p.Node, err)
		}
		peers = append(peers, link.Peer{Node: p.Node, Address: p.Address, Key: k})
	}
	prof, err := cryptoprofile.Get(o.Config.Gateway.CryptoProfile)
	if err != nil {
		return nil, err
	}
	n.link, err = link.New(link.Options{Node: cl.Node, Key: o.LinkKey, Peers: peers, Profile: prof, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// errLinkReload refuses a reload that changes the internal link.
var errLinkReload = errors.New("the internal link's settings (cluster.node, listen, link_key, and each peer's node, " +
	"address and link_key) take effect only at a restart; restart this node to apply them. Until then its link " +
	"admits and dials the peers it started with, also one the new configuration removes")

// linkSettings are what the link takes from cfg at the start (newCluster),
// in order: a reload that changes them is refused, rather than recorded
// as applied while a removed peer's key still logs in.
func linkSettings(cfg *config.Config) []string {
	cl := cfg.Cluster
	out := []string{cl.Node, cl.Listen, cl.LinkKey}
	for _, p := range cl.Peers {
		out = append(out, p.Node, p.Address, p.LinkKey)
	}
	return out
}

// serveCluster starts the cluster's goroutines under s.wg: the publisher
// of this node's sessions, the link's listener, and the closing of the
// dialled links when ctx ends.
func (s *Server) serveCluster(ctx context.Context) {
	n := s.cluster
	if n == nil {
		return
	}
	if s.store != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.publishSessions(ctx) }()
	}
	if n.link == nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		n.link.Close()
	}()
	if n.ln != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := n.link.Serve(ctx, n.ln, s.holdJoin); err != nil {
				s.log.Error("cluster: the link's listener failed; joins from other nodes are refused", "err", err)
			}
		}()
	}
}

// publishSessions keeps this node's shared sessions in the store until
// ctx ends: at every poll when they changed, otherwise a heartbeat every
// clusterHeartbeat. On a stop the node withdraws its sessions at once.
func (s *Server) publishSessions(ctx context.Context) {
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	var last []store.ClusterSession
	var wrote time.Time
	published, failing := false, false
	for {
		rows, now := s.clusterRows(), s.now()
		var err error
		switch {
		case !published || !reflect.DeepEqual(rows, last):
			if err = s.store.PublishSessions(ctx, s.cluster.name, rows, now, now.Add(-clusterStale)); err == nil {
				last, published, wrote = rows, true, now
			}
		case now.Sub(wrote) >= clusterHeartbeat:
			if err = s.store.Heartbeat(ctx, s.cluster.name, now); err == nil {
				wrote = now
			}
		}
		// One line per outage, not one per poll.
		if err != nil && !failing {
			s.failed(ctx, "cluster: cannot publish this node's sessions; other nodes will not list them", err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.Background(), clusterRead)
			defer cancel()
			now := s.now()
			if err := s.store.PublishSessions(wctx, s.cluster.name, nil, now, now.Add(-clusterStale)); err != nil {
				s.log.Debug("cluster: withdraw sessions", "err", err)
			}
			return
		case <-t.C:
		}
	}
}

// clusterRows are this node's shared sessions as the store keeps them,
// in id order (so that an unchanged list compares equal).
func (s *Server) clusterRows() []store.ClusterSession {
	var rows []store.ClusterSession
	for _, l := range s.live.allShared() {
		in := l.sess.Info()
		if in.State == session.Ended {
			continue
		}
		parts := make([]store.ClusterParticipant, len(in.Participants))
		for i, p := range in.Participants {
			parts[i] = store.ClusterParticipant{Person: p.Person, Mode: string(p.Mode), External: p.External}
		}
		parts[0].Mode = string(session.Owner)
		rows = append(rows, store.ClusterSession{ID: l.id, Node: s.cluster.name, Owner: l.owner, Host: l.host.Name,
			Login: l.login, Tenant: l.host.Tenant, State: string(in.State), Participants: parts, Started: in.Started})
	}
	slices.SortFunc(rows, func(a, b store.ClusterSession) int { return strings.Compare(a.ID, b.ID) })
	return rows
}

// remoteSessions are the shared sessions the other nodes publish, on
// hosts cfg knows. A store that cannot be read leaves them out (logged):
// the listing then shows this node's sessions only.
func (s *Server) remoteSessions(cfg *config.Config) []admin.SessionInfo {
	if s.cluster == nil || s.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterRead)
	defer cancel()
	rows, err := s.store.ClusterSessions(ctx, s.now().Add(-clusterStale))
	if err != nil {
		s.log.Warn("cluster: cannot read the other nodes' sessions", "err", err)
		return nil
	}
	var out []admin.SessionInfo
	for _, r := range rows {
		h := cfg.Host(r.Host)
		if r.Node == s.cluster.name || h == nil || len(r.Participants) == 0 {
			continue
		}
		parts := make([]session.Participant, len(r.Participants))
		for i, p := range r.Participants {
			parts[i] = session.Participant{Person: p.Person, Mode: session.Mode(p.Mode), External: p.External}
		}
		out = append(out, admin.SessionInfo{Info: session.Info{ID: r.ID, Host: r.Host, Owner: parts[0], State: session.State(r.State),
			Participants: parts, Started: r.Started}, HostConfig: h, Node: r.Node})
	}
	return out
}

// nodeName is this node's name in a cluster, "" outside one.
func (s *Server) nodeName() string {
	if s.cluster == nil {
		return ""
	}
	return s.cluster.name
}

// linkLost is what a joiner reads when the link to the node that holds
// their session is lost.
func linkLost(node, id string) string {
	return fmt.Sprintf("the link to node %s, which holds session %s, was lost; the session goes on there without you "+
		"(paused, if you were the second person). Join again with: ssh -t gw join %s", node, id, id)
}

// rejectJoin refuses a relayed join with msg, which the joining node
// shows its person. record audits the refusal (session.denied, action
// join, relayed_by the peer) unless the decision already did.
func (s *Server) rejectJoin(nc ssh.NewChannel, peer string, j link.Join, msg string, record bool) {
	s.log.Warn("cluster: relayed join refused", "peer", peer, "session", j.Session, "person", j.Person, "reason", msg)
	if record {
		ev := admin.JoinDenied(audit.Conn{Person: j.Person, Source: j.Source},
			admin.JoinAsk{Session: j.Session, Mode: j.Mode, RelayedBy: peer}, "", msg, "")
		audit.BestEffort(context.Background(), s.audit, s.log, ev)
	}
	_ = nc.Reject(ssh.Prohibited, msg)
}
