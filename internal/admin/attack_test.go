package admin

import (
	"strings"
	"testing"

	"tandem.dev/tandem/internal/store"
)

// TestApproveTerminalsAfterTheRight: a request that asks for terminals
// tells only a person who may decide it that approving needs --terminals.
// Anybody else — a person without the approve right, an external, a
// locked approver, the requester — gets the policy's refusal, which names
// neither the requester nor the request's hosts.
func TestApproveTerminalsAfterTheRight(t *testing.T) {
	g := newFake(t)
	code, out, errOut := g.run("alice", "request --hosts prod1 --login root --for 1h --tty --reason ticket 42 migrate the db")
	if code != 0 {
		t.Fatalf("request: %d %s %s", code, out, errOut)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	g.locks["carol"] = store.Lock{Person: "carol", Reason: "laptop stolen"}
	for _, c := range []struct{ person, want string }{
		{"bob", "may not approve requests for prod1"},
		{"eve", "external experts never approve access requests"},
		{"carol", "locked"},
		{"alice", "you cannot approve your own request"},
	} {
		code, out, errOut := g.run(c.person, "approve "+id)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "asks for terminals") {
			t.Errorf("%s: approve %s: %d %q %q, want the refusal %q", c.person, id, code, out, errOut, c.want)
		}
	}
	delete(g.locks, "carol")
	if code, _, errOut := g.run("carol", "approve "+id); code != 1 || !strings.Contains(errOut, "approve with:  ssh gw approve "+id+" --terminals") {
		t.Fatalf("carol without --terminals: %d %q", code, errOut)
	}
	if code, out, errOut := g.run("carol", "approve "+id+" --terminals"); code != 0 || !strings.Contains(out, "WITH TERMINALS") {
		t.Fatalf("carol with --terminals: %d %q %q", code, out, errOut)
	}
}
