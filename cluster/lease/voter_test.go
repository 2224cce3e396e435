package lease

import (
	"strings"
	"testing"
	"time"
)

var testVoters = []string{"node1", "node2", "witness"}

// deliver hands a holder's requests to the voters named in vs (the others
// are lost) at now, each with its view, and the answers back to the holder.
func deliver(t *testing.T, h *Holder, now Time, out Output, vs map[string]*Voter, views map[string]View) Output {
	t.Helper()
	var last Output
	for _, e := range out.Send {
		v, ok := vs[e.To]
		if !ok {
			continue
		}
		a, ok := v.Handle(now, views[e.To], e.Req)
		if !ok {
			continue
		}
		if o := h.Answer(now, a, testVoters); o.SetFence {
			last = o
		}
	}
	return last
}

// A release sent by an earlier run of the holder that arrives late must not
// drop the grant of the run that holds now: else the voters grant the next
// active node while the current holder's fence is still open. (Found by the
// simulation, seed 15390.)
func TestLateReleaseOfAnEarlierRun(t *testing.T) {
	const ms = time.Millisecond
	p := DefaultParams()
	t0 := 100 * time.Second
	v2 := NewVoter("node2", t0-Quarantine, p.Drift)
	w := NewVoter("witness", t0-Quarantine, p.Drift)
	vs := map[string]*Voter{"node2": v2, "witness": w}
	at1 := View{Active: "node1", Epoch: 3, ActiveIsGPU: true}
	views := map[string]View{"node2": at1, "witness": at1}
	hv := HolderView{View: at1, SelfGPU: true, Voters: testVoters, Params: p}

	runA := NewHolder("node1", 1000)
	if o := deliver(t, runA, t0, runA.Tick(t0, hv), vs, views); !o.SetFence {
		t.Fatal("run A holds nothing")
	}
	// SIGTERM with no standby to hand over to: run A releases, but its
	// releases are slow; the agent restarts at once (same epoch).
	hv.Stopping = true
	release := runA.Tick(t0+10*ms, hv)
	if len(release.Send) == 0 || !release.SetFence || release.Deadline != 0 {
		t.Fatalf("stopping: %+v", release)
	}
	hv.Stopping = false
	runB := NewHolder("node1", 1<<40)
	now := t0 + 110*ms
	o := deliver(t, runB, now, runB.Tick(now, hv), vs, views)
	if !o.SetFence || o.Deadline != now+p.Duration {
		t.Fatalf("run B: %+v", o)
	}
	// Run A's releases arrive.
	for _, e := range release.Send {
		if v, ok := vs[e.To]; ok {
			v.Handle(now+20*ms, views[e.To], e.Req)
		}
	}
	// node2 and the witness apply a move to node2; node1 has not yet.
	at2 := View{Active: "node2", Epoch: 4, ActiveIsGPU: true}
	req := Request{From: "node2", Epoch: 4, Nonce: 7, Duration: p.Duration}
	for name, v := range vs {
		if a, _ := v.Handle(now+40*ms, at2, req); a.Granted {
			t.Errorf("%s grants node2 while run B of node1 holds until %v (now %v)", name, o.Deadline, now+40*ms)
		}
	}
	// Run B's own release does drop the grants.
	hv.Stopping = true
	for _, e := range runB.Tick(now+50*ms, hv).Send {
		if v, ok := vs[e.To]; ok {
			v.Handle(now+60*ms, views[e.To], e.Req)
		}
	}
	for name, v := range vs {
		if a, _ := v.Handle(now+70*ms, at2, req); !a.Granted {
			t.Errorf("%s refuses node2 after node1 released: %s", name, a.Reason)
		}
	}
}

