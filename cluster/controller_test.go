package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

// testLeaseDuration is long enough that a move which waits out a lease is
// told apart from one that does not, with room for a slow, loaded machine.
const testLeaseDuration = Duration(2 * time.Second)

const testTimingsYAML = "timings:\n  lease_duration: 2s\n  lease_drift: 200ms\n  lease_renew_interval: 200ms\n  lease_retry_interval: 20ms\n  vip_lifetime: 3s\n"

const testVIPSettings = "vip:\n  address: 10.99.0.100/24\n" + testTimingsYAML

// crash stops name's agent as if its process died: no release is sent and
// its fence stays open until the deadline it last wrote.
func (c *testCluster) crash(name string) {
	c.t.Helper()
	c.wire.crash(name)
	c.nodes[name].agent.lease.crashed.Store(true)
	c.stop(name)
}

// newVIPCluster starts node1, node2 and a witness with fake VIPs on one
// fake wire and waits until node1 holds the VIP.
func newVIPCluster(t *testing.T) *testCluster {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings)
	c.health["node1"], c.health["node2"] = &fakeHealth{}, &fakeHealth{}
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	ctx := context.Background()
	waitFor(t, 20*time.Second, "three voters", func() error {
		return healthyStatus(c.nodes["node1"].agent.Status(ctx), "node1", "node2", "witness")
	})
	c.waitHolder("node1")
	return c
}

// waitHolder waits until exactly want holds the VIP on the wire and in
// status.
func (c *testCluster) waitHolder(want string) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, want+" to hold the VIP", func() error {
		if h := c.wire.holders(); len(h) != 1 || h[0] != want {
			return fmt.Errorf("holders %v", h)
		}
		for _, n := range c.nodes {
			if n.agent == nil {
				continue
			}
			if got := n.agent.FSM().State().Active.Node; got != want {
				return fmt.Errorf("%s: active %q", n.name, got)
			}
		}
		return nil
	})
}

func (c *testCluster) client(name string) *Client { return NewLocalClient(c.nodes[name].dataDir) }

func TestController_StartupFailoverAndBack(t *testing.T) {
	c := newVIPCluster(t)
	ctx := context.Background()
	if a := c.nodes["node1"].agent.FSM().State().Active; a.Reason != "startup" || a.Epoch != 1 {
		t.Fatalf("first assignment %+v, want startup epoch 1", a)
	}
	st := c.nodes["witness"].agent.Status(ctx)
	if st.VIP.Address != "10.99.0.100/24" || st.VIP.Holder != "node1" || st.VIP.Conflict != "" {
		t.Fatalf("status vip = %+v", st.VIP)
	}

	// Planned failover, asked on node2 (carried to the leader when node2
	// does not lead).
	begin := time.Now()
	resp, err := c.client("node2").Failover(ctx, FailoverRequest{To: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.From != "node1" || resp.To != "node2" || resp.Epoch != 2 || resp.HeldMs == 0 {
		t.Fatalf("failover response %+v", resp)
	}
	c.waitHolder("node2")
	claim := c.wire.lastClaim()
	lease := time.Duration(testLeaseDuration)
	if claim.node != "node2" || claim.at.Sub(begin) >= lease {
		t.Fatalf("handover claim %+v took %v; node1 released, so node2 must not wait out its lease (%v)", claim, claim.at.Sub(begin), lease)
	}
	if a := c.nodes["node2"].agent.FSM().State().Active; a.Reason != "manual:failover" {
		t.Fatalf("assignment after failover %+v", a)
	}

	// And back, asked on node2 itself.
	if _, err := c.client("node2").Failover(ctx, FailoverRequest{To: "node1"}); err != nil {
		t.Fatal(err)
	}
	c.waitHolder("node1")

	// History: same on every node, epochs strictly increasing, reasons.
	var first []fsm.Transition
	for _, n := range []string{"node1", "node2", "witness"} {
		var h []fsm.Transition
		waitFor(t, 10*time.Second, "history on "+n, func() error {
			var err error
			h, err = c.client(n).History(ctx)
			if err != nil {
				return err
			}
			if len(h) != 3 {
				return fmt.Errorf("%d entries", len(h))
			}
			return nil
		})
		if first == nil {
			first = h
		} else if !reflect.DeepEqual(first, h) {
			t.Fatalf("history differs on %s:\n%+v\n%+v", n, first, h)
		}
	}
	wantReasons := []string{"startup", "manual:failover", "manual:failover"}
	for i, tr := range first {
		if tr.Epoch != uint64(i+1) || tr.Reason != wantReasons[i] || tr.Index == 0 {
			t.Errorf("history[%d] = %+v", i, tr)
		}
	}
}

// A holder that dies without running any code keeps its fence open until
// its deadline; node2 is granted only after every grant to node1 ran out
// (fakeWire fails the test on any overlap), whether node1 led Raft or not.
func TestController_CrashedHolderIsWaitedOut(t *testing.T) {
	for _, leads := range []bool{true, false} {
		t.Run(fmt.Sprintf("holder_leads=%v", leads), func(t *testing.T) {
			c := newVIPCluster(t)
			if !leads {
				transferLeader(t, c, "witness")
			}
			c.crash("node1")
			c.waitHolder("node2")
			if a := c.nodes["node2"].agent.FSM().State().Active; a.Reason != "holder-lost:node1" || a.Epoch != 2 {
				t.Fatalf("assignment %+v, want holder-lost:node1 at epoch 2", a)
			}
		})
	}
}

// transferLeader moves Raft leadership to name and waits until it leads.
func transferLeader(t *testing.T, c *testCluster, name string) {
	t.Helper()
	waitFor(t, 20*time.Second, name+" to lead", func() error {
		l := c.leader()
		if l == nil {
			return errors.New("no leader")
		}
		if l.name == name {
			return nil
		}
		return l.agent.node.raft.LeadershipTransferToServer(raft.ServerID(name), raftAddr(c.nodes[name])).Error()
	})
}

// watchHolders samples the wire until stop is closed and returns every
// sample in which the VIP was not held by want alone.
func (c *testCluster) watchHolders(want string, stop <-chan struct{}) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var bad []string
		for {
			select {
			case <-stop:
				out <- bad
				return
			case <-time.After(5 * time.Millisecond):
			}
			if h := c.wire.holders(); len(h) != 1 || h[0] != want {
				bad = append(bad, fmt.Sprint(h))
			}
		}
	}()
	return out
}

