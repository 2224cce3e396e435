package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Health reports travel by gossip: a change on one node shows in status on
// every node, and a stopped node shows as not alive.
func TestStatus_GossipedHealthReachesEveryNode(t *testing.T) {
	c := newVIPCluster(t)
	ctx := context.Background()
	c.health["node2"].set("gpu:gpus")
	changed := time.Now()
	for _, name := range []string{"node1", "node2", "witness"} {
		waitFor(t, 10*time.Second, "node2's report on "+name, func() error {
			for _, m := range c.nodes[name].agent.Status(ctx).Members {
				if m.Name != "node2" {
					continue
				}
				if !m.Alive || m.Healthy || m.HealthReason != "gpu:gpus" || fmt.Sprint(m.Health) != "map[fake:gpu:gpus]" {
					return fmt.Errorf("node2 as seen on %s: %+v", name, m)
				}
				return nil
			}
			return fmt.Errorf("node2 missing")
		})
	}
	// The target is 3 s; a speed is measured, not asserted.
	t.Logf("node2's new report reached every node's status in %v", time.Since(changed).Round(time.Millisecond))
	// node1, the holder, stops: its last report (healthy, holding the VIP)
	// must not make a dead node look healthy or a holder.
	c.wire.crash("node1")
	c.stop("node1")
	waitFor(t, 15*time.Second, "the stopped node1 not alive, not healthy, not a holder", func() error {
		for _, m := range c.nodes["witness"].agent.Status(ctx).Members {
			if m.Name == "node1" && (m.Alive || m.Healthy || m.HoldsVIP || !strings.HasPrefix(m.HealthReason, "not alive")) {
				return fmt.Errorf("node1 as seen on the witness: %+v", m)
			}
		}
		return nil
	})
}
