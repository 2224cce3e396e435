//go:build integration

package integration

import (
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFailover measures what a client sees through the VIP, one
// failover per iteration, alternating between the GPU nodes: run it with
// `make bench-failover` (-benchtime=5x or more). Reported per kind:
// min, median and max milliseconds from the fault to the first answer from
// the new node, and for planned switchovers the client's gap without a
// good answer.
func BenchmarkFailover(b *testing.B) {
	for _, kind := range []string{"crash", "host-loss", "planned", "service-errors"} {
		b.Run(kind, func(b *testing.B) {
			// Default check timings; a short hold-down so that runs can
			// alternate between the nodes without waiting 30 s.
			f := newFailoverLabWith(b, "", "failover:\n  hold_down: 1s\n")
			var toFirst, gaps []float64
			failed := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				from, to := f.n1, f.n2
				if !f.holds(f.n1) {
					from, to = f.n2, f.n1
				}
				wait := f.watch("--until", to.name, "--duration", "60s")
				fault := time.Now()
				switch kind {
				case "crash":
					f.kill(from, syscall.SIGKILL)
				case "host-loss":
					run(b, "ip", "-n", from.ns, "link", "set", from.hostIf, "down")
				case "planned":
					f.mustCLI(f.w, "failover", "--to", to.name, "--data-dir", f.w.dataDir)
				case "service-errors":
					f.fault(from, "error")
				}
				r := wait()
				if r.Last != to.name || len(r.Switches) == 0 {
					b.Fatalf("run %d: client ended on %q", i, r.Last)
				}
				checkOneMAC(b, r)
				sw := r.Switches[len(r.Switches)-1]
				toFirst = append(toFirst, float64(sw.At.Sub(fault).Microseconds())/1000)
				gaps = append(gaps, sw.OutageMs)
				failed += r.Failed
				// Bring the old node back and wait for a healthy cluster.
				switch kind {
				case "crash":
					f.startAgent(from)
				case "host-loss":
					run(b, "ip", "-n", from.ns, "link", "set", from.hostIf, "up")
				case "service-errors":
					f.fault(from, "none")
				}
				waitFor(b, 60*time.Second, "the cluster healthy again", func() error {
					s, err := f.status(f.w)
					if err != nil {
						return err
					}
					if err := healthy(s, "node1", "node2", "witness"); err != nil {
						return err
					}
					if !f.holds(to) || f.holds(from) {
						return fmt.Errorf("VIP not settled on %s", to.name)
					}
					return nil
				})
			}
			b.StopTimer()
			report(b, "fault-to-new-ms", toFirst)
			report(b, "client-gap-ms", gaps)
			b.ReportMetric(float64(failed)/float64(b.N), "failed-req/op")
		})
	}
}

func report(b *testing.B, name string, v []float64) {
	sort.Float64s(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	b.ReportMetric(v[0], name+"-min")
	b.ReportMetric(med, name+"-median")
	b.ReportMetric(v[len(v)-1], name+"-max")
	b.Logf("%s over %d runs: min %.0f, median %.0f, max %.0f (all: %v)", name, len(v), v[0], med, v[len(v)-1], v)
}