// Raft leadership moves freely: the witness may lead and the VIP never
// leaves node1 (no sample without it), and the witness keeps leading.
func TestController_WitnessLeadsAndTheVIPStays(t *testing.T) {
	c := newVIPCluster(t)
	stop := make(chan struct{})
	gaps := c.watchHolders("node1", stop)
	transferLeader(t, c, "witness")
	transferLeader(t, c, "node2")
	transferLeader(t, c, "witness")
	time.Sleep(2 * time.Duration(testLeaseDuration)) // several renewals under the witness
	close(stop)
	if bad := <-gaps; len(bad) > 0 {
		t.Fatalf("the VIP was not held by node1 alone in %d samples while leadership moved: %v", len(bad), bad[:min(len(bad), 5)])
	}
	if l := c.leader(); l == nil || l.name != "witness" {
		t.Fatalf("leader %v, want the witness to keep leading", l)
	}
	if a := c.nodes["witness"].agent.FSM().State().Active; a.Epoch != 1 {
		t.Fatalf("leadership changes moved the active role: %+v", a)
	}
	for _, cl := range c.wire.claims {
		if cl.node == "witness" {
			t.Fatal("the witness claimed the VIP")
		}
	}
	if c.nodes["witness"].agent.lease.holdsVIP() {
		t.Fatal("witness holds the VIP")
	}
}

