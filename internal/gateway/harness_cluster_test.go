package gateway_test

import (
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/mod/sumdb/note"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/link"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
	"tandem.dev/tandem/internal/testenv"
)

// hNode makes a harness one node of a two-node cluster: its own data
// directory and audit log, the first node's keys, targets and state store
// (the nodes share one state file), and the internal link.
type hNode struct {
	name    string
	first   *harness // the node this one shares with; nil for the first
	linkKey ssh.Signer
	ln      net.Listener // this node's link listener
	peers   []hPeer
}

// hPeer is the other node as this one is configured to know it.
type hPeer struct {
	node, address string
	linkKey       ssh.PublicKey
}

func withNode(n *hNode) option { return func(s *spec) { s.node = n } }

func (n *hNode) sharesWith() *harness {
	if n == nil {
		return nil
	}
	return n.first
}

func (n *hNode) wire(o *gateway.Options) {
	if n != nil {
		o.LinkKey, o.LinkListener = n.linkKey, n.ln
	}
}

// yaml is the node's audit origin, store and cluster section. The store
// path, witness and link key paths are only validated, never opened, by
// gateway.New (the harness opens the shared store itself).
func (n *hNode) yaml() string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "store: {path: /nonexistent/shared-state.db}\naudit: {origin: tandem/audit/%s}\ncluster:\n  node: %s\n  witness_key: /nonexistent/witness.key\n  witness_dir: /nonexistent/witness\n", n.name, n.name)
	fmt.Fprintf(&b, "  listen: %q\n  link_key: /nonexistent/link.key\n  peers:\n", n.ln.Addr().String())
	for _, p := range n.peers {
		fmt.Fprintf(&b, "    - {node: %s, audit_origin: tandem/audit/%s, audit_key: %q, witness_key: %q, address: %q, link_key: %q}\n",
			p.node, p.node, verifier(p.node), verifier(p.node), p.address, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.linkKey))))
	}
	return b.String()
}

// verifier is a note verifier key named for node; which key does not
// matter here (the witnessing is not what these tests are about).
func verifier(node string) string {
	_, v, err := note.GenerateKey(rand.Reader, "tandem/"+node)
	if err != nil {
		panic(err)
	}
	return v
}

