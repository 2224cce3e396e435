package gossip

import (
	"fmt"
	"testing"
	"time"
)

func dumpViews(t *testing.T, gs ...*Gossip) {
	for _, g := range gs {
		var ml []string
		for _, n := range g.ml.Members() {
			ml = append(ml, n.Name)
		}
		t.Logf("VIEW %s: memberlist %v ours %v", g.cfg.Name, ml, aliveNames(g))
	}
}

func TestDbgReconnect(t *testing.T) {
	fast := func(c *Config) { c.ReconnectInterval = 200 * time.Millisecond }
	nodes, _ := newCluster(t, 3, fast)
	addr := nodes[2].LocalAddr()
	var port int
	fmt.Sscanf(addr, "127.0.0.3:%d", &port)
	nodes[2].Close()
	waitFor(t, 10*time.Second, func() error {
		for _, g := range nodes[:2] {
			if m, _ := member(g, "node3"); m.Alive {
				return fmt.Errorf("alive")
			}
		}
		return nil
	})
	again, _ := newNode(t, "node3", "127.0.0.3", func(c *Config) { fast(c); c.BindPort = port })
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if len(aliveNames(again)) == 3 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	dumpViews(t, nodes[0], nodes[1], again)
	t.Fatal("not converged")
}