func TestController_MaintenanceFreezesAndFailoverErrors(t *testing.T) {
	c := newVIPCluster(t)
	ctx := context.Background()
	cl := c.client("node2")

	cases := []struct {
		req  FailoverRequest
		want error
	}{
		{FailoverRequest{To: "node9"}, ErrUnknownMember},
		{FailoverRequest{To: "witness"}, ErrNotGPU},
		{FailoverRequest{To: "node1"}, ErrAlreadyActive},
		{FailoverRequest{To: "node2", Reason: "because"}, ErrBadRequest},
	}
	for _, tc := range cases {
		if _, err := cl.Failover(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("failover %+v: err = %v, want %v", tc.req, err, tc.want)
		}
	}
	c.health["node2"].set("http: 500 from /health")
	if _, err := cl.Failover(ctx, FailoverRequest{To: "node2"}); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("failover to unhealthy node2: err = %v", err)
	}
	if got := c.wire.holders(); len(got) != 1 || got[0] != "node1" {
		t.Fatalf("a refused failover moved the VIP: %v", got)
	}

	if err := cl.Maintenance(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	c.health["node2"].set("")
	if _, err := cl.Failover(ctx, FailoverRequest{To: "node2"}); !errors.Is(err, ErrMaintenance) {
		t.Fatalf("failover in maintenance: err = %v", err)
	}
	// Maintenance freezes decisions, never renewals: leadership changes
	// and the VIP stays on node1.
	stop := make(chan struct{})
	gaps := c.watchHolders("node1", stop)
	transferLeader(t, c, "node2")
	time.Sleep(2 * time.Duration(testLeaseDuration))
	close(stop)
	if bad := <-gaps; len(bad) > 0 {
		t.Fatalf("in maintenance, a leader change cost the VIP in %d samples: %v", len(bad), bad[:min(len(bad), 5)])
	}
	// The active node goes away: in maintenance nothing moves on its own.
	c.stop("node1")
	waitFor(t, 20*time.Second, "node2 or the witness to lead", func() error {
		if l := c.leader(); l == nil {
			return errors.New("not yet")
		}
		return nil
	})
	deadline := time.Now().Add(2*time.Duration(testLeaseDuration) + time.Second)
	for time.Now().Before(deadline) {
		if a := c.nodes["node2"].agent.FSM().State().Active; a.Node != "node1" {
			t.Fatalf("active moved to %q in maintenance mode", a.Node)
		}
		if h := c.wire.holders(); len(h) != 0 {
			t.Fatalf("VIP held by %v in maintenance with the active node down", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Maintenance off: node2 takes over.
	if err := cl.Maintenance(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	c.waitHolder("node2")
}

// Shutdown (SIGTERM) of the active agent hands the role to the healthy
// standby before it stops, and the move is recorded as such.
func TestController_ShutdownHandsOver(t *testing.T) {
	c := newVIPCluster(t)
	waitFor(t, 10*time.Second, "node1 to see node2 healthy over gossip", func() error {
		if g := c.nodes["node1"].agent.gossipView()["node2"]; !g.Alive || !g.HasState || !g.State.Healthy {
			return fmt.Errorf("gossip %+v", g)
		}
		return nil
	})
	begin := time.Now()
	if err := c.nodes["node1"].agent.Shutdown(); err != nil {
		t.Fatal(err)
	}
	c.nodes["node1"].agent = nil
	c.waitHolder("node2")
	a := c.nodes["node2"].agent.FSM().State().Active
	if a.Reason != "stop:node1" || a.Epoch != 2 {
		t.Fatalf("assignment %+v, want stop:node1 at epoch 2", a)
	}
	if cl := c.wire.lastClaim(); cl.node != "node2" || cl.at.Sub(begin) >= time.Duration(testLeaseDuration) {
		t.Fatalf("node2 claimed %v after the stop began; a hand-over must not wait out the lease", cl.at.Sub(begin))
	}
}

func raftAddr(n *testNode) raft.ServerAddress { return raft.ServerAddress(n.agent.cfg.Node.RaftAddr()) }

func TestController_VIPConflictIsReportedAndReannounced(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte("vip:\n  address: 10.99.0.100/24\n  conflict_probe_interval: 200ms\n" + testTimingsYAML)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	c.waitHolder("node1")
	ctx := context.Background()
	if st := c.nodes["witness"].agent.Status(ctx); st.VIP.Conflict != "" {
		t.Fatalf("conflict reported with one holder: %q", st.VIP.Conflict)
	}
	c.wire.mu.Lock()
	before := c.wire.announces["node1"]
	c.wire.foreign = []net.HardwareAddr{{0xde, 0xad, 0xbe, 0xef, 0, 1}}
	c.wire.mu.Unlock()
	waitFor(t, 10*time.Second, "the conflict in status, seen by the holder and the witness", func() error {
		st := c.nodes["witness"].agent.Status(ctx)
		if !strings.Contains(st.VIP.Conflict, "node1 holds the VIP and de:ad:be:ef:00:01 also answer") {
			return fmt.Errorf("conflict = %q", st.VIP.Conflict)
		}
		if !strings.Contains(st.VIP.Conflict, "witness sees 2 hosts answer for the VIP") {
			return fmt.Errorf("conflict = %q", st.VIP.Conflict)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the holder to announce again", func() error {
		c.wire.mu.Lock()
		defer c.wire.mu.Unlock()
		if c.wire.announces["node1"] <= before {
			return fmt.Errorf("no new announcement")
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the conflict in the event history", func() error {
		ev, err := c.client("node2").Events(ctx)
		if err != nil {
			return err
		}
		for _, e := range ev {
			if e.Kind == "vip-conflict" && e.Node == "node1" && strings.Contains(e.Detail, "de:ad:be:ef:00:01") {
				return nil
			}
		}
		return fmt.Errorf("events %+v", ev)
	})
	c.wire.mu.Lock()
	c.wire.foreign = nil
	c.wire.mu.Unlock()
	waitFor(t, 10*time.Second, "the conflict to clear", func() error {
		if st := c.nodes["witness"].agent.Status(ctx); st.VIP.Conflict != "" {
			return fmt.Errorf("conflict = %q", st.VIP.Conflict)
		}
		return nil
	})
}

func TestMetrics_ReflectTheState(t *testing.T) {
	c := newVIPCluster(t)
	// Raft leadership may move (the witness may win an election on a busy
	// machine): each scrape is compared with the agent's own view, again
	// until they agree.
	leads := func(name string) string {
		if c.nodes[name].agent.IsLeader() {
			return "newbieha_raft_leader 1"
		}
		return "newbieha_raft_leader 0"
	}
	check := func(name string, wants ...string) func() error {
		return func() error {
			var out strings.Builder
			c.nodes[name].agent.writeMetrics(&out)
			for _, want := range append(wants, leads(name)) {
				if !strings.Contains(out.String(), want) {
					return fmt.Errorf("%s metrics lack %q:\n%s", name, want, out.String())
				}
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "node1's metrics", check("node1", "newbieha_active 1", "newbieha_vip_held 1", "newbieha_epoch 1", "newbieha_healthy 1", `newbieha_info{name="node1",role="gpu"} 1`))
	waitFor(t, 10*time.Second, "the witness's metrics", check("witness", "newbieha_active 0", "newbieha_vip_held 0", "newbieha_healthy 0"))
}