func TestVoterHandle(t *testing.T) {
	const ms = time.Millisecond
	t0 := 50 * time.Second
	at1 := View{Active: "node1", Epoch: 3, ActiveIsGPU: true}
	at2 := View{Active: "node2", Epoch: 4, ActiveIsGPU: true}
	req1 := Request{From: "node1", Epoch: 3, Nonce: 11, Duration: 500 * ms}
	req2 := Request{From: "node2", Epoch: 4, Nonce: 21, Duration: 500 * ms}
	type step struct {
		at      Time
		view    View
		req     Request
		granted bool
		reason  string // part of the refusal
	}
	for _, tc := range []struct {
		name    string
		started Time // the voter started at t0-started
		steps   []step
	}{
		{"grants the active GPU node", Quarantine, []step{
			{0, at1, req1, true, ""},
		}},
		{"quarantine after a start", Quarantine - time.Second, []step{
			{0, at1, req1, false, "restarted"},
			{time.Second - 1, at1, req1, false, "restarted"},
			{time.Second, at1, req1, true, ""},
		}},
		{"not the applied active node", Quarantine, []step{
			{0, at2, req1, false, "names \"node2\" active at epoch 4"},
			{0, at1, Request{From: "node1", Epoch: 2, Nonce: 1, Duration: 500 * ms}, false, "epoch 3"},
		}},
		{"not a GPU node", Quarantine, []step{
			{0, View{Active: "witness", Epoch: 3}, Request{From: "witness", Epoch: 3, Nonce: 1, Duration: 500 * ms}, false, "not a GPU node"},
		}},
		{"bad request", Quarantine, []step{
			{0, at1, Request{From: "node1", Epoch: 3, Nonce: 1, Duration: MaxDuration + 1}, false, "duration"},
			{0, at1, Request{From: "node1", Nonce: 1, Duration: ms}, false, "epoch 0"},
		}},
		{"a live grant to another node blocks for L+ε", Quarantine, []step{
			{0, at1, req1, true, ""},
			{10 * ms, at2, req2, false, "live"},
			{500*ms + 50*ms - 1, at2, req2, false, "live"},
			{500*ms + 50*ms, at2, req2, true, ""},
			{600 * ms, at1, req1, false, "grant to node2"},
		}},
		{"renewal by the same node", Quarantine, []step{
			{0, at1, req1, true, ""},
			{100 * ms, at1, Request{From: "node1", Epoch: 3, Nonce: 12, Duration: 500 * ms}, true, ""},
			{600 * ms, at2, req2, false, "live"},
			{650 * ms, at2, req2, true, ""},
		}},
		{"a shorter renewal does not shorten the grant", Quarantine, []step{
			{0, at1, Request{From: "node1", Epoch: 3, Nonce: 1, Duration: 2 * time.Second}, true, ""},
			{10 * ms, at1, Request{From: "node1", Epoch: 3, Nonce: 2, Duration: 100 * ms}, true, ""},
			{2*time.Second + 99*ms, at2, req2, false, "live"},
			{2*time.Second + 100*ms, at2, req2, true, ""},
		}},
		{"a release drops the grant", Quarantine, []step{
			{0, at1, req1, true, ""},
			{10 * ms, at1, Request{From: "node1", Epoch: 3, Nonce: 11, Release: true}, false, ""},
			{20 * ms, at2, req2, true, ""},
		}},
		{"a release of another round, epoch or node drops nothing", Quarantine, []step{
			{0, at1, req1, true, ""},
			{1 * ms, at1, Request{From: "node1", Epoch: 3, Nonce: 10, Release: true}, false, ""},
			{2 * ms, at1, Request{From: "node1", Epoch: 2, Nonce: 11, Release: true}, false, ""},
			{3 * ms, at1, Request{From: "node2", Epoch: 4, Nonce: 11, Release: true}, false, ""},
			{20 * ms, at2, req2, false, "live"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVoter("witness", t0-tc.started, 50*ms)
			for i, s := range tc.steps {
				a, ok := v.Handle(t0+s.at, s.view, s.req)
				if s.req.Release {
					if ok {
						t.Fatalf("step %d: a release was answered: %+v", i, a)
					}
					continue
				}
				if !ok || a.Granted != s.granted || !strings.Contains(a.Reason, s.reason) {
					t.Fatalf("step %d (%v after start): %+v, want granted=%v with %q", i, s.at, a, s.granted, s.reason)
				}
				if a.Voter != "witness" || a.To != s.req.From || a.Epoch != s.req.Epoch || a.Nonce != s.req.Nonce {
					t.Fatalf("step %d: answer does not echo the request: %+v", i, a)
				}
			}
		})
	}
}

func TestVoterDrift(t *testing.T) {
	const ms = time.Millisecond
	t0 := time.Minute
	v := NewVoter("node2", t0-Quarantine, 2*MaxDrift)
	if v.drift != MaxDrift {
		t.Fatalf("drift %v, capped at %v", v.drift, MaxDrift)
	}
	v.SetDrift(30 * ms)
	at1 := View{Active: "node1", Epoch: 1, ActiveIsGPU: true}
	v.Handle(t0, at1, Request{From: "node1", Epoch: 1, Nonce: 1, Duration: 200 * ms})
	if g, ok := v.Live(t0); !ok || g.Expires != t0+230*ms || g.Node != "node1" || g.Nonce != 1 {
		t.Fatalf("grant %+v %v", g, ok)
	}
	if _, ok := v.Live(t0 + 230*ms); ok {
		t.Fatal("grant live after L+ε")
	}
}

// In a settings change the holder may ask for the new, longer lease while
// the voter still has the old, smaller ε: the margin is never below 5 % of
// the lease asked for, so a clock-rate difference Params.Validate allows
// for any settings is still covered. (Found by the simulation, seed 12910.)
func TestVoterMarginOfALongerLease(t *testing.T) {
	const ms = time.Millisecond
	t0 := time.Minute
	v := NewVoter("witness", t0-Quarantine, DefaultParams().Drift) // ε = 50 ms of L = 500 ms
	at1 := View{Active: "node1", Epoch: 1, ActiveIsGPU: true}
	for _, tc := range []struct{ asked, margin time.Duration }{
		{500 * ms, 50 * ms},
		{2 * time.Second, 100 * ms},
		{2165 * ms, 108250 * time.Microsecond},
		{MaxDuration, MaxDuration / 20},
	} {
		v.grant = Grant{}
		v.Handle(t0, at1, Request{From: "node1", Epoch: 1, Nonce: 1, Duration: tc.asked})
		if g, _ := v.Live(t0); g.Expires-t0 != tc.asked+tc.margin {
			t.Errorf("asked %v: live for %v, want %v", tc.asked, g.Expires-t0, tc.asked+tc.margin)
		}
	}
}

func TestVoterReport(t *testing.T) {
	const ms = time.Millisecond
	t0 := time.Minute
	v := NewVoter("witness", t0, 50*ms)
	at1 := View{Active: "node1", Epoch: 1, ActiveIsGPU: true}
	r := v.Report(t0+time.Second, at1)
	if r.Voter != "witness" || r.Active != "node1" || r.Epoch != 1 || r.Silent != 0 || r.Quarantine != Quarantine-time.Second {
		t.Fatalf("first report %+v", r)
	}
	r = v.Report(t0+3*time.Second, at1)
	if r.Silent != 2*time.Second {
		t.Fatalf("silent %v since the view was applied, want 2s", r.Silent)
	}
	now := t0 + Quarantine
	v.Handle(now, at1, Request{From: "node1", Epoch: 1, Nonce: 5, Duration: 500 * ms})
	r = v.Report(now+100*ms, at1)
	if r.Silent != 100*ms || r.GrantTo != "node1" || r.GrantEpoch != 1 || r.GrantLeft != 450*ms || r.Quarantine != 0 {
		t.Fatalf("report after a grant %+v", r)
	}
	// A refused request from the active node still counts as heard.
	v.Handle(now+200*ms, at1, Request{From: "node1", Epoch: 1, Nonce: 6, Duration: MaxDuration + 1})
	if r = v.Report(now+300*ms, at1); r.Silent != 100*ms {
		t.Fatalf("silent %v after a refused request", r.Silent)
	}
	// A new view restarts the silence.
	at2 := View{Active: "node2", Epoch: 2, ActiveIsGPU: true}
	v.Observe(now+400*ms, at2)
	if r = v.Report(now+1400*ms, at2); r.Active != "node2" || r.Silent != time.Second {
		t.Fatalf("report after a move %+v", r)
	}
}
