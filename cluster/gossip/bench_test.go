package gossip

import (
	"bytes"
	"github.com/newbieha/newbieha/internal/logging"
	"math/rand/v2"
	"testing"
	"time"
)

// pollUntil polls cond every millisecond, failing b after timeout.
func pollUntil(b *testing.B, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPropagation measures how long one node's new state takes to
// reach both other nodes of a three-node cluster on loopback (ns/op is the
// latency), for each way a state travels. Broadcasts wait for the next
// gossip tick, so expect about half a GossipInterval on average.
func BenchmarkPropagation(b *testing.B) {
	for _, tc := range []struct {
		name string
		blob func(i int) []byte
	}{
		{"small", func(i int) []byte { return []byte(time.Now().String()) }},
		{"telemetry-4KB-broadcast", func(i int) []byte { return telemetry("node1", i, 4<<10) }},
		{"random-8KB-direct", func(i int) []byte { return randomBytes(b, 8<<10) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nodes, _ := newCluster(b, 3, quiet)
			defer closeAll(nodes)
			i := 0
			for b.Loop() {
				b.StopTimer()
				blob := tc.blob(i)
				i++
				// Start at a random point of the gossip tick: otherwise
				// each round begins right after the tick that ended the
				// previous one and always waits a whole interval.
				time.Sleep(rand.N(nodes[0].cfg.GossipInterval))
				b.StartTimer()
				if err := nodes[0].SetLocalState(blob); err != nil {
					b.Fatal(err)
				}
				pollUntil(b, 3*time.Second, func() bool {
					for _, g := range nodes[1:] {
						if m, _ := member(g, "node1"); !bytes.Equal(m.State, blob) {
							return false
						}
					}
					return true
				})
			}
		})
	}
}

// BenchmarkDeadDetection measures, on a fresh three-node cluster per
// iteration, the time from one node stopping without Leave until both
// others see it not alive (ns/op). Run with -benchtime=7x or so.
func BenchmarkDeadDetection(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		nodes, _ := newCluster(b, 3, quiet)
		b.StartTimer()
		if err := nodes[2].Close(); err != nil {
			b.Fatal(err)
		}
		pollUntil(b, 10*time.Second, func() bool {
			for _, g := range nodes[:2] {
				if m, _ := member(g, "node3"); m.Alive {
					return false
				}
			}
			return true
		})
		b.StopTimer()
		closeAll(nodes)
		b.StartTimer()
	}
}

// quiet drops logs: benchmarks print every b.Log line.
func quiet(c *Config) { c.Logger = logging.Discard() }

func closeAll(nodes []*Gossip) {
	for _, g := range nodes {
		_ = g.Close()
	}
}
