package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Raft leadership is kept on the witness: node1 inits the cluster (and so
// leads) and holds the VIP; it hands leadership to the witness. Moved to
// the standby, leadership comes back to the witness too, and the VIP never
// moves.
func TestLease_GPUNodesHandRaftLeadershipToTheWitness(t *testing.T) {
	c := newVIPCluster(t)
	waitLeader := func(want string) {
		t.Helper()
		waitFor(t, shedAfter+10*time.Second, want+" to lead", func() error {
			if l := c.leader(); l == nil || l.name != want {
				return fmt.Errorf("leader is %v", l)
			}
			return nil
		})
	}
	waitLeader("witness")
	n2 := c.nodes["node2"]
	if err := c.nodes["witness"].agent.node.raft.LeadershipTransferToServer(raft.ServerID("node2"), raft.ServerAddress(n2.agent.cfg.Node.RaftAddr())).Error(); err != nil {
		t.Fatal(err)
	}
	waitLeader("node2")
	waitLeader("witness")
	c.waitHolder("node1")
	if n := len(c.nodes["node1"].agent.FSM().State().History); n != 1 {
		t.Fatalf("history has %d entries; handing leadership on must not move the active role", n)
	}
}
