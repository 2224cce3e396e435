package cluster

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stays checks for d that want keeps the VIP and nothing else holds it.
func (c *testCluster) stays(want string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if h := c.wire.holders(); len(h) != 1 || h[0] != want {
			c.t.Fatalf("holders %v, want %s to keep the VIP", h, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestController_HealthDrivenFailoverNoFlapNoMoveBack(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings + "failover:\n  hold_down: 0s\n")
	c.health["node1"], c.health["node2"] = &fakeHealth{}, &fakeHealth{}
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", "gpu", "node1")
	c.join("witness", "127.0.0.3", "witness", "node1")
	c.waitHolder("node1")
	ctx := context.Background()

	c.health["node1"].set("http:health")
	c.waitHolder("node2")
	h, err := c.client("witness").History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.Reason != "health:node1:http:health" || last.From != "node1" || last.To != "node2" {
		t.Fatalf("last transition %+v", last)
	}
	// node1 recovers: no automatic move back.
	c.health["node1"].set("")
	c.stays("node2", 2*time.Second)

	// Both unhealthy: nothing moves, and status says why.
	c.health["node1"].set("gpu:gpus")
	c.health["node2"].set("http:health")
	waitFor(t, 10*time.Second, "status to say why nothing moves", func() error {
		st := c.nodes["witness"].agent.Status(ctx)
		if !strings.Contains(st.Blocked, "node2 is unhealthy (http:health)") || !strings.Contains(st.Blocked, "node1 unhealthy (gpu:gpus)") {
			return errString("blocked = " + st.Blocked)
		}
		return nil
	})
	c.stays("node2", time.Second)
}

// The hold-down counts from a move, not from the cluster's start: a service
// that dies right after the cluster formed is moved at once, one that dies
// right after a move stays (against flapping) and status says why.
func TestController_HoldDownAppliesAfterAMoveOnly(t *testing.T) {
	c := newVIPCluster(t) // default hold-down: 30 s
	c.health["node1"].set("http:health")
	c.waitHolder("node2")
	if a := c.nodes["node2"].agent.FSM().State().Active; a.Reason != "health:node1:http:health" {
		t.Fatalf("assignment %+v, want a health move right after startup", a)
	}
	c.health["node1"].set("")
	c.health["node2"].set("http:health")
	waitFor(t, 10*time.Second, "the hold-down to be reported", func() error {
		st := c.nodes["witness"].agent.Status(context.Background())
		if !strings.Contains(st.Blocked, "hold-down") {
			return errString("blocked = " + st.Blocked)
		}
		return nil
	})
	c.stays("node2", time.Second)
}

type errString string

func (e errString) Error() string { return string(e) }

func TestController_PreemptionMovesBackWhenOn(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings + "failover:\n  hold_down: 1s\n  preempt: true\n  preferred: node1\n")
	c.health["node1"], c.health["node2"] = &fakeHealth{}, &fakeHealth{}
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", "gpu", "node1")
	c.join("witness", "127.0.0.3", "witness", "node1")
	c.waitHolder("node1")
	c.health["node1"].set("http:service")
	c.waitHolder("node2")
	c.health["node1"].set("")
	c.waitHolder("node1")
	h, err := c.client("witness").History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.Reason != "preempt:node1" {
		t.Fatalf("last transition %+v", last)
	}
}

func TestSettings_RaftTimeoutsApplyAtRunTime(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", "gpu", "node1")
	ctx := context.Background()
	doc := []byte("timings:\n  raft_heartbeat_timeout: 400ms\n  raft_election_timeout: 450ms\n")
	if _, err := c.client("node2").ConfigApply(ctx, doc); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node1", "node2"} {
		waitFor(t, 10*time.Second, "new raft timeouts on "+name, func() error {
			rc := c.nodes[name].agent.node.raft.ReloadableConfig()
			if rc.HeartbeatTimeout != 400*time.Millisecond || rc.ElectionTimeout != 450*time.Millisecond {
				return errString(rc.HeartbeatTimeout.String() + "/" + rc.ElectionTimeout.String())
			}
			return nil
		})
	}
	// One without the other, or heartbeat above election, is refused.
	for _, bad := range []string{"timings:\n  raft_heartbeat_timeout: 400ms\n", "timings:\n  raft_heartbeat_timeout: 1s\n  raft_election_timeout: 500ms\n"} {
		if _, err := c.client("node1").ConfigApply(ctx, []byte(bad)); err == nil || !strings.Contains(err.Error(), "raft_heartbeat_timeout") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

// A node without a verdict yet (its checks just started) is no reason to
// move the role away from it, and no node to move the role to: the
// start-up flap this prevents was node1 named active with no checks
// loaded, then moved to node2 while node1's first check had not run.
func TestController_PendingHealthNeitherMovesNorIsChosen(t *testing.T) {
	c := newVIPCluster(t)
	c.health["node1"].set("pending:http:service")
	c.stays("node1", time.Second)
	c.health["node1"].set("")
	c.health["node2"].set("pending:http:service")
	if _, err := c.client("witness").Failover(context.Background(), FailoverRequest{To: "node2"}); err == nil {
		t.Fatal("a planned failover to a node without a verdict succeeded")
	}
	waitFor(t, 10*time.Second, "the leader to see over gossip that node2 has no verdict", func() error {
		if h, ok := c.nodes["node1"].agent.gossipHealth()["node2"]; ok {
			return fmt.Errorf("node2 known: %+v", h)
		}
		return nil
	})
	c.health["node1"].set("http:service")
	c.stays("node1", time.Second) // node2 has no verdict: not a target
	c.health["node2"].set("")
	c.waitHolder("node2")
}

// Every operator action is an event in the replicated history with who did
// it (root@NODE on the local socket), what and the reason given, recorded
// once by the member that received the call, and readable on every member.
func TestAudit_OperatorActionsAreEventsWithWhoAndWhy(t *testing.T) {
	c := newVIPCluster(t)
	ctx := context.Background()
	cl := c.client("node2")
	if _, err := cl.Failover(ctx, FailoverRequest{To: "node2"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Maintenance(ctx, true, "manual:patching the driver"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client("node1").CreateToken(ctx, time.Hour, "gpu"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"root@node2: failover node1 -> node2, epoch 2, force=false, reason manual:failover",
		"root@node2: maintenance on=true, reason manual:patching the driver",
		"root@node1: token create, role gpu, valid 1h0m0s, uses 1",
	}
	for _, on := range []string{"node1", "node2", "witness"} {
		waitFor(t, 10*time.Second, "the operator events on "+on, func() error {
			ev, err := c.client(on).Events(ctx)
			if err != nil {
				return err
			}
			var got []string
			for _, e := range ev {
				if e.Kind == "operator" {
					got = append(got, e.Detail)
				}
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("operator events %q, want %q", got, want)
			}
			return nil
		})
	}
}
