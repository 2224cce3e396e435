package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

const testVIPSettings = "vip:\n  address: 10.99.0.100/24\n"

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
	if a := c.nodes["node1"].agent.FSM().State().Active; a.Reason != "startup" || a.Epoch != 1 || a.Handover {
		t.Fatalf("first assignment %+v, want startup epoch 1 without handover", a)
	}
	st := c.nodes["witness"].agent.Status(ctx)
	if st.VIP.Address != "10.99.0.100/24" || st.VIP.Holder != "node1" || st.VIP.Conflict != "" {
		t.Fatalf("status vip = %+v", st.VIP)
	}

	// Planned failover, asked on the witness (forwarded to the leader).
	begin := time.Now()
	resp, err := c.client("witness").Failover(ctx, FailoverRequest{To: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.From != "node1" || resp.To != "node2" || resp.Epoch != 2 {
		t.Fatalf("failover response %+v", resp)
	}
	c.waitHolder("node2")
	claim := c.wire.lastClaim()
	wait := DefaultSettings().Timings.TakeoverWait()
	if claim.node != "node2" || claim.at.Sub(begin) >= wait {
		t.Fatalf("handover claim %+v took %v; a planned handover must not wait the lease (%v)", claim, claim.at.Sub(begin), wait)
	}
	if a := c.nodes["node2"].agent.FSM().State().Active; !a.Handover || a.Reason != "manual:failover" {
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

func TestController_CrashedHolderIsWaitedOut(t *testing.T) {
	c := newVIPCluster(t)
	// node1 dies without running any code: its lease runs out by itself.
	c.wire.crash("node1")
	c.stop("node1")
	c.waitHolder("node2")
	claim := c.wire.lastClaim()
	since := c.nodes["node2"].agent.ctl.leaderSince
	wait := DefaultSettings().Timings.TakeoverWait()
	if claim.at.Sub(since) < wait {
		t.Fatalf("node2 claimed %v after becoming leader; it must wait %v for node1's lease", claim.at.Sub(since), wait)
	}
	if a := c.nodes["node2"].agent.FSM().State().Active; a.Reason != "leader-lost" || a.Handover {
		t.Fatalf("assignment %+v, want leader-lost", a)
	}
	// (fakeWire fails the test had two nodes held the VIP at once.)
}

func TestController_WitnessLeaderHandsToGPUAndNeverHolds(t *testing.T) {
	c := newVIPCluster(t)
	l := c.leader()
	w := c.nodes["witness"]
	if err := l.agent.node.raft.LeadershipTransferToServer("witness", raftAddr(w)).Error(); err != nil {
		t.Fatalf("make witness leader: %v", err)
	}
	waitFor(t, 20*time.Second, "leadership back on a GPU node", func() error {
		n := c.leader()
		if n == nil || n.role != fsm.RoleGPU {
			return errors.New("no GPU leader yet")
		}
		return nil
	})
	c.waitHolder(c.leader().name)
	for _, cl := range c.wire.claims {
		if cl.node == "witness" {
			t.Fatal("the witness claimed the VIP")
		}
	}
	if w.agent.ctl.holdsVIP() {
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
	// The active node goes away: in maintenance nothing moves on its own.
	c.stop("node1")
	waitFor(t, 20*time.Second, "node2 to lead", func() error {
		if !c.nodes["node2"].agent.IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})
	deadline := time.Now().Add(DefaultSettings().Timings.TakeoverWait() + time.Second)
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

func raftAddr(n *testNode) raft.ServerAddress { return raft.ServerAddress(n.agent.cfg.Node.RaftAddr()) }

func TestController_VIPConflictIsReportedAndReannounced(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings + "  conflict_probe_interval: 200ms\n")
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
	var out strings.Builder
	c.nodes["node1"].agent.writeMetrics(&out)
	for _, want := range []string{"newbieha_raft_leader 1", "newbieha_active 1", "newbieha_vip_held 1", "newbieha_epoch 1", "newbieha_healthy 1", `newbieha_info{name="node1",role="gpu"} 1`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("node1 metrics lack %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	c.nodes["witness"].agent.writeMetrics(&out)
	for _, want := range []string{"newbieha_raft_leader 0", "newbieha_active 0", "newbieha_vip_held 0", "newbieha_healthy 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("witness metrics lack %q", want)
		}
	}
}

// A planned failover must not release the VIP between the holder's quorum
// check and its renewal: the renewal would put the address back after the
// target has claimed it.
func TestController_FailoverWaitsForARenewalInProgress(t *testing.T) {
	c := newVIPCluster(t)
	gate, gated := make(chan struct{}), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // never leave the controller stuck
	c.wire.mu.Lock()
	c.wire.gate, c.wire.gated, c.wire.gateNode = gate, gated, "node1"
	c.wire.mu.Unlock()
	select {
	case <-gated: // node1 has confirmed its leadership and is renewing
	case <-time.After(10 * time.Second):
		t.Fatal("node1 never renewed")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.client("node1").Failover(context.Background(), FailoverRequest{To: "node2"})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("failover finished while node1 was still renewing: %v", err)
	case <-time.After(time.Second):
	}
	// (node1's lease may run out meanwhile: the renewal is held longer
	// than the 1 s lifetime.) What must not happen is node2 claiming.
	if cl := c.wire.lastClaim(); cl.node == "node2" {
		t.Fatal("node2 claimed while node1 was still renewing")
	}
	open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.waitHolder("node2") // and fakeWire fails the test on any overlap
}
