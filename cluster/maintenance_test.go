package cluster

import (
	"fmt"
	"time"

	"context"
	"github.com/newbieha/newbieha/fsm"
	"testing"
)

// Status carries since when, why and by whom maintenance is on, from the replicated
// state, and nothing once it is off.
func TestStatus_MaintenanceInfo(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx := context.Background()
	local := NewLocalClient(n1.dataDir)
	if err := local.Maintenance(ctx, true, "driver upgrade"); err != nil {
		t.Fatal(err)
	}
	st, err := local.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Maintenance || st.MaintenanceInfo == nil || st.MaintenanceInfo.Reason != "driver upgrade" || st.MaintenanceInfo.Since.IsZero() || st.MaintenanceInfo.By != "root@node1" {
		t.Fatalf("status maintenance %v, info %+v; want on, the reason, a time and root@node1", st.Maintenance, st.MaintenanceInfo)
	}
	if err := local.Maintenance(ctx, false, "done"); err != nil {
		t.Fatal(err)
	}
	if st, err = local.Status(ctx); err != nil || st.Maintenance || st.MaintenanceInfo != nil {
		t.Fatalf("after off: %v, %v, %+v", err, st.Maintenance, st.MaintenanceInfo)
	}
}

// init --maintenance: the cluster forms, but no node becomes active and
// nobody holds the VIP until maintenance is off (a cutover from
// Keepalived, which still holds the address meanwhile).
func TestInit_InMaintenanceNobodyHoldsUntilItIsOff(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings)
	c.health["node1"], c.health["node2"] = &fakeHealth{}, &fakeHealth{}
	c.initOptions = func(o *InitOptions) { o.Maintenance = "cutover from keepalived" }
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	ctx := context.Background()
	waitFor(t, 20*time.Second, "three voters", func() error {
		return healthyStatus(c.nodes["node1"].agent.Status(ctx), "node1", "node2", "witness")
	})
	// Once no voter is in its start-up quarantine a holder could be
	// granted a lease; a few lease rounds (100 ms apart) later, still
	// nobody.
	waitFor(t, 20*time.Second, "every voter past its quarantine", func() error {
		for _, m := range c.nodes["node1"].agent.Status(ctx).Members {
			if m.Lease.Quarantine > 0 {
				return fmt.Errorf("%s in quarantine", m.Name)
			}
		}
		return nil
	})
	time.Sleep(time.Second)
	st := c.nodes["node2"].agent.Status(ctx)
	if st.Active.Node != "" || len(c.wire.holders()) != 0 || !st.Maintenance || st.MaintenanceInfo == nil ||
		st.MaintenanceInfo.Reason != "cutover from keepalived" || st.MaintenanceInfo.By != "root@node1" {
		t.Fatalf("in maintenance from init: active %q, holders %v, maintenance %v %+v", st.Active.Node, c.wire.holders(), st.Maintenance, st.MaintenanceInfo)
	}
	// Nor has any GPU node put its fence on the VIP's interface: until a
	// node is named active the address may be another daemon's there.
	c.wire.mu.Lock()
	prepared := len(c.wire.prepared)
	c.wire.mu.Unlock()
	if prepared != 0 {
		t.Fatalf("fences installed in maintenance before any node was named: %v", c.wire.prepared)
	}
	if err := c.client("node2").Maintenance(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	c.waitHolder("node1") // the preferred (here: the leader's own) healthy GPU node
	if h := c.nodes["node1"].agent.FSM().State().History; len(h) != 1 || h[0].Reason != "startup" {
		t.Fatalf("history %+v, want one startup entry", h)
	}
}
