package lease

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The deterministic simulation (simworld_test.go has the model): the one
// rule holds at every step of every seed (at most one GPU node's fence
// deadline lies in the future in real time), no committed entry is lost,
// and once the faults stop (every link up, no loss, every node up, resumed
// and healthy, maintenance off) a healthy GPU node holds the VIP, and keeps
// it for a second, within
//
//	max(Quarantine, election timeout + L+ε) + L+ε + 0.5 s (+ the hold-down
//	when preemption is on)
//
// where L+ε is the longest lease committed in the seed: 4.35 s with the
// default timings.
//
//	go test ./cluster/lease -run TestSimulation -sim.seeds=20000
//	go test ./cluster/lease -run TestSimulation -sim.seed=S -v   (replay one, with a trace)

var (
	simSeeds     = flag.Int("sim.seeds", 2000, "seeds TestSimulation runs")
	simSeed      = flag.Int64("sim.seed", -1, "replay this one seed, with a trace")
	simFirst     = flag.Uint64("sim.first", 1, "first seed TestSimulation runs")
	simTraceLen  = flag.Int("sim.trace", 300, "events of trace printed for a failing seed")
	simPlant     = flag.String("sim.plant", "", "comma-separated planted bugs for TestSimulation (IgnoreLiveGrant, NoQuarantine, AnchorAtAnswer, CountOldNonce)")
	simBugSeeds  = flag.Int("sim.bugseeds", 2000, "seeds TestPlantedBugsAreCaught tries per planted bug")
	simShowStats = flag.Bool("sim.stats", false, "log statistics of the seeds run")
	simDump      = flag.String("sim.dump", "", "with -sim.seed: write the kept trace to this file")
)

func parsePlant(s string) (Bugs, error) {
	var b Bugs
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "":
		case "IgnoreLiveGrant":
			b.IgnoreLiveGrant = true
		case "NoQuarantine":
			b.NoQuarantine = true
		case "AnchorAtAnswer":
			b.AnchorAtAnswer = true
		case "CountOldNonce":
			b.CountOldNonce = true
		default:
			return b, fmt.Errorf("unknown planted bug %q", f)
		}
	}
	return b, nil
}

// runSeeds plays seeds first..first+n-1 on every CPU; stop ends the search
// at the first failing seed (the lowest one, as a serial run would find).
func runSeeds(first uint64, n int, bugs Bugs, stopAtFail bool) (results []simResult) {
	results = make([]simResult, n)
	var next atomic.Int64
	var failed atomic.Int64
	failed.Store(int64(n))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || (stopAtFail && i > failed.Load()) {
					return
				}
				r := runSim(first+uint64(i), bugs, 0)
				results[i] = r
				if r.fail != "" {
					for {
						f := failed.Load()
						if i >= f || failed.CompareAndSwap(f, i) {
							break
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); stopAtFail && f < int64(n) {
		results = results[:f+1]
	}
	return results
}

func replayCommand(seed uint64, plant string) string {
	cmd := fmt.Sprintf("go test ./cluster/lease -run TestSimulation -sim.seed=%d -v", seed)
	if plant != "" {
		cmd += " -sim.plant=" + plant
	}
	return cmd
}

func reportFailure(t *testing.T, seed uint64, bugs Bugs, plant string) {
	t.Helper()
	r := runSim(seed, bugs, *simTraceLen)
	t.Errorf("seed %d: %s\nreplay: %s\nlast %d events:\n%s", seed, r.fail, replayCommand(seed, plant), len(r.trace), strings.Join(r.trace, "\n"))
}

func TestSimulation(t *testing.T) {
	bugs, err := parsePlant(*simPlant)
	if err != nil {
		t.Fatal(err)
	}
	if *simSeed >= 0 {
		seed := uint64(*simSeed)
		r := runSim(seed, bugs, *simTraceLen)
		if *simDump != "" {
			if err := os.WriteFile(*simDump, []byte(strings.Join(r.trace, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if r.fail != "" {
			t.Fatalf("seed %d: %s\nreplay: %s\nlast %d events:\n%s", seed, r.fail, replayCommand(seed, *simPlant), len(r.trace), strings.Join(r.trace, "\n"))
		}
		t.Logf("seed %d passed: %v simulated, faults until %v, %d events, %d hand-offs, VIP held %v after the heal (bound %v)", seed, r.simTime, r.healAt, r.events, r.handoffs, r.recovery, r.bound)
		t.Logf("the last %d events:\n%s", min(len(r.trace), 60), strings.Join(r.trace[max(len(r.trace)-60, 0):], "\n"))
		return
	}
	n := *simSeeds
	if testing.Short() && n > 200 {
		n = 200
	}
	start := time.Now()
	results := runSeeds(*simFirst, n, bugs, false)
	var fails []uint64
	var events int
	var sim, maxRec, maxBound time.Duration
	hand := 0
	minGap := time.Hour
	for _, r := range results {
		if r.fail != "" {
			fails = append(fails, r.seed)
			continue
		}
		events += r.events
		sim += r.simTime
		hand += r.handoffs
		minGap = min(minGap, r.minGap)
		maxRec = max(maxRec, r.recovery)
		maxBound = max(maxBound, r.bound)
	}
	if *simShowStats || testing.Verbose() {
		t.Logf("%d seeds in %v: %v simulated, %d events, %d hand-offs between the GPU nodes, shortest gap between two holders %v; VIP held at most %v after the heal (largest bound %v)",
			n, time.Since(start).Round(time.Millisecond), sim.Round(time.Second), events, hand, minGap, maxRec, maxBound)
	}
	if len(fails) > 0 {
		t.Errorf("%d of %d seeds failed: %v", len(fails), n, fails[:min(len(fails), 20)])
		reportFailure(t, fails[0], bugs, *simPlant)
	}
}

// TestPlantedBugsAreCaught plants each known way to get the lease wrong in
// turn and shows that the simulation finds two holders within a bounded
// number of seeds.
func TestPlantedBugsAreCaught(t *testing.T) {
	for _, plant := range []string{"IgnoreLiveGrant", "NoQuarantine", "AnchorAtAnswer", "CountOldNonce"} {
		t.Run(plant, func(t *testing.T) {
			bugs, _ := parsePlant(plant)
			results := runSeeds(1, *simBugSeeds, bugs, true)
			last := results[len(results)-1]
			if last.fail == "" {
				t.Fatalf("%s planted: no seed of %d found two holders", plant, *simBugSeeds)
			}
			if !strings.Contains(last.fail, "two holders") {
				t.Fatalf("%s planted: seed %d failed, but not with two holders: %s", plant, last.seed, last.fail)
			}
			t.Logf("%s caught at seed %d (%s): %s", plant, last.seed, replayCommand(last.seed, plant), last.fail)
		})
	}
}

// A seed replays exactly: the same events, the same trace, the same end.
func TestSimulationIsDeterministic(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		a, b := runSim(seed, Bugs{}, 1<<20), runSim(seed, Bugs{}, 1<<20)
		if a.events != b.events || a.simTime != b.simTime || a.fail != b.fail || !slices.Equal(a.trace, b.trace) {
			t.Fatalf("seed %d: two runs differ: %d/%d events, %v/%v", seed, a.events, b.events, a.simTime, b.simTime)
		}
		// Tracing does not change what happens.
		if c := runSim(seed, Bugs{}, 0); c.events != a.events || c.simTime != a.simTime {
			t.Fatalf("seed %d: traced and untraced runs differ", seed)
		}
	}
}
