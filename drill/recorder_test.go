package drill

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRecorder_ConcurrentAndEvaluates(t *testing.T) {
	var tick atomic.Int64
	now := func() time.Time { return t0.Add(time.Duration(tick.Load())) }
	r := NewRecorder(now, "bob")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			r.Probe(ProbeResult{At: now(), Latency: msec, Status: 200})
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			r.ARP(ARPRound{At: now(), MACs: []string{"02:00:00:00:00:01"}})
		}
	}()
	r.StepStart(0)
	r.StepEnd(0, true, "")
	tick.Store(int64(time.Second))
	r.StepStart(1)
	r.Holder("node2")
	r.History("node2", "holder-lost:node1")
	r.StepEnd(1, true, "holder is node2")
	tick.Store(int64(5 * time.Second))
	r.FaultUndone(0, true, "")
	r.Abort("operator pressed Ctrl-C")
	r.Abort("later reason")
	wg.Wait()
	tick.Store(int64(6 * time.Second))
	o := r.Observations()
	if len(o.Probes) != 100 || len(o.ARP) != 100 || len(o.Events) != 9 || o.Operator != "bob" || !o.End.Equal(at(6*time.Second)) {
		t.Fatalf("observations: %d probes, %d ARP, %d events, %+v", len(o.Probes), len(o.ARP), len(o.Events), o.End)
	}
	if o.Aborted != "operator pressed Ctrl-C" {
		t.Errorf("aborted %q", o.Aborted)
	}
	rep := Evaluate(crashPlan(t, crashRunbook), o)
	if rep.Verdict != VerdictAborted {
		t.Errorf("verdict %s", rep.Verdict)
	}
	if c := find(t, rep.Expectations, "expectations[0]"); !c.Passed || c.Measured != "1s" {
		t.Errorf("holder-becomes: %+v", c)
	}
	// The copy is the caller's.
	o.Events[0].Kind = EventNote
	if r.Observations().Events[0].Kind != EventStepStart {
		t.Error("Observations shares its events")
	}
}
