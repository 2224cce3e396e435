package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/fsm"
)

// The leader itself refuses, to any caller of the API, the removal of the
// active node, or of a voter without which the voters alive are no
// majority; force does it, and nothing is written for a refusal.
func TestRemove_LeaderRefusesActiveAndQuorumWithoutForce(t *testing.T) {
	c := newVIPCluster(t) // node1 active
	cl := c.client("node2")
	members := func() int { return len(c.nodes["node2"].agent.FSM().State().Members) }

	err := cl.Remove(t.Context(), "node1")
	if !errors.Is(err, ErrNeedsForce) || !strings.Contains(err.Error(), "node1 is the active node") {
		t.Fatalf("remove the active node: %v; want ErrNeedsForce naming it", err)
	}
	c.stop("witness")
	err = cl.Remove(t.Context(), "node2")
	if !errors.Is(err, ErrNeedsForce) || !strings.Contains(err.Error(), "witness down") {
		t.Fatalf("remove a voter the quorum needs: %v", err)
	}
	if n := members(); n != 3 {
		t.Fatalf("%d members after two refusals, want 3", n)
	}
	// The dead witness may go without force: node1 and node2 are alive.
	if err := cl.Remove(t.Context(), "witness"); err != nil {
		t.Fatalf("remove the dead witness: %v", err)
	}
	if _, ok := c.nodes["node2"].agent.FSM().Member("witness"); ok {
		t.Fatal("witness still a member")
	}
	// Force: the operator's decision.
	c.join("node3", "127.0.0.4", fsm.RoleWitness, "node1")
	if err := cl.RemoveWith(t.Context(), RemoveRequest{Name: "node1", Force: true}); err != nil {
		t.Fatalf("remove --force of the active node: %v", err)
	}
}
