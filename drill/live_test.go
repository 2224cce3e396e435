package drill

import (
	"strings"
	"testing"
	"time"
)

func TestConditionHolds(t *testing.T) {
	yes, no := true, false
	v := sampleView()
	v.Holder = "node1"
	v.Members[1].Healthy, v.Members[1].Why = false, "http:service"
	cases := []struct {
		c      ResolvedCondition
		steady bool
		ok     bool
		why    string
	}{
		{ResolvedCondition{Holder: "node1"}, true, true, ""},
		{ResolvedCondition{Holder: "node2"}, true, false, "holder is node1, want node2"},
		{ResolvedCondition{Healthy: "node1"}, true, true, ""},
		{ResolvedCondition{Healthy: "node2"}, true, false, "node2 is unhealthy (http:service)"},
		{ResolvedCondition{SteadyState: &yes}, false, false, "steady state fails"},
		{ResolvedCondition{SteadyState: &no}, false, true, ""},
		{ResolvedCondition{Holder: "node2", SteadyState: &yes}, false, false, "holder is node1, want node2; steady state fails"},
	}
	for _, tc := range cases {
		ok, why := tc.c.Holds(v, tc.steady)
		if ok != tc.ok || why != tc.why {
			t.Errorf("%s (steady %v): %v %q, want %v %q", tc.c.String(), tc.steady, ok, why, tc.ok, tc.why)
		}
	}
	v.Holder = ""
	if _, why := (&ResolvedCondition{Holder: "node2"}).Holds(v, true); why != "holder is nobody, want node2" {
		t.Errorf("nobody: %q", why)
	}
}

func TestAbortReason(t *testing.T) {
	p := mustPlan(t, mustParse(t, minimal+"abort: {steady_state_lost_for: 10s}\n"), sampleView())
	cases := []struct {
		name    string
		view    func(v *ClusterView)
		lostFor time.Duration
		want    string
	}{
		{"healthy", nil, 0, ""},
		{"lost but not long", nil, 10 * time.Second, ""},
		{"lost too long", nil, 10*time.Second + 300*msec, "steady state lost for 10.3s (abort after 10s)"},
		{"standby unhealthy", func(v *ClusterView) { v.Members[1].Healthy, v.Members[1].Why = false, "gpu:gpus" }, 0, "standby node2 unhealthy (gpu:gpus)"},
		{"standby unreachable", func(v *ClusterView) { v.Members[1].Reachable = false }, 0, "standby node2 unreachable"},
		// The old active being down is what a crash drill does; no abort.
		{"old active down", func(v *ClusterView) { v.Members[0].Reachable, v.Members[0].Healthy = false, false }, 0, ""},
		{"no leader", func(v *ClusterView) { v.Leader = "" }, 0, "quorum lost: no Raft leader"},
		{"two voters down", func(v *ClusterView) { v.Members[0].Reachable, v.Members[2].Reachable = false, false }, 0, "quorum lost: 1 of 3 voters reachable"},
	}
	for _, tc := range cases {
		v := sampleView()
		if tc.view != nil {
			tc.view(&v)
		}
		if got := p.AbortReason(v, tc.lostFor); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	off := mustPlan(t, mustParse(t, minimal+"abort: {standby_unhealthy: false, quorum_lost: false}\n"), sampleView())
	v := sampleView()
	v.Members[1].Reachable, v.Leader = false, ""
	if got := off.AbortReason(v, 0); got != "" {
		t.Errorf("conditions turned off still abort: %q", got)
	}
}

func TestLostFor(t *testing.T) {
	p := mustPlan(t, mustParse(t, minimal), sampleView())
	ok := func(d time.Duration) ProbeResult { return ProbeResult{At: at(d), Status: 200} }
	bad := func(d time.Duration) ProbeResult { return ProbeResult{At: at(d), Err: "timeout"} }
	if got := p.LostFor(nil, at(time.Second)); got != 0 {
		t.Errorf("no probes: %s", got)
	}
	if got := p.LostFor([]ProbeResult{bad(0), ok(20 * msec)}, at(time.Second)); got != 0 {
		t.Errorf("last passed: %s", got)
	}
	if got := p.LostFor([]ProbeResult{ok(0), bad(20 * msec), bad(40 * msec), {At: at(60 * msec), Status: 500}}, at(time.Second)); got != 980*msec {
		t.Errorf("failing since 20ms: %s", got)
	}
}

func TestReportSummary(t *testing.T) {
	src := strings.Replace(crashRunbook, "outage-max: 1s", "outage-max: 10ms", 1)
	rep := Evaluate(crashPlan(t, src), timeline(1460*msec, 1580*msec))
	want := "crash failed: 5 of 6 expectations passed (failed: outage-max 10ms: 120ms, missed by 110ms); longest outage 120ms, 6 failed requests, 0 ARP double rounds"
	if got := rep.Summary(1024); got != want {
		t.Errorf("summary\n%q\nwant\n%q", got, want)
	}
	for _, n := range []int{0, 1, 2, 3, 40} {
		got := rep.Summary(n)
		if n > 0 && len(got) > n {
			t.Errorf("Summary(%d) is %d bytes", n, len(got))
		}
		if n == 40 && !strings.HasSuffix(got, "…") {
			t.Errorf("Summary(40) = %q", got)
		}
	}
}