func newLinkKey(t *testing.T) ssh.Signer { return testenv.NewSigner(t, elliptic.P384()) }

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// newClusterPair starts node a and node b on one state store, each with
// its options. b reaches a's link through a Cutter (returned), so a test
// can cut it; a reaches b's directly.
func newClusterPair(t *testing.T, aOpts, bOpts []option) (a, b *harness, cut *testenv.Cutter) {
	t.Helper()
	kA, kB := newLinkKey(t), newLinkKey(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	cut = testenv.NewCutter(t, lnA.Addr().String())
	a = newHarness(t, append(aOpts, withNode(&hNode{name: "a", linkKey: kA, ln: lnA,
		peers: []hPeer{{"b", lnB.Addr().String(), kB.PublicKey()}}}))...)
	b = newHarness(t, append(bOpts, withNode(&hNode{name: "b", first: a, linkKey: kB, ln: lnB,
		peers: []hPeer{{"a", cut.Addr(), kA.PublicKey()}}}))...)
	return a, b, cut
}

// sessionsRow waits until person's `ssh gw sessions` on h has a line
// that matches expr (a session id, say) and returns that line.
func sessionsRow(t *testing.T, h *harness, person, expr string) string {
	t.Helper()
	re := regexp.MustCompile(expr)
	var out, row string
	eventually(t, func() bool {
		out, _, _ = h.run(t, person, "gw", "sessions")
		for _, line := range strings.Split(out, "\n") {
			if re.MatchString(line) {
				row = line
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("%s's sessions never listed %s:\n%s", person, expr, out) })
	return row
}

// inputBy reads a recording and returns who typed, in order of first input.
func inputBy(t *testing.T, h *harness, path string) []string {
	t.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join(h.dir, "data", path)
	}
	r, err := record.Open(h.vault, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var who []string
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.Type == record.EvInput && !slices.Contains(who, ev.Person) {
			who = append(who, ev.Person)
		}
	}
	return who
}

// TestHarnessClusterJoin: a four-eyes session waiting on node a is listed
// on node b with its node named, to those who may join it only; bob joins
// it through b, the session goes live on a, both see each other's work,
// and a's audit log and recording attribute both, exactly as for a local
// join. When bob leaves, the session pauses on a.
func TestHarnessClusterJoin(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	owner.expect(t, "waiting")

	row := sessionsRow(t, b, "bob", id)
	if f := strings.Fields(row); len(f) < 5 || f[1] != "a" || f[2] != "prod1" || f[3] != "alice" || f[4] != "waiting" {
		t.Errorf("b lists %q; want id, node a, prod1, alice, waiting", row)
	}
	if out, _, _ := b.run(t, "dave", "gw", "sessions"); strings.Contains(out, id) {
		t.Errorf("dave, who may not join, sees %s on b:\n%s", id, out)
	}
	if out, _, _ := a.run(t, "bob", "gw", "sessions"); !strings.Contains(out, "NODE") {
		t.Errorf("a's own listing has no NODE column:\n%s", out)
	}

	peer := b.join(t, "bob", id)
	peer.expect(t, "joined session "+id+" on prod1 as peer")
	owner.expect(t, "bob joined as peer; the session is live")
	owner.send(t, "echo four-$((6*7))-eyes\n")
	owner.expect(t, "four-42-eyes")
	peer.expect(t, "four-42-eyes")
	peer.send(t, "echo from-$((1+1))-bob\n")
	owner.expect(t, "from-2-bob")
	peer.expect(t, "from-2-bob")
	if ids := a.targets["prod1"].accepted(); len(ids) != 1 || !strings.Contains(ids[0], "person=alice") {
		t.Fatalf("target accepted %q, want one certificate for alice", ids)
	}
	sessionsRow(t, b, "bob", `live\s.*bob\(peer\)`) // published at a's next poll

	peer.send(t, "\x1dq") // Ctrl-] q: a peer ends the session for all
	owner.wait(t)
	peer.wait(t)
	end := a.waitEvent(t, 0, "session.end of "+id, func(e audit.Event) bool {
		return e.Type == audit.SessionEnd && e.Session == id
	})
	joined := a.waitEvent(t, 0, "session.join of bob", func(e audit.Event) bool {
		return e.Type == audit.SessionJoin && e.Session == id
	})
	if joined.Attrs["participant"] != "bob" || joined.Attrs["mode"] != "peer" {
		t.Errorf("session.join on a: %v", joined.Attrs)
	}
	if who := inputBy(t, a, end.Attrs["recording"]); !slices.Equal(who, []string{"alice", "bob"}) {
		t.Errorf("the recording on a attributes input to %q, want alice and bob", who)
	}
	for _, e := range b.events(t) {
		if e.Session == id && e.Type != audit.Command {
			t.Errorf("b's log has the session's event %s; the node that holds the session writes them", e.Type)
		}
	}
	// The session is gone from every listing once it ended.
	eventually(t, func() bool { out, _, _ := b.run(t, "bob", "gw", "sessions"); return !strings.Contains(out, id) },
		func() string { return "b still lists the ended session " + id })
}

// TestHarnessClusterJoinDecidedTwice: the joining node decides a join on
// its state and the node that holds the session decides it again on its
// own: a person b's configuration lets join but a's does not is refused
// by a, with a's reason, and nothing changes in the session.
func TestHarnessClusterJoinDecidedTwice(t *testing.T) {
	recent := time.Now().UTC().AddDate(0, 0, -10)
	a, b, _ := newClusterPair(t, nil, []option{
		// On b (only) dave may join, and erin exists.
		withPerson("dave", recent, "admin"), withPerson("erin", recent, "admin"),
	})
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	sessionsRow(t, b, "dave", id)
	for _, tc := range []struct{ person, want string }{
		{"dave", "node a: dave may not join sessions on prod1"},
		{"erin", "node a: erin is not a person of node a's configuration"},
		{"alice", "you cannot be the second person in your own session"}, // refused on b already
	} {
		j := b.join(t, tc.person, id)
		j.expect(t, regexp.QuoteMeta(tc.want))
		if st := j.wait(t); st != 1 {
			t.Errorf("%s: status %d, want 1", tc.person, st)
		}
	}
	if ids := a.targets["prod1"].accepted(); len(ids) != 0 {
		t.Fatalf("a refused join reached the target: %q", ids)
	}
	if row := sessionsRow(t, b, "bob", id); !strings.Contains(row, "waiting") {
		t.Errorf("after refused joins: %q", row)
	}
}

// TestHarnessClusterLinkCut: when the link between the nodes is cut
// mid-join (no packet passes, nothing is closed), the node that holds the
// session notices within a few keep-alives and pauses it, as when a
// second person's connection drops; the joiner is told the link was
// lost. Rejoining over a healed link resumes the session.
func TestHarnessClusterLinkCut(t *testing.T) {
	a, b, cut := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	sessionsRow(t, b, "bob", id)
	peer := b.join(t, "bob", id)
	owner.expect(t, "the session is live")
	owner.send(t, "echo before-$((2+3))\n")
	peer.expect(t, "before-5")

	cut.Cut()
	cutAt := time.Now()
	owner.expect(t, `bob left; input paused`)
	t.Logf("link cut: the session paused after %v", time.Since(cutAt).Round(time.Millisecond))
	peer.expect(t, "the link to node a, which holds session "+id+", was lost")
	if st := peer.wait(t); st != 1 {
		t.Errorf("the cut-off joiner's status %d, want 1", st)
	}
	a.waitEvent(t, 0, "session.paused", func(e audit.Event) bool { return e.Type == audit.SessionPaused && e.Session == id })

	again := b.join(t, "bob", id) // a new connection: the cutter passes it
	owner.expect(t, "bob joined as peer; input resumed")
	owner.send(t, "echo after-$((3+4))\n")
	again.expect(t, "after-7")
	a.waitEvent(t, 0, "session.resumed", func(e audit.Event) bool { return e.Type == audit.SessionResumed && e.Session == id })
}

// TestHarnessClusterRequests: a request made and approved on node b lets
// its owner's command through node a (one store), and its revocation on
// b ends the session running under it on a.
func TestHarnessClusterRequests(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	rid := makeRequest(t, b, "alice", "--hosts prod1 --login root --for 1h --reason deploy-TICKET-7")
	if _, stderr, st := a.run(t, "alice", "root%prod1", "true"); st != 1 || !strings.Contains(stderr, "approved access request") {
		t.Fatalf("exec on a before the approval: status %d, stderr %q", st, stderr)
	}
	if out, stderr, st := b.run(t, "bob", "gw", "approve "+rid); st != 0 || !strings.Contains(out, "approved") {
		t.Fatalf("approve on b: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	if out, stderr, st := a.run(t, "alice", "root%prod1", "echo granted"); st != 0 || out != "granted\n" {
		t.Fatalf("exec on a under b's approval: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	tm := running(t, a, "alice", "root@prod1", false)
	if out, stderr, st := b.run(t, "bob", "gw", "revoke "+rid+" --reason 'work is done'"); st != 0 {
		t.Fatalf("revoke on b: status %d, stdout %q, stderr %q", st, out, stderr)
	}
	endedBecause(t, a, tm, "alice", "request "+rid+" is no longer approved", false)
}

// TestHarnessClusterSlowJoiner: a joiner on node b whose client stops
// reading holds up nobody on node a: the owner's output keeps flowing,
// and once the joiner's queue on a is full the session drops them as too
// slow, as it drops a slow local joiner.
func TestHarnessClusterSlowJoiner(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	sessionsRow(t, b, "bob", id)
	at, err := testenv.DialAttacker(t.Context(), testenv.AttackerOpts{Addr: b.addr, User: "bob", Signer: b.signers["bob"]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { at.Close() })
	// Read false: bob's client never reads; its channel window fills.
	if _, err := at.Session(testenv.SessionOpts{PTY: true, Exec: "join " + id}); err != nil {
		t.Fatal(err)
	}
	owner.expect(t, "bob joined as peer; the session is live")
	// More output than every window and queue on the way holds: bob's
	// channel (2 MiB), the link channel (2 MiB), his queue on a (1 MiB).
	owner.send(t, "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 8000000; echo; echo done-$((40+2))\n")
	a.waitEvent(t, 0, "bob's session.leave (too slow)", func(e audit.Event) bool {
		return e.Type == audit.SessionLeave && e.Session == id && e.Attrs["participant"] == "bob" && e.Attrs["reason"] == "too slow"
	})
	owner.expect(t, "done-42")
}

// TestHarnessClusterLinkRefuses: node a's link lets in no node it does
// not know, and what a known peer relays is decided on a's state: a key
// not registered to the person there, or a session a does not hold, is
// refused, and nobody joins.
func TestHarnessClusterLinkRefuses(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	aAddr, aKey := a.spec.node.ln.Addr().String(), a.spec.node.linkKey.PublicKey()
	dial := func(node string, key ssh.Signer) *link.Link {
		l, err := link.New(link.Options{Node: node, Key: key, Peers: []link.Peer{{Node: "a", Address: aAddr, Key: aKey}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	bobFP := ssh.FingerprintSHA256(b.signers["bob"].PublicKey())
	join := link.Join{Session: id, Person: "bob", Mode: "peer", KeyFP: bobFP, Source: "127.0.0.1:1"}

	// A node a does not know, and one that claims b's name with its own key.
	for _, node := range []string{"c", "b"} {
		if _, err := dial(node, newLinkKey(t)).Open(t.Context(), "a", join); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("node %s with an unknown key: %v, want an authentication failure", node, err)
		}
	}
	// b itself, relaying what a must refuse.
	peer := dial("b", b.spec.node.linkKey)
	stranger := ssh.FingerprintSHA256(newSigner(t).PublicKey())
	for _, tc := range []struct {
		name string
		j    link.Join
		want string
	}{
		{"a key not registered to bob", link.Join{Session: id, Person: "bob", Mode: "peer", KeyFP: stranger}, "is not registered to bob on node a"},
		{"alice's key for bob", link.Join{Session: id, Person: "bob", Mode: "peer", KeyFP: ssh.FingerprintSHA256(a.signers["alice"].PublicKey())}, "is not registered to bob"},
		{"a session a does not hold", link.Join{Session: "0123456789", Person: "bob", Mode: "peer", KeyFP: bobFP}, "no session 0123456789"},
		{"the owner as second person", link.Join{Session: id, Person: "alice", Mode: "peer", KeyFP: ssh.FingerprintSHA256(a.signers["alice"].PublicKey())}, "your own session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(a.events(t))
			_, err := peer.Open(t.Context(), "a", tc.j)
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || !strings.Contains(oe.Message, tc.want) {
				t.Fatalf("relayed join: %v, want a refusal saying %q", err, tc.want)
			}
			// The node that refused records it, naming the node that
			// relayed the join: once, whichever check refused.
			a.waitEvent(t, from, "session.denied for the relayed join", func(e audit.Event) bool {
				return e.Type == audit.SessionDenied && e.Person == tc.j.Person && e.Session == tc.j.Session &&
					e.Attrs[audit.KeyAction] == "join" && e.Attrs[audit.KeyRelayedBy] == "b"
			})
			n := 0
			for _, e := range a.events(t)[from:] {
				if e.Type == audit.SessionDenied {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d session.denied events for one refused join, want 1", n)
			}
		})
	}
	if ids := a.targets["prod1"].accepted(); len(ids) != 0 {
		t.Fatalf("a refused relayed join reached the target: %q", ids)
	}
	owner.expect(t, "waiting")
	if strings.Contains(owner.out.String(), "joined") {
		t.Fatalf("somebody joined:\n%s", owner.out.String())
	}
}

// TestHarnessClusterHoldingStoreDown: a node that cannot read the state
// store refuses a join relayed to it, as it refuses a local one: it
// cannot know whether the person was locked a moment ago, and the node
// that relayed the join (whose store may answer) cannot know for it.
func TestHarnessClusterHoldingStoreDown(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	// a's handle on the shared store fails from now on; b's still works.
	a.store.Close()
	const want = "cannot read its state store"
	deadline := time.Now().Add(wait)
	for {
		_, stderr, _ := a.run(t, "bob", "gw", "join "+id)
		if strings.Contains(stderr, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a local join on a is not refused for the store: %q", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, err := link.New(link.Options{Node: "b", Key: b.spec.node.linkKey,
		Peers: []link.Peer{{Node: "a", Address: a.spec.node.ln.Addr().String(), Key: a.spec.node.linkKey.PublicKey()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	j := link.Join{Session: id, Person: "bob", Mode: "peer", KeyFP: ssh.FingerprintSHA256(b.signers["bob"].PublicKey()), Source: "127.0.0.1:1"}
	st, err := l.Open(t.Context(), "a", j)
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || !strings.Contains(oe.Message, want) {
		if err == nil {
			st.Close()
		}
		t.Fatalf("relayed join while a cannot read its store: %v, want a refusal saying %q", err, want)
	}
	if strings.Contains(owner.out.String(), "joined") {
		t.Fatalf("somebody joined:\n%s", owner.out.String())
	}
}

// TestHarnessClusterForgedJoin: what a peer claims for its person — the
// mode, the external flag — counts for nothing on the node that holds the
// session, which decides on its own configuration: an observer-only
// person relayed as peer is refused, and an external expert relayed as an
// employee is still an external who may not join without a second person.
func TestHarnessClusterForgedJoin(t *testing.T) {
	recent := time.Now().UTC().AddDate(0, 0, -10)
	onA := []option{func(s *spec) {
		s.roles += "  - {id: expert, external: true, allow: [{hosts: {tenant: schule-nord}, join: [peer, observer]}]}\n" +
			"  - {id: watcher, allow: [{hosts: {tenant: schule-nord}, join: [observer]}]}\n"
	}, withPerson("erik", recent, "expert"), withPerson("olga", recent, "watcher")}
	a, b, _ := newClusterPair(t, onA, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	l, err := link.New(link.Options{Node: "b", Key: b.spec.node.linkKey,
		Peers: []link.Peer{{Node: "a", Address: a.spec.node.ln.Addr().String(), Key: a.spec.node.linkKey.PublicKey()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	fp := func(person string) string { return ssh.FingerprintSHA256(a.signers[person].PublicKey()) }
	for _, tc := range []struct {
		name string
		j    link.Join
		want string
	}{
		{"an observer relayed as peer", link.Join{Session: id, Person: "olga", Mode: "peer", KeyFP: fp("olga")}, "only as observer"},
		{"an external relayed as employee", link.Join{Session: id, Person: "erik", Mode: "peer", External: false, KeyFP: fp("erik")}, "only under supervision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := l.Open(t.Context(), "a", tc.j)
			if err == nil {
				// Accepted: the session itself may still refuse, on the
				// channel's stderr.
				defer st.Close()
				var out strings.Builder
				done := make(chan struct{})
				go func() { _, _ = io.Copy(&out, st.Stderr()); close(done) }()
				select {
				case <-done:
				case <-time.After(wait):
				}
				if !strings.Contains(out.String(), tc.want) {
					t.Fatalf("relayed join accepted; stderr %q, want a refusal saying %q", out.String(), tc.want)
				}
				return
			}
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || !strings.Contains(oe.Message, tc.want) {
				t.Fatalf("relayed join: %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
	if ids := a.targets["prod1"].accepted(); len(ids) != 0 {
		t.Fatalf("a forged join reached the target: %q", ids)
	}
	if strings.Contains(owner.out.String(), "joined") {
		t.Fatalf("somebody joined:\n%s", owner.out.String())
	}
}

// TestHarnessClusterHostileRows: the shared-session rows are what other
// nodes wrote; a row whose id, state or mode carries terminal controls
// reaches nobody's terminal through `ssh gw sessions`.
func TestHarnessClusterHostileRows(t *testing.T) {
	a, _, _ := newClusterPair(t, nil, nil)
	now := time.Now()
	rows := []store.ClusterSession{{ID: "0a1b\x1b]0;pwned\x07", Node: "c", Owner: "alice", Host: "prod1", Login: "root",
		Tenant: "schule-nord", State: "waiting\x1b[2J", Started: now,
		Participants: []store.ClusterParticipant{{Person: "alice", Mode: "owner"}, {Person: "erin", Mode: "peer\x1b[31m"}}}}
	if err := a.store.PublishSessions(t.Context(), "c", rows, now, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	out, stderr, st := a.run(t, "bob", "gw", "sessions")
	if st != 0 {
		t.Fatalf("sessions: status %d, stderr %q", st, stderr)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("a row from another node put terminal controls on the screen: %q", out)
	}
}

// TestHarnessClusterReloadPeers: the link takes its peers and keys at the
// start. A reload that removes a peer (a node found compromised, say) is
// refused, saying a restart applies it, instead of being recorded as
// applied while the link still lets the removed peer relay joins.
func TestHarnessClusterReloadPeers(t *testing.T) {
	a, b, _ := newClusterPair(t, nil, nil)
	owner := a.shell(t, "alice", "root%prod1")
	id := owner.expect(t, joinID)
	peers := a.spec.node.peers
	a.spec.node.peers = nil
	err := a.srv.Reload(a.parse(t))
	a.spec.node.peers = peers
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a reload without peer b: %v, want a refusal that asks for a restart", err)
	}
	// The refused reload changed nothing: b still relays joins.
	sessionsRow(t, b, "bob", id)
	b.join(t, "bob", id)
	owner.expect(t, "bob joined as peer; the session is live")
	// A reload that leaves the link as it is goes through.
	if err := a.srv.Reload(a.parse(t)); err != nil {
		t.Fatalf("a reload without link changes: %v", err)
	}
}

// TestHarnessClusterPeerSilent: a node that takes a relayed join and then
// sends nothing and never ends the channel on its own does not keep the
// joiner's connection on this node once the joiner has left (it would
// count against their connections_per_person while the link lived): the
// joiner's leaving closes the link channel, and the peer's SSH answers
// the close.
func TestHarnessClusterPeerSilent(t *testing.T) {
	hostKey := newLinkKey(t)
	lnH := listenLoopback(t)
	got := make(chan struct{}, 1)
	// Node "a", which accepts every join and then says nothing.
	testenv.ServeAnyKey(lnH, hostKey, func(nch ssh.NewChannel) {
		if _, creqs, err := nch.Accept(); err == nil {
			go ssh.DiscardRequests(creqs)
			got <- struct{}{}
		}
	})
	b := newHarness(t, withNode(&hNode{name: "b", linkKey: newLinkKey(t), ln: listenLoopback(t),
		peers: []hPeer{{"a", lnH.Addr().String(), hostKey.PublicKey()}}}))
	const id = "0a1b2c3d4e"
	now := time.Now()
	if err := b.store.PublishSessions(t.Context(), "a", []store.ClusterSession{{ID: id, Node: "a", Owner: "alice", Host: "prod1",
		Login: "root", Tenant: "schule-nord", State: "waiting", Started: now,
		Participants: []store.ClusterParticipant{{Person: "alice", Mode: "owner"}}}}, now, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	j := b.join(t, "bob", id)
	select {
	case <-got:
	case <-time.After(wait):
		t.Fatal("the join was not relayed")
	}
	j.c.Close()
	deadline := time.Now().Add(2 * wait)
	for {
		out, _, _ := b.run(t, "bob", "gw", "whoami")
		if strings.Contains(out, "connections: 1 open") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's join connection still open %v after he left:\n%s", 2*wait, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
